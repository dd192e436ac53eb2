//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

/// Runs `f` on a thread and fails the test if it does not finish within `secs` seconds.
/// Every "must not hang" test goes through this.
pub fn deadline<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic.
            match h.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!(),
            }
        }
        Err(_) => panic!("test body did not finish within {secs} s (hang)"),
    }
}

/// Whether a process exists (a zombie counts as existing).
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits up to 5 s for every pid to be gone (exited and reaped).
pub fn assert_gone(pids: &[u32]) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| exists(p)) {
        assert!(
            std::time::Instant::now() < end,
            "processes left behind: {:?}",
            pids.iter().filter(|&&p| exists(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Number of open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// After every test of a binary has run (at process exit): nothing this process created,
/// and no test segment, is left in `/dev/shm`; otherwise the binary fails loudly.
#[used]
#[unsafe(link_section = ".fini_array")]
static NO_SEGMENT_LEFT: extern "C" fn() = {
    extern "C" fn check() {
        let mine = format!("mp-{}-", std::process::id());
        let left: Vec<String> = std::fs::read_dir("/dev/shm")
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&mine) || n.starts_with("multiproc-test-"))
                    .collect()
            })
            .unwrap_or_default();
        if !left.is_empty() {
            eprintln!("LEAK: left in /dev/shm after the tests: {left:?}");
            std::process::abort();
        }
    }
    check
};
