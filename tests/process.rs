//! Process: start methods, exit codes, names, daemon, current_process, active_children,
//! panics, joining at exit.

mod common;
use common::deadline;

use std::time::{Duration, Instant};

use multiproc::{Connection, Error, Pipe, Process, Queue, StartMethod};

multiproc::test_support!();

/// The small programs some tests need: when a test re-executes this binary with
/// `MP_TEST_HELPER` set, it runs that helper as its whole program (from `.init_array`,
/// before the test harness starts) and exits through `exit`, like a real `main` returning.
#[used]
#[unsafe(link_section = ".init_array")]
static HELPERS: extern "C" fn() = {
    extern "C" fn run_helper() {
        if std::env::var_os("MULTIPROC_ROLE").is_some() {
            return; // a worker or fork server started by the helper: multiproc's init runs it
        }
        let helper: fn() = match std::env::var("MP_TEST_HELPER").as_deref() {
            Ok("exit_with_children") => helper_exit_with_children,
            Ok("start_children_and_wait") => helper_start_children_and_wait,
            Ok("children_read_stdin") => helper_children_read_stdin,
            Ok("joined_children_hold_no_fd") => helper_joined_children_hold_no_fd,
            Ok("exit_with_stubborn_daemon") => helper_exit_with_stubborn_daemon,
            _ => return,
        };
        helper();
        std::process::exit(0);
    }
    run_helper
};

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn panics(msg: String) {
    panic!("{msg}");
}

#[test]
fn exit_codes_follow_python() {
    deadline(60, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let p = Process::start_with(method, exit_with, 3).unwrap();
            assert!(p.join_timeout(Duration::from_secs(10)));
            assert_eq!(p.exitcode(), Some(3));
            let p = Process::start_with(method, panics, "boom".into()).unwrap();
            assert!(p.join_timeout(Duration::from_secs(10)));
            assert_eq!(p.exitcode(), Some(1));
            let p = Process::builder()
                .daemon(true) // a failed assertion must not leave the exit hook waiting 30 s
                .start_method(method)
                .start(|_: ()| std::thread::sleep(Duration::from_secs(30)), ())
                .unwrap();
            assert!(p.is_alive());
            assert_eq!(p.exitcode(), None);
            assert!(!p.join_timeout(Duration::from_millis(50)));
            p.terminate().unwrap();
            assert!(p.join_timeout(Duration::from_secs(10)));
            assert_eq!(p.exitcode(), Some(-15));
            let p = Process::builder()
                .daemon(true) // a failed assertion must not leave the exit hook waiting 30 s
                .start_method(method)
                .start(|_: ()| std::thread::sleep(Duration::from_secs(30)), ())
                .unwrap();
            p.kill().unwrap();
            assert!(p.join_timeout(Duration::from_secs(10)));
            assert_eq!(p.exitcode(), Some(-9));
        }
    });
}

fn report_self(c: Connection) {
    let me = multiproc::current_process();
    c.send(&(me.name().to_string(), me.pid(), me.daemon()))
        .unwrap();
}

fn start_grandchild(c: Connection) {
    let p = Process::start(report_self, c).unwrap();
    p.join();
}

#[test]
fn names_daemon_and_current_process() {
    deadline(60, || {
        let me = multiproc::current_process();
        assert_eq!((me.name(), me.pid()), ("MainProcess", std::process::id()));
        assert!(multiproc::cpu_count() >= 1);
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let (a, b) = Pipe::duplex().unwrap();
            let p = Process::start_with(method, report_self, b).unwrap();
            let (name, pid, daemon): (String, u32, bool) = a.recv().unwrap();
            assert_eq!((name.as_str(), pid, daemon), (p.name(), p.pid(), false));
            assert!(name.starts_with("Process-"), "{name}");
            assert!(p.join_timeout(Duration::from_secs(10)));

            let (a, b) = Pipe::duplex().unwrap();
            let p = Process::builder()
                .name("custom")
                .daemon(true)
                .start_method(method)
                .start(report_self, b)
                .unwrap();
            assert_eq!((p.name(), p.daemon()), ("custom", true));
            let got: (String, u32, bool) = a.recv().unwrap();
            assert_eq!(got, ("custom".to_string(), p.pid(), true));
            assert!(p.join_timeout(Duration::from_secs(10)));
        }
        // A grandchild is named after its parent: Process-N:1.
        let (a, b) = Pipe::duplex().unwrap();
        let p = Process::start(start_grandchild, b).unwrap();
        let (name, pid, _): (String, u32, bool) = a.recv().unwrap();
        assert_eq!(name, format!("{}:1", p.name()));
        assert_ne!(pid, p.pid());
        assert!(p.join_timeout(Duration::from_secs(10)));
    });
}

fn wait_for_close(q: Queue<u8>) {
    let _ = q.get();
}

#[test]
fn active_children_lists_running_ones() {
    deadline(30, || {
        let q: Queue<u8> = Queue::new().unwrap();
        let p = Process::builder()
            .daemon(true)
            .start(wait_for_close, q.clone())
            .unwrap();
        assert!(
            multiproc::active_children()
                .iter()
                .any(|c| c.pid() == p.pid())
        );
        q.close();
        assert!(p.join_timeout(Duration::from_secs(10)));
        assert!(
            !multiproc::active_children()
                .iter()
                .any(|c| c.pid() == p.pid())
        );
    });
}

#[test]
fn unserializable_argument_is_an_error() {
    let (a, _b) = Pipe::duplex().unwrap();
    // A type whose Serialize fails; the Connection next to it must not leak or be sent.
    struct Bad;
    impl serde::Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    impl<'de> serde::Deserialize<'de> for Bad {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Bad, D::Error> {
            Ok(Bad)
        }
    }
    fn take(_: (Bad, Connection)) {}
    match Process::start(take, (Bad, a)) {
        Err(Error::Serialize { type_name, .. }) => assert!(type_name.contains("Bad")),
        other => panic!("{other:?}"),
    }
}

/// A SIGTERM sent the moment a child starts ends it: the fork server's own SIGTERM handler
/// (which turns the signal into a wake-up for the server) must never run in the child, even
/// in the instant between `fork` and the child's reset of its signals.
#[test]
fn terminate_right_after_start_ends_the_child() {
    deadline(60, || {
        for _ in 0..40 {
            let p = Process::start(sleep_long, ()).unwrap();
            p.terminate().unwrap();
            assert!(
                p.join_timeout(Duration::from_secs(10)),
                "a child terminated at its start lived on"
            );
            assert_eq!(p.exitcode(), Some(-libc::SIGTERM));
        }
    });
}

// ---- behaviour at exit, checked by running this test binary as a subprocess ----

/// Runs this binary as the helper program `helper` (see `HELPERS`) with `MP_TEST_FILE` a
/// fresh temp path named after `tag`; returns that path, the helper's output and how long
/// it ran.
fn run_helper(helper: &str, tag: &str) -> (std::path::PathBuf, std::process::Output, Duration) {
    let file = std::env::temp_dir().join(format!("mp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let t0 = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MP_TEST_HELPER", helper)
        .env("MP_TEST_FILE", &file)
        .output()
        .unwrap();
    (file, out, t0.elapsed())
}

fn touch_later(path: String) {
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(path, b"done").unwrap();
}

fn sleep_long(_: ()) {
    std::thread::sleep(Duration::from_secs(60));
}

fn helper_exit_with_children() {
    let path = std::env::var("MP_TEST_FILE").unwrap();
    let p = Process::start(touch_later, path.clone()).unwrap();
    let d = Process::builder()
        .daemon(true)
        .start(sleep_long, ())
        .unwrap();
    std::fs::write(format!("{path}.pids"), format!("{} {}", p.pid(), d.pid())).unwrap();
    let _ = Process::start(panics, "the child's panic message".into()).unwrap();
    // Return without joining: the exit hook must wait for `p` and stop `d`.
}

#[test]
fn at_exit_non_daemon_children_are_joined_daemons_stopped() {
    deadline(60, || {
        let (file, out, took) = run_helper("exit_with_children", "exit");
        assert!(out.status.success(), "{out:?}");
        assert!(took < Duration::from_secs(30), "the daemon was waited for");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"done",
            "non-daemon child not joined"
        );
        let pids = std::fs::read_to_string(format!("{}.pids", file.display())).unwrap();
        let daemon: u32 = pids.split(' ').nth(1).unwrap().parse().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("the child's panic message"), "{stderr}");
        // The daemon is gone (give the kernel a moment to reap it).
        let end = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{daemon}")).exists() {
            let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap_or_default();
            if stat.contains(") Z") {
                break;
            }
            assert!(Instant::now() < end, "daemon child still running");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(format!("{}.pids", file.display()));
    });
}

fn ignore_sigterm_and_sleep(ready: Connection) {
    // SAFETY: SIG_IGN is a valid disposition; this child runs nothing else.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    ready.send(&1u8).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn helper_exit_with_stubborn_daemon() {
    let path = std::env::var("MP_TEST_FILE").unwrap();
    let (ready, theirs) = Pipe::duplex().unwrap();
    let d = Process::builder()
        .daemon(true)
        .start(ignore_sigterm_and_sleep, theirs)
        .unwrap();
    let _: u8 = ready.recv().unwrap(); // it ignores SIGTERM from here on
    std::fs::write(&path, d.pid().to_string()).unwrap();
}

/// A daemon that ignores SIGTERM cannot hold its parent's exit: after a grace period the
/// exit hook kills it (Python's would wait for it forever).
#[test]
fn at_exit_a_daemon_that_ignores_sigterm_is_killed() {
    deadline(60, || {
        let (file, out, took) = run_helper("exit_with_stubborn_daemon", "stubborn");
        assert!(out.status.success(), "{out:?}");
        assert!(
            took < Duration::from_secs(10),
            "the exit waited {took:?} for a daemon"
        );
        // It outlived its SIGTERM: what ended it is the SIGKILL after the grace.
        assert!(
            took >= Duration::from_millis(900),
            "the exit took only {took:?}: the daemon did not ignore SIGTERM"
        );
        let daemon: u32 = std::fs::read_to_string(&file).unwrap().parse().unwrap();
        let _ = std::fs::remove_file(&file);
        let end = Instant::now() + Duration::from_secs(5);
        while running(daemon) {
            assert!(Instant::now() < end, "daemon child still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

fn helper_start_children_and_wait() {
    let path = std::env::var("MP_TEST_FILE").unwrap();
    let p = Process::start(sleep_long, ()).unwrap();
    let d = Process::builder()
        .daemon(true)
        .start(sleep_long, ())
        .unwrap();
    std::fs::write(&path, format!("{} {}", p.pid(), d.pid())).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false)
}

#[test]
fn children_die_when_their_parent_is_killed() {
    deadline(60, || {
        let file = std::env::temp_dir().join(format!("mp-kill-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
            .env("MP_TEST_HELPER", "start_children_and_wait")
            .env("MP_TEST_FILE", &file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        let pids: Vec<u32> = loop {
            if let Ok(s) = std::fs::read_to_string(&file)
                && let Ok(p) = s
                    .split(' ')
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()
                && p.len() == 2
            {
                break p;
            }
            assert!(Instant::now() < end, "helper did not start its children");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(pids.iter().all(|&p| running(p)));
        parent.kill().unwrap(); // SIGKILL: no exit hook runs
        parent.wait().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|&p| running(p)) {
            assert!(Instant::now() < end, "a child outlived its killed parent");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&file);
    });
}

/// `terminate` and `kill` reach what the process started: its group, not only its pid.
#[test]
fn terminate_and_kill_reach_the_processes_it_started() {
    deadline(60, || {
        fn run(path: String) {
            common::start_children_then_hang(path);
        }
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            for kill in [false, true] {
                let path = std::env::temp_dir().join(format!(
                    "mp-proc-group-{}-{method:?}-{kill}",
                    std::process::id()
                ));
                let _ = std::fs::remove_file(&path);
                let p = Process::builder()
                    .daemon(true)
                    .start_method(method)
                    .start(run, path.display().to_string())
                    .unwrap();
                let pids = common::wait_for_pids(&path);
                assert_eq!(pids[0], p.pid());
                if kill {
                    p.kill().unwrap();
                } else {
                    p.terminate().unwrap();
                }
                assert!(p.join_timeout(Duration::from_secs(10)));
                common::assert_group_died(&pids);
            }
        }
    });
}

/// Exits 0 if stdin is at EOF at once, 3 if it had data.
fn read_stdin(_: ()) {
    let mut line = String::new();
    let n = std::io::stdin().read_line(&mut line).unwrap_or(0);
    std::process::exit(if n == 0 { 0 } else { 3 });
}

fn helper_children_read_stdin() {
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let p = Process::start_with(method, read_stdin, ()).unwrap();
        assert!(p.join_timeout(Duration::from_secs(20)));
        println!("{method:?} {:?}", p.exitcode());
    }
}

/// A child reads `/dev/null`, not the parent's stdin (as in Python): in its own process
/// group, reading a terminal would stop it (`SIGTTIN`), and it would steal the parent's
/// input anyway.
#[test]
fn children_do_not_read_the_parents_stdin() {
    deadline(60, || {
        use std::io::Write;
        let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
            .env("MP_TEST_HELPER", "children_read_stdin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = parent.stdin.take().unwrap();
        stdin
            .write_all(b"the parent's input\n".repeat(1000).as_slice())
            .unwrap();
        // Held open: a child that reads the pipe would get data, never a false EOF.
        let out = parent.wait_with_output().unwrap();
        drop(stdin);
        let out = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out, "ForkServer Some(0)\nSpawn Some(0)\n");
    });
}

fn fd_count_here() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Alone in its own process (fd counts are process-wide): starts and joins children, and
/// exits 0 only if a joined child holds no fd of this process any more.
fn helper_joined_children_hold_no_fd() {
    // The first start opens what lives as long as the program (the fork server's socket,
    // the manager thread's wakeup fds).
    Process::start(exit_with, 0).unwrap().join();
    let _ = multiproc::active_children();
    let before = fd_count_here();
    for code in [0, 3] {
        let p = Process::start(exit_with, code).unwrap();
        p.join();
        assert_eq!(p.exitcode(), Some(code));
        drop(p);
    }
    let after = fd_count_here();
    if after != before {
        eprintln!("fds {before} -> {after} after joining and dropping two children");
        std::process::exit(1);
    }
}

#[test]
fn a_joined_and_dropped_child_holds_no_fd() {
    deadline(60, || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("MP_TEST_HELPER", "joined_children_hold_no_fd")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
