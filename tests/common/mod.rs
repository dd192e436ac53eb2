//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

/// Runs `f` on a thread and fails the test if it does not finish within `secs` seconds.
/// Every "must not hang" test goes through this.
pub(crate) fn deadline<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
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
pub(crate) fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits up to 5 s for every pid to be gone (exited and reaped).
pub(crate) fn assert_gone(pids: &[u32]) {
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
pub(crate) fn fd_count() -> usize {
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
                    .filter(|n| n.starts_with(&mine) || is_my_test_segment(n))
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

/// A test segment (`multiproc-test-...`) of this process: one whose name ends in this
/// pid, or in no pid at all. One ending in another pid belongs to another test binary
/// (maybe running at the same time on the machine): its leak is that binary's to report.
fn is_my_test_segment(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("multiproc-test-") else {
        return false;
    };
    match rest.rsplit('-').next().map(|t| t.parse::<u32>()) {
        Some(Ok(pid)) => pid == std::process::id(),
        _ => true,
    }
}

/// Whether `pid` is dead: gone, or a zombie (an orphan waits for init to reap it).
pub(crate) fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// One line of `/proc/<pid>/stat`: what the tests need of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) pgrp: u32,
    /// `R`, `S`, `Z` (a zombie), ...
    pub(crate) state: char,
}

/// Every process on the machine, read from `/proc` (processes that end while it reads are
/// left out).
pub(crate) fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The name may hold spaces and parentheses: the fields start after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // state ppid pgrp ...
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(state), Some(Ok(ppid)), Some(Ok(pgrp))) = (
            f.first().and_then(|s| s.chars().next()),
            f.get(1).map(|p| p.parse()),
            f.get(2).map(|p| p.parse()),
        ) {
            out.push(Proc {
                pid,
                ppid,
                pgrp,
                state,
            });
        }
    }
    out
}

/// Every descendant of `root` (children, grandchildren, ...), zombies included.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let procs = processes();
    let mut todo = vec![root];
    let mut out = Vec::new();
    while let Some(p) = todo.pop() {
        for q in procs.iter().filter(|q| q.ppid == p) {
            out.push(q.pid);
            todo.push(q.pid);
        }
    }
    out
}

/// Live (non-zombie) processes in process group `pgid`.
pub(crate) fn live_in_group(pgid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.pgrp == pgid)
        .map(|p| p.pid)
        .collect()
}

/// A task that starts `sleep 1000` and a shell pipeline, records `worker sleep sh` pids in
/// `path`, and never ends.
// Never waited for on purpose: the task never returns, and the kill of its group must
// end these children.
#[allow(clippy::zombie_processes)]
pub(crate) fn start_children_then_hang(path: String) -> u32 {
    let sleep = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let sh = std::process::Command::new("sh")
        .args(["-c", "sleep 1000 | cat"])
        .spawn()
        .unwrap();
    let tmp = format!("{path}.tmp");
    std::fs::write(
        &tmp,
        format!("{} {} {}", std::process::id(), sleep.id(), sh.id()),
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub(crate) fn wait_for_pids(path: &std::path::Path) -> Vec<u32> {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            let _ = std::fs::remove_file(path);
            return s.split_whitespace().map(|p| p.parse().unwrap()).collect();
        }
        assert!(std::time::Instant::now() < end, "the task never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills what a failed assertion left (so no test leaves a process behind), then asserts
/// that the worker's whole group died by itself within 5 s.
pub(crate) fn assert_group_died(pids: &[u32]) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let worker = pids[0];
    let mut left;
    loop {
        left = live_in_group(worker);
        left.extend(pids.iter().copied().filter(|&p| !dead(p)));
        left.sort_unstable();
        left.dedup();
        if left.is_empty() || std::time::Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for &p in &left {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(p as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    assert!(left.is_empty(), "the task's children outlived it: {left:?}");
}

/// Runs a Python 3 script (`python3 -c script args...`) and returns its stdout; a failing
/// script fails the test with its stderr. A machine without `python3` fails the test too:
/// CI installs it (scripts/deps.sh), and an interoperability check that silently passes
/// checks nothing.
pub(crate) fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running python3 ({e}): the Python interoperability tests need python3 on PATH")
        });
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
