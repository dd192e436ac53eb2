//! ProcessPool: results, and fault containment (every fault costs one task, never the pool).

mod common;
use common::{assert_gone, deadline};
use multiproc::{Chunksize, Error, Executor, ProcessPool, StartMethod, TaskError};
use std::time::{Duration, Instant};

multiproc::test_support!();

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

/// Crashes this (worker) process with SIGSEGV: a real fault, as a bug in native code makes.
fn segfault() -> u32 {
    // SAFETY: none, on purpose: a write through a null pointer is undefined behaviour, and
    // this test wants exactly what the kernel does with it (SIGSEGV kills the worker before
    // anything else runs). It lives here, not in the library, so no safe API can do it.
    unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) };
    unreachable!("the null write did not fault")
}

/// Behaves by input: 0 panic, 1 abort, 2 segfault, 3 exit(3), 4 endless loop, else x * 10.
fn faulty(x: u32) -> u32 {
    match x {
        0 => panic!("task zero panics"),
        1 => std::process::abort(),
        2 => segfault(),
        3 => std::process::exit(3),
        4 => loop {
            std::hint::spin_loop()
        },
        x => x * 10,
    }
}

#[test]
fn submit_and_map_give_correct_results_under_both_start_methods() {
    deadline(60, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let pool = ProcessPool::builder()
                .workers(2)
                .start_method(method)
                .build()
                .unwrap();
            assert_eq!(pool.submit(fib, 20).unwrap().result().unwrap(), 6765);
            let want: Vec<u64> = (0..30).map(fib).collect();
            assert_eq!(pool.map(fib, 0..30).unwrap(), want);
            assert_eq!(
                pool.map_chunked(fib, 0..30, Chunksize::Fixed(1)).unwrap(),
                want
            );
            let got: Vec<u64> = pool.imap(fib, 0..30).map(|r| r.unwrap()).collect();
            assert_eq!(got, want);
            let mut un: Vec<u64> = pool
                .imap_unordered(fib, 0..30)
                .map(|r| r.unwrap())
                .collect();
            un.sort();
            let mut w2 = want.clone();
            w2.sort();
            assert_eq!(un, w2);
            fn add(a: u64, b: u64) -> u64 {
                a + b
            }
            assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
            let pids = pool.initial_pids().to_vec();
            drop(pool);
            assert_gone(&pids);
        }
    });
}

#[test]
fn every_fault_costs_only_its_own_task() {
    deadline(120, || {
        let pool = ProcessPool::builder()
            .workers(2)
            .task_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let start = Instant::now();
        let out: Vec<Result<u32, TaskError>> = pool
            .imap_chunked(faulty, 0..12u32, Chunksize::Fixed(3))
            .collect();
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_eq!(out.len(), 12);
        match &out[0] {
            Err(TaskError::Panicked {
                index: Some(0),
                message,
                location: Some(loc),
                pid,
            }) => {
                assert_eq!(message, "task zero panics");
                assert!(loc.contains("process_pool.rs"), "{loc}");
                assert!(*pid > 0);
            }
            other => panic!("{other:?}"),
        }
        match &out[1] {
            Err(TaskError::WorkerDied {
                index: Some(1),
                status,
                ..
            }) => assert_eq!(status.signal, Some(6)),
            other => panic!("{other:?}"),
        }
        match &out[2] {
            Err(TaskError::WorkerDied {
                index: Some(2),
                status,
                ..
            }) => assert_eq!(status.signal, Some(11)),
            other => panic!("{other:?}"),
        }
        match &out[3] {
            Err(TaskError::WorkerDied {
                index: Some(3),
                status,
                ..
            }) => assert_eq!(status.code, Some(3)),
            other => panic!("{other:?}"),
        }
        match &out[4] {
            Err(TaskError::TimedOut { index: Some(4), .. }) => {}
            other => panic!("{other:?}"),
        }
        for (i, r) in out.iter().enumerate().skip(5) {
            assert_eq!(r.as_ref().unwrap(), &(i as u32 * 10), "item {i}");
        }
        // The pool still works, with replaced workers.
        assert_eq!(pool.map(faulty, 5..9u32).unwrap(), vec![50, 60, 70, 80]);
    });
}

#[test]
fn map_returns_the_first_error_in_input_order() {
    deadline(60, || {
        let pool = ProcessPool::new(2).unwrap();
        let e = pool.map(faulty, vec![7, 8, 3, 0, 9]).unwrap_err();
        match e {
            Error::Task(TaskError::WorkerDied { index: Some(2), .. }) => {}
            other => panic!("{other:?}"),
        }
    });
}

/// Panics on 0, else returns its input (no abort or endless loop, as `faulty` has: a
/// map's later items may start before the error is seen).
fn panics_at_zero(x: u32) -> u32 {
    assert_ne!(x, 0, "item zero panics");
    x
}

#[test]
fn map_over_a_sized_input_stops_taking_it_after_an_error() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    deadline(60, || {
        let pool = ProcessPool::new(2).unwrap();
        // `inspect` keeps the range's exact length, so map streams it one window at a
        // time: after item 0 fails, the rest of the million is never taken.
        let taken = AtomicUsize::new(0);
        let input = (0..1_000_000u32).inspect(|_| {
            taken.fetch_add(1, Ordering::Relaxed);
        });
        let e = pool
            .map_chunked(panics_at_zero, input, Chunksize::Fixed(1))
            .unwrap_err();
        assert!(
            matches!(e, Error::Task(TaskError::Panicked { index: Some(0), .. })),
            "{e:?}"
        );
        let taken = taken.load(Ordering::Relaxed);
        assert!(
            taken < 100_000,
            "map took {taken} items after the first failed"
        );
    });
}

#[test]
fn a_worker_killed_from_outside_fails_only_its_task() {
    deadline(60, || {
        let pool = ProcessPool::new(2).unwrap();
        let marker = marker_path("kill");
        let victim = pool.submit(announce_then_sleep, marker.clone()).unwrap();
        let pid = wait_for_pid(&marker);
        sigkill(pid);
        match victim.result() {
            Err(TaskError::WorkerDied {
                pid: died, status, ..
            }) => {
                assert_eq!(died, pid);
                assert_eq!(status.signal, Some(9));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.map(fib, 0..10).unwrap().len(), 10);
    });
}

/// A task that writes its worker's pid to `path` once it runs, then sleeps for 30 s.
fn announce_then_sleep(path: String) -> u32 {
    std::fs::write(&path, std::process::id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(30));
    std::process::id()
}

fn marker_path(tag: &str) -> String {
    let p = std::env::temp_dir().join(format!(
        "mp-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&p);
    p.display().to_string()
}

/// Waits (at most 20 s) until the task behind `path` has started; returns its worker's pid.
fn wait_for_pid(path: &str) -> u32 {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            let _ = std::fs::remove_file(path);
            return pid;
        }
        assert!(Instant::now() < end, "the task never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sigkill(pid: u32) {
    std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[test]
fn unserializable_argument_and_result_are_typed_errors() {
    deadline(60, || {
        use serde::{Serialize, Serializer};
        #[derive(serde::Deserialize, Debug)]
        struct Bad(u32);
        impl Serialize for Bad {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if self.0 == 13 {
                    Err(serde::ser::Error::custom("unlucky"))
                } else {
                    s.serialize_u32(self.0)
                }
            }
        }
        fn echo(b: Bad) -> Bad {
            Bad(b.0 + 12)
        }
        let pool = ProcessPool::new(2).unwrap();
        match pool.submit(echo, Bad(13)) {
            Err(Error::Serialize { type_name, .. }) => assert!(type_name.contains("Bad")),
            other => panic!("{other:?}"),
        }
        match pool.submit(echo, Bad(1)).unwrap().result() {
            Err(TaskError::Serialize {
                type_name, message, ..
            }) => {
                assert!(type_name.contains("Bad"));
                assert!(!message.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let out: Vec<_> = pool.imap(echo, vec![Bad(2), Bad(13), Bad(3)]).collect();
        assert_eq!(out[0].as_ref().unwrap().0, 14);
        assert!(matches!(
            out[1],
            Err(TaskError::Serialize { index: Some(1), .. })
        ));
        assert_eq!(out[2].as_ref().unwrap().0, 15);
    });
}

#[test]
fn memory_limit_fails_the_task_not_the_pool() {
    deadline(60, || {
        fn hog(mb: usize) -> usize {
            let v = vec![1u8; mb << 20];
            v.iter().map(|&b| b as usize).sum::<usize>() >> 20
        }
        let pool = ProcessPool::builder()
            .workers(1)
            .memory_limit(512 << 20)
            .build()
            .unwrap();
        match pool.submit(hog, 2048).unwrap().result() {
            Err(TaskError::MemoryLimit { limit, .. }) => assert_eq!(limit, 512 << 20),
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.submit(hog, 16).unwrap().result().unwrap(), 16);
    });
}

#[test]
fn retries_rerun_a_task_whose_worker_died() {
    deadline(60, || {
        // Dies on the first attempt only: the marker file says whether it ran before.
        fn flaky(path: String) -> u32 {
            if std::fs::metadata(&path).is_err() {
                std::fs::write(&path, b"x").unwrap();
                std::process::abort();
            }
            7
        }
        let path = std::env::temp_dir().join(format!("mp-retry-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let pool = ProcessPool::builder()
            .workers(1)
            .retries(1)
            .build()
            .unwrap();
        let r = pool
            .submit(flaky, path.display().to_string())
            .unwrap()
            .result();
        let _ = std::fs::remove_file(&path);
        assert_eq!(r.unwrap(), 7);
    });
}

#[test]
fn max_tasks_per_child_recycles_workers() {
    deadline(60, || {
        let pool = ProcessPool::builder()
            .workers(1)
            .max_tasks_per_child(2)
            .build()
            .unwrap();
        let pids: Vec<u32> = (0..6)
            .map(|_| pool.submit(pid, ()).unwrap().result().unwrap())
            .collect();
        let mut distinct = pids.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{pids:?}");
        drop(pool);
        assert_gone(&distinct);
    });
}

#[test]
fn failing_initializer_is_a_clear_error_and_leaves_no_process() {
    deadline(60, || {
        fn bad_init(msg: String) {
            panic!("{msg}");
        }
        match ProcessPool::builder()
            .workers(2)
            .initializer(bad_init, "no database".to_string())
            .build()
        {
            Err(Error::InitializerFailed(e)) => match *e {
                TaskError::Panicked { message, .. } => assert_eq!(message, "no database"),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        fn good_init(_: ()) {}
        let pool = ProcessPool::builder()
            .workers(1)
            .initializer(good_init, ())
            .build()
            .unwrap();
        assert_eq!(pool.submit(fib, 10).unwrap().result().unwrap(), 55);
    });
}

#[test]
fn a_wrong_binary_is_a_clear_error() {
    deadline(60, || {
        match ProcessPool::builder()
            .workers(1)
            .executable("/bin/true")
            .build()
        {
            Err(Error::StartFailed(msg)) => assert!(msg.contains("multiproc::init"), "{msg}"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_different_build_is_refused_with_binary_mismatch() {
    deadline(60, || {
        // The `multiproc` CLI calls init() too, but it is another build.
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            match ProcessPool::builder()
                .workers(1)
                .start_method(method)
                .executable(env!("CARGO_BIN_EXE_multiproc"))
                .build()
            {
                Err(Error::BinaryMismatch {
                    path,
                    expected,
                    found,
                }) => {
                    assert!(path.ends_with("multiproc"));
                    assert_ne!(expected, found);
                }
                other => panic!("{other:?}"),
            }
        }
    });
}

#[test]
fn progress_bar_does_not_change_results() {
    deadline(60, || {
        let pool = ProcessPool::builder()
            .workers(2)
            .progress(true)
            .build()
            .unwrap();
        assert_eq!(
            pool.map(fib, 0..20).unwrap(),
            (0..20).map(fib).collect::<Vec<_>>()
        );
        // The bar counts every item as it is yielded, knows the total, and finishes.
        let mut it = pool.imap_chunked(fib, 0..20u64, Chunksize::Fixed(3));
        assert_eq!(it.__progress(), Some((0, Some(20), false)));
        for k in 1..=20u64 {
            assert_eq!(it.next().unwrap().unwrap(), fib(k - 1));
            assert_eq!(
                it.__progress(),
                Some((k, Some(20), false)),
                "after {k} items"
            );
        }
        assert!(it.next().is_none());
        assert_eq!(it.__progress(), Some((20, Some(20), true)));
        // Without `progress`, no bar.
        let quiet = ProcessPool::new(1).unwrap();
        assert_eq!(quiet.imap(fib, 0..3u64).__progress(), None);
    });
}

#[test]
fn cancel_pending_and_running_tasks() {
    deadline(60, || {
        fn sleep_ms(ms: u64) -> u64 {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        }
        let pool = ProcessPool::new(1).unwrap();
        let marker = marker_path("cancel");
        let running = pool.submit(announce_then_sleep, marker.clone()).unwrap();
        let pending = pool.submit(sleep_ms, 30_000).unwrap();
        let pid = wait_for_pid(&marker);
        assert!(pending.cancel());
        assert!(running.cancel());
        assert!(matches!(running.result(), Err(TaskError::Cancelled { .. })));
        assert!(matches!(pending.result(), Err(TaskError::Cancelled { .. })));
        // Cancelling the running task killed its worker.
        assert_gone(&[pid]);
        // The killed worker was replaced: new work runs at once.
        assert_eq!(pool.submit(sleep_ms, 1).unwrap().result().unwrap(), 1);
    });
}

#[test]
fn large_arguments_and_results_cross_intact() {
    deadline(60, || {
        fn rev(v: Vec<u8>) -> Vec<u8> {
            v.into_iter().rev().collect()
        }
        let pool = ProcessPool::new(2).unwrap();
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let got = pool.submit(rev, big.clone()).unwrap().result().unwrap();
        assert_eq!(got.len(), big.len());
        assert!(got.iter().rev().eq(big.iter()));
    });
}

#[test]
fn shutdown_rejects_new_work_and_terminate_fails_pending() {
    deadline(60, || {
        fn sleep_ms(ms: u64) -> u64 {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        }
        let pool = ProcessPool::new(1).unwrap();
        let f = pool.submit(sleep_ms, 50).unwrap();
        pool.shutdown(true, false);
        assert_eq!(f.result().unwrap(), 50);
        assert!(matches!(pool.submit(sleep_ms, 1), Err(Error::ShutDown)));

        let pool = ProcessPool::new(1).unwrap();
        let a = pool.submit(sleep_ms, 30_000).unwrap();
        let b = pool.submit(sleep_ms, 30_000).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        pool.terminate();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(matches!(a.result(), Err(TaskError::PoolClosed { .. })));
        assert!(matches!(b.result(), Err(TaskError::PoolClosed { .. })));
        let pids = pool.initial_pids().to_vec();
        drop(pool);
        assert_gone(&pids);
    });
}

/// A program that starts a pool and reports the pids of its workers and fork server.
fn pool_owner(report: String) {
    let pool = ProcessPool::new(2).unwrap();
    let mut pids: Vec<u32> = pool.initial_pids().to_vec();
    // The fork server is this process's child.
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
            && let Some(rest) = stat.rsplit(')').next()
            && rest.split_whitespace().nth(1) == Some(&me.to_string())
        {
            pids.push(e.file_name().to_str().unwrap().parse().unwrap());
        }
    }
    std::fs::write(&report, format!("{pids:?}")).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn sigkill_of_the_parent_leaves_no_worker_or_fork_server() {
    deadline(60, || {
        let report = std::env::temp_dir().join(format!("mp-owner-{}", std::process::id()));
        let _ = std::fs::remove_file(&report);
        let owner = multiproc::Process::start(pool_owner, report.display().to_string()).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&report)
                && t.ends_with(']')
            {
                break t;
            }
            assert!(Instant::now() < end, "the pool owner never reported");
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_file(&report);
        let pids: Vec<u32> = text
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(pids.len() >= 3, "{pids:?}");
        assert!(pids.iter().all(|&p| common::exists(p)));
        owner.kill().unwrap();
        owner.join();
        assert_gone(&pids);
    });
}

#[test]
fn no_fd_is_leaked_by_a_pool() {
    deadline(60, || {
        // Warm up the manager thread and fork server, which live as long as the program.
        drop(ProcessPool::new(1).unwrap());
        let before = common::fd_count();
        for _ in 0..3 {
            let pool = ProcessPool::new(2).unwrap();
            assert_eq!(pool.map(fib, 0..10).unwrap().len(), 10);
        }
        // Other tests run concurrently in this binary; allow for their fds settling.
        let end = Instant::now() + Duration::from_secs(5);
        while common::fd_count() > before && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            common::fd_count() <= before + 4,
            "fds grew from {before} to {}",
            common::fd_count()
        );
    });
}

/// The voluntary context switches of process `pid` so far: how often it went to sleep.
fn sleeps_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_task_wakes_only_the_worker_it_is_given_to() {
    // A lone caller's round trips all go to one worker. The other must stay asleep: waking
    // it costs the dispatcher a system call per task, and on two cores the woken worker's
    // spin takes a CPU from the three threads doing the work (the unpinned round trip cost
    // 15-25 µs that way).
    deadline(60, || {
        let pool = ProcessPool::new(2).unwrap();
        pool.map(fib, 0..20).unwrap();
        let pids = pool.initial_pids().to_vec();
        let tasks = |p: &ProcessPool| -> Vec<u64> {
            p.insights().workers.iter().map(|w| w.tasks).collect()
        };
        let before_tasks = tasks(&pool);
        let before: Vec<u64> = pids.iter().map(|&p| sleeps_of(p)).collect();
        let n = 100;
        for i in 0..n {
            // Longer than any waiter's spin (2 ms), so an idle worker is asleep by the
            // next task: each wake-up it gets is then a context switch.
            std::thread::sleep(Duration::from_millis(3));
            assert_eq!(
                pool.submit(fib, i % 10).unwrap().result().unwrap(),
                fib(i % 10)
            );
        }
        let ran: Vec<u64> = tasks(&pool)
            .iter()
            .zip(&before_tasks)
            .map(|(a, b)| a - b)
            .collect();
        let idle = (0..2)
            .find(|&s| ran[s] == 0)
            .unwrap_or_else(|| panic!("one worker should have run every round trip, ran {ran:?}"));
        let woke = sleeps_of(pids[idle]) - before[idle];
        assert!(
            woke < n / 4,
            "the idle worker woke {woke} times for {n} tasks given to the other"
        );
    });
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn results_reach_callbacks_and_sleepers_while_another_caller_helps() {
    // While a caller spins on a future it collects every result itself, and workers skip
    // the ring (the "Helpers" protocol in src/process_pool/README.md). Futures nobody spins
    // on must still complete: those seen by callbacks only, and those whose waiter sleeps.
    // (The narrow race, a result landing just as a helper stops, is too rare to hit from
    // here; the loom model `loom_a_notify_skipped_for_a_covering_party_is_never_lost` in
    // src/sys/wait.rs checks that protocol.)
    deadline(120, || {
        let pool = ProcessPool::new(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let helper = s.spawn(|| {
                for i in 0..3000u64 {
                    assert_eq!(
                        pool.submit(fib, i % 12).unwrap().result().unwrap(),
                        fib(i % 12)
                    );
                }
            });
            let sleeper = s.spawn(|| {
                for _ in 0..40 {
                    // 5 ms: past the waiter's 2 ms spin, so it sleeps on the future.
                    assert_eq!(pool.submit(nap, 5).unwrap().result().unwrap(), 5);
                }
            });
            for i in 0..400u64 {
                let tx = tx.clone();
                pool.submit(fib, i % 15)
                    .unwrap()
                    .add_done_callback(move |r| tx.send((i, r.clone().unwrap())).unwrap());
                if i % 8 == 0 {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            helper.join().unwrap();
            sleeper.join().unwrap();
        });
        drop(tx);
        // Every callback fires even though no caller is spinning any more.
        let mut seen: Vec<(u64, u64)> = rx.iter().collect();
        seen.sort();
        assert_eq!(seen.len(), 400);
        for (i, r) in seen {
            assert_eq!(r, fib(i % 15), "task {i}");
        }
    });
}

/// The slice the kernel reports for a thread (`se.slice` in its `sched` file; kernels with
/// scheduler debugging only).
fn slice_of(task: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("{task}/sched")).ok()?;
    let line = s.lines().find(|l| l.starts_with("se.slice"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

#[test]
fn the_dispatcher_gets_a_short_slice_and_workers_keep_the_default() {
    // Beside busy CPUs a sleeping caller's result waits on the dispatcher's wake-up, which
    // a short slice makes prompt (`sys::sched`); the user's tasks keep the default slice,
    // in replacement workers too (started while the dispatcher runs).
    deadline(60, || {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let custom_slices = (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 12);
        let mine = slice_of("/proc/thread-self");
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let pool = ProcessPool::builder()
                .workers(1)
                .start_method(method)
                .max_tasks_per_child(1)
                .build()
                .unwrap();
            pool.map(fib, 0..3).unwrap();
            // A dispatcher thread (tests beside this one may have pools too: every
            // dispatcher asks the same slice).
            let dispatcher = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|t| {
                    std::fs::read_to_string(t.join("comm"))
                        .is_ok_and(|c| c.trim() == "multiproc-dispa")
                })
                .expect("the dispatcher thread");
            // The latest worker, started (through the manager thread) while the dispatcher
            // runs, once it is up.
            let started = Instant::now();
            let w = loop {
                let pids = pool.insights().workers[0].pids.clone();
                assert!(pids.len() >= 3, "recycled after each task: {pids:?}");
                let w = slice_of(&format!("/proc/{}", pids.last().unwrap()));
                if w.is_some() || mine.is_none() || started.elapsed() > Duration::from_secs(10) {
                    break w;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            let d = slice_of(dispatcher.to_str().unwrap());
            match mine {
                Some(default) => {
                    assert_eq!(w, Some(default), "{method:?}: a replacement worker's slice");
                    let want = if custom_slices { 100_000 } else { default };
                    assert_eq!(d, Some(want), "the dispatcher's slice");
                }
                None => assert_eq!((d, w), (None, None), "no kernel reports for one only"),
            }
        }
    });
}

/// The CPU time this thread has used, in ms (`CLOCK_THREAD_CPUTIME_ID`: exact, unlike the
/// 10 ms ticks of `/proc/.../stat`, and present on every kernel, unlike `/proc/.../sched`).
fn thread_cpu_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

#[test]
fn a_map_of_slow_tasks_lets_its_caller_sleep() {
    // The caller spins for the next result only while results stream in. One worker
    // running tasks of 25 ms brings a result every 25 ms: a spin (up to 2 ms) after each
    // would take a CPU the workers may need for a tenth of the time.
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        pool.map(nap, vec![0]).unwrap();
        let (cpu, t) = (thread_cpu_ms(), Instant::now());
        pool.map_chunked(nap, vec![25; 20], Chunksize::Fixed(1))
            .unwrap();
        let (cpu, wall) = (thread_cpu_ms() - cpu, t.elapsed().as_secs_f64() * 1e3);
        assert!(
            cpu < wall * 0.03,
            "the caller used {cpu:.1} ms of CPU in {wall:.0} ms of waiting"
        );
    });
}
