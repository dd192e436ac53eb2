//! `multiproc::threading`: Thread, Timer, enumerate, current_thread, daemon threads at exit.

multiproc::test_support!();
mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::deadline;
use multiproc::{
    Error, Process, TaskError, Thread, Timer, active_count, current_thread, enumerate, get_ident,
    main_thread,
};

/// The Linux thread id of the calling thread, read without multiproc.
fn gettid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn runs_a_closure_and_a_function_with_its_argument() {
    deadline(20, || {
        let hit = Arc::new(AtomicU32::new(0));
        let h = hit.clone();
        let t = Thread::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hit.load(Ordering::SeqCst), 0, "created, not started");
        t.start().unwrap();
        t.join().unwrap();
        assert_eq!(hit.load(Ordering::SeqCst), 1);

        fn add_into((a, b, tx): (u32, u32, mpsc::Sender<u32>)) {
            tx.send(a + b).unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let t = Thread::with_arg(add_into, (1, 2, tx));
        t.start().unwrap();
        t.join().unwrap();
        assert_eq!(rx.recv().unwrap(), 3);
    });
}

#[test]
fn names_daemon_flag_and_default_names() {
    deadline(20, || {
        let a = Thread::new(|| {});
        let b = Thread::new(|| {});
        let (na, nb) = (a.name().to_string(), b.name().to_string());
        let num = |n: &str| n.strip_prefix("Thread-").unwrap().parse::<u64>().unwrap();
        assert!(num(&nb) > num(&na), "{na} then {nb}");
        // Made on a thread of the test harness: not a daemon (Python would inherit its
        // dummy thread's `true`; see `ThreadBuilder::daemon`).
        assert!(!a.daemon());

        let t = Thread::builder().name("worker").daemon(true).target(|| {});
        assert_eq!(t.name(), "worker");
        assert!(t.daemon());
        // As in Python, the default daemon flag is the creator's.
        let (tx, rx) = mpsc::channel();
        let parent = Thread::builder().daemon(true).target(move || {
            let child = Thread::new(|| {});
            tx.send(child.daemon()).unwrap();
        });
        parent.start().unwrap();
        parent.join().unwrap();
        assert!(rx.recv().unwrap());
        let (tx, rx) = mpsc::channel();
        let parent = Thread::new(move || tx.send(Thread::new(|| {}).daemon()).unwrap());
        parent.start().unwrap();
        parent.join().unwrap();
        assert!(!rx.recv().unwrap());
        // The OS thread carries the name too (panic messages, debuggers).
        let (tx, rx) = mpsc::channel();
        let t = Thread::builder().name("named-os-thread").target(move || {
            tx.send(std::thread::current().name().map(str::to_string))
                .unwrap();
        });
        t.start().unwrap();
        t.join().unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("named-os-thread"));
    });
}

#[test]
fn a_second_start_is_an_error() {
    deadline(20, || {
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let t = Thread::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        t.start().unwrap();
        let err = t.start().unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("only be started once"), "{err}");
        t.join().unwrap();
        // Also after it ended, and from a clone.
        assert!(t.clone().start().is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn join_timeout_is_alive_and_join_after_join() {
    deadline(20, || {
        let go = Arc::new(AtomicBool::new(false));
        let g = go.clone();
        let t = Thread::new(move || {
            while !g.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        assert!(!t.is_alive(), "not alive before start");
        assert!(!t.join_timeout(Duration::from_millis(10)), "not started");
        assert!(t.join().is_err(), "join before start is an error");
        t.start().unwrap();
        assert!(t.is_alive());
        let start = Instant::now();
        assert!(!t.join_timeout(Duration::from_millis(100)));
        assert!(start.elapsed() >= Duration::from_millis(90));
        assert!(t.is_alive());
        go.store(true, Ordering::SeqCst);
        assert!(t.join_timeout(Duration::from_secs(10)));
        assert!(!t.is_alive(), "is_alive after join_timeout");
        t.join().unwrap();
        t.join().unwrap();
        assert!(!t.is_alive(), "is_alive after join");
        assert!(t.clone().join_timeout(Duration::ZERO));
    });
}

#[test]
fn idents_and_native_ids() {
    deadline(20, || {
        let (tx, rx) = mpsc::channel();
        let t = Thread::new(move || {
            let me = current_thread();
            tx.send((get_ident(), me.ident(), me.native_id(), gettid()))
                .unwrap();
        });
        assert_eq!(t.ident(), None);
        assert_eq!(t.native_id(), None);
        t.start().unwrap();
        // Known as soon as start returns.
        let (ident, native) = (t.ident().unwrap(), t.native_id().unwrap());
        t.join().unwrap();
        let (inside_ident, cur_ident, cur_native, tid) = rx.recv().unwrap();
        assert_eq!(ident, inside_ident);
        assert_eq!(cur_ident, Some(ident));
        assert_eq!(cur_native, Some(native));
        assert_eq!(native, tid);
        assert_ne!(ident, get_ident());
        // Still readable after the end.
        assert_eq!(t.ident(), Some(ident));
    });
}

#[test]
fn a_panic_is_reported_by_join_with_its_message() {
    deadline(20, || {
        let t = Thread::builder()
            .name("panicky")
            .target(|| panic!("the answer is {}", 42));
        t.start().unwrap();
        let err = t.join().unwrap_err();
        match &err {
            Error::Task(TaskError::Panicked {
                message, location, ..
            }) => {
                assert_eq!(message, "the answer is 42");
                assert!(location.as_deref().unwrap().contains("threading.rs"));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Every join says so, and the thread is over.
        assert!(t.join().is_err());
        assert!(!t.is_alive());
        assert!(!enumerate().contains(&t));
    });
}

#[test]
fn enumerate_and_active_count_follow_starts_and_joins() {
    deadline(20, || {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<Thread> = (0..3)
            .map(|_| {
                let s = stop.clone();
                Thread::new(move || {
                    while !s.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        assert!(!enumerate().iter().any(|t| threads.contains(t)));
        for t in &threads {
            t.start().unwrap();
        }
        let all = enumerate();
        assert_eq!(all[0], main_thread());
        for t in &threads {
            assert!(all.contains(t));
        }
        assert!(active_count() >= 4);
        assert!(all.iter().all(Thread::is_alive));
        stop.store(true, Ordering::SeqCst);
        for t in &threads {
            t.join().unwrap();
        }
        let after = enumerate();
        assert!(
            !after.iter().any(|t| threads.contains(t)),
            "joined threads still listed: {after:?}"
        );
        assert!(after.contains(&main_thread()));
    });
}

#[test]
fn current_thread_main_thread_and_threads_not_started_here() {
    deadline(20, || {
        let main = main_thread();
        assert_eq!(main.name(), "MainThread");
        assert!(!main.daemon());
        assert!(main.is_alive());
        assert_eq!(main.ident(), Some(1));
        assert_eq!(main.native_id(), Some(std::process::id()));
        assert!(main.join().is_err(), "the main thread cannot be joined");

        // The test runs on a thread the harness started: a dummy, as in Python.
        let h = std::thread::Builder::new()
            .name("outsider".into())
            .spawn(|| {
                let me = current_thread();
                assert_eq!(me.name(), "outsider");
                assert!(me.daemon());
                assert!(me.is_alive());
                assert_eq!(me, current_thread(), "one handle per thread");
                assert_eq!(me.ident(), Some(get_ident()));
                assert_eq!(me.native_id(), Some(gettid()));
                assert!(!enumerate().contains(&me));
                assert!(me.join().is_err(), "a thread cannot join itself");
            })
            .unwrap();
        h.join().unwrap();
        let unnamed = std::thread::spawn(|| current_thread().name().to_string())
            .join()
            .unwrap();
        assert!(unnamed.starts_with("Dummy-"), "{unnamed}");

        let (tx, rx) = mpsc::channel();
        let t = Thread::new(move || {
            let me = current_thread();
            tx.send(me.join().map_err(|e| e.to_string())).unwrap();
        });
        t.start().unwrap();
        t.join().unwrap();
        let err = rx.recv().unwrap().unwrap_err();
        assert!(err.contains("current thread"), "{err}");
    });
}

#[test]
fn timer_runs_after_its_delay() {
    deadline(20, || {
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        let t = Timer::new(Duration::from_millis(150), move || {
            tx.send(started.elapsed()).unwrap();
        });
        t.start().unwrap();
        assert!(t.is_alive());
        let waited = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        t.join().unwrap();
        assert!(!t.cancel(), "too late to cancel");
        assert!(!t.is_alive());
    });
}

#[test]
fn timer_cancel_stops_it_before_and_after_start() {
    deadline(20, || {
        let ran = Arc::new(AtomicU32::new(0));
        let r = ran.clone();
        let t = Timer::new(Duration::from_secs(60), move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        t.start().unwrap();
        let start = Instant::now();
        assert!(t.cancel());
        t.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(30), "cancel woke it");

        let r = ran.clone();
        let t = Thread::builder()
            .name("timer")
            .timer(Duration::from_millis(10), move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
        assert_eq!(t.thread().name(), "timer");
        assert!(t.cancel(), "cancel before start");
        t.start().unwrap();
        assert!(t.join_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    });
}

/// A child program (this same test binary, started with `MP_THREADING_EXIT_CHILD`): a
/// daemon thread that sleeps for a minute, a non-daemon thread that finishes a little
/// later than `exit` is called. The program must wait for the second and not the first.
#[used]
#[unsafe(link_section = ".init_array")]
static EXIT_CHILD: extern "C" fn() = {
    extern "C" fn child() {
        let Ok(mode) = std::env::var("MP_THREADING_EXIT_CHILD") else {
            return;
        };
        let daemon = Thread::builder().daemon(true).target(|| {
            std::thread::sleep(Duration::from_secs(60));
            println!("daemon finished");
        });
        daemon.start().unwrap();
        let worker = Thread::new(|| {
            std::thread::sleep(Duration::from_millis(300));
            println!("non-daemon finished");
        });
        worker.start().unwrap();
        println!("exiting");
        match mode.as_str() {
            "exit" => std::process::exit(0),
            // `exit` from a thread: it waits for the others, never for itself.
            _ => {
                let t = Thread::new(|| std::process::exit(0));
                t.start().unwrap();
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    }
    child
};

fn run_exit_child(mode: &str) {
    let start = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MP_THREADING_EXIT_CHILD", mode)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("exiting"), "{stdout}");
    assert!(
        stdout.contains("non-daemon finished"),
        "not waited for: {stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l == "daemon finished"),
        "daemon waited for: {stdout}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn exit_waits_for_non_daemon_threads_and_abandons_daemons() {
    deadline(50, || run_exit_child("exit"));
}

#[test]
fn exit_from_a_thread_waits_for_the_other_threads() {
    deadline(50, || run_exit_child("exit-from-thread"));
}

fn threads_in_a_child(w: multiproc::Connection) {
    let daemon = Thread::builder().daemon(true).target(|| {
        std::thread::sleep(Duration::from_secs(60));
    });
    daemon.start().unwrap();
    let worker = Thread::new(move || {
        std::thread::sleep(Duration::from_millis(300));
        w.send(&"non-daemon finished".to_string()).unwrap();
    });
    worker.start().unwrap();
}

#[test]
fn a_process_child_waits_for_its_non_daemon_threads() {
    deadline(50, || {
        let (r, w) = multiproc::Pipe::new(false).unwrap();
        let start = Instant::now();
        let p = Process::start(threads_in_a_child, w).unwrap();
        assert!(
            p.join_timeout(Duration::from_secs(30)),
            "the daemon was waited for"
        );
        assert_eq!(p.exitcode(), Some(0));
        assert!(start.elapsed() < Duration::from_secs(30));
        let got: String = r.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, "non-daemon finished");
        common::assert_gone(&[p.pid()]);
    });
}
