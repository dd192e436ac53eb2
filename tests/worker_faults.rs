//! Faults aimed at the pool itself: kills that must blame exactly their target, the worker
//! that breaks the frame protocol or attacks the pool's memory, and what a death under a
//! memory limit is reported as.

mod common;
use common::deadline;
use multiproc::{Chunksize, Executor, ProcessPool, StartMethod, TaskError, TaskFuture};
use std::time::Duration;

multiproc::test_support!();

/// Held by the tests whose races are timed to the microsecond, so they do not steal each
/// other's CPU on a small machine (a fast item stalled for the whole timeout would be
/// indistinguishable from a blame bug).
static TIMED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Slow items take about the timeout, so many kills land just as the item finishes and
/// the worker moves on to a fast one. A fast item never runs near the timeout, so it must
/// never be blamed; one in forty runs far past it and must always be. Every item's outcome
/// is checked.
#[test]
fn a_timeout_kill_blames_exactly_the_item_it_aimed_at() {
    let _timed = TIMED.lock().unwrap_or_else(|e| e.into_inner());
    deadline(120, || {
        fn work(x: u64) -> u64 {
            if x.is_multiple_of(40) {
                // Well past the timeout: must time out.
                std::thread::sleep(Duration::from_millis(200));
            } else if x.is_multiple_of(4) {
                std::thread::sleep(Duration::from_millis(20));
            }
            x * 3
        }
        let pool = ProcessPool::builder()
            .workers(2)
            .task_timeout(Duration::from_millis(20))
            .build()
            .unwrap();
        let n = 1000u64;
        for chunk in [1, 4] {
            let out: Vec<_> = pool
                .imap_chunked(work, 0..n, Chunksize::Fixed(chunk))
                .collect();
            assert_eq!(out.len(), n as usize);
            let mut timed_out = 0;
            for (x, r) in (0..n).zip(out) {
                match r {
                    Ok(v) => {
                        assert!(!x.is_multiple_of(40), "item {x} outlived its timeout");
                        assert_eq!(v, x * 3)
                    }
                    Err(TaskError::TimedOut { .. }) if x.is_multiple_of(4) => timed_out += 1,
                    Err(e) => panic!("item {x} (chunk {chunk}): {e}"),
                }
            }
            assert!(
                timed_out > 0,
                "no slow item timed out: the test lost its race"
            );
        }
    });
}

/// A task that breaks its worker's result ring (bad counters, unknown kind, absurd
/// out-of-band size) fails with a protocol error naming the worker; the dispatcher neither
/// panics nor allocates, the worker is replaced, and other tasks succeed.
#[test]
fn a_worker_that_breaks_the_frame_protocol_fails_its_task_and_is_replaced() {
    deadline(60, || {
        fn corrupt(how: u32) -> u32 {
            multiproc::__test_corrupt_result_ring(how);
            // Results after the corruption must not be believed either.
            how
        }
        fn triple(x: u32) -> u32 {
            x * 3
        }
        let pool = ProcessPool::new(2).unwrap();
        for how in 0..3 {
            let bad = pool.submit(corrupt, how).unwrap();
            let good: Vec<_> = (0..20).map(|x| pool.submit(triple, x).unwrap()).collect();
            match bad.result() {
                Err(TaskError::Protocol { pid, message, .. }) => {
                    assert!(pid > 0 && !message.is_empty(), "{message}")
                }
                other => panic!("corruption {how}: {other:?}"),
            }
            for (x, f) in (0..20).zip(good) {
                assert_eq!(f.result().unwrap(), x * 3);
            }
        }
        assert_eq!(pool.map(triple, 0..100u32).unwrap().len(), 100);
    });
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Checks the outcome of every future: one whose `cancel` succeeded says `Cancelled`, every
/// other one has exactly `want(x)`. Returns how many were cancelled.
fn check_outcomes(futs: Vec<(u64, TaskFuture<u64>, bool)>, want: impl Fn(u64) -> u64) -> usize {
    let mut n_cancelled = 0;
    for (x, f, c) in futs {
        match f.result() {
            Err(TaskError::Cancelled { .. }) if c => n_cancelled += 1,
            Ok(v) if !c => assert_eq!(v, want(x), "item {x}"),
            other => panic!("item {x} (cancel said {c}): {other:?}"),
        }
    }
    n_cancelled
}

/// Many short items, some cancelled while they run (their worker is killed under them).
/// A future whose `cancel` succeeded says `Cancelled`; every other item has its exact
/// result, whether it ran on a worker that was killed for a neighbour or not.
///
/// In the second part each victim sleeps until a known instant and is cancelled around it
/// (a little before or after), so many kills land just as it finishes and its worker moves
/// on to the next item: that innocent item must run again, not be blamed.
#[test]
fn cancelling_running_futures_fails_exactly_the_cancelled_ones() {
    let _timed = TIMED.lock().unwrap_or_else(|e| e.into_inner());
    deadline(120, || {
        fn work(x: u64) -> u64 {
            if x.is_multiple_of(3) {
                std::thread::sleep(Duration::from_millis(3));
            }
            x * 7 + 1
        }
        let pool = ProcessPool::builder().workers(2).build().unwrap();
        let n = 600u64;
        let mut futs: Vec<(u64, TaskFuture<u64>, bool)> = (0..n)
            .map(|x| (x, pool.submit(work, x).unwrap(), false))
            .collect();
        let mut hit_running = 0;
        for (x, f, c) in futs.iter_mut() {
            if !x.is_multiple_of(5) {
                continue;
            }
            // Wait (briefly) until it is sent to a worker, so most cancels kill under it.
            let end = std::time::Instant::now() + Duration::from_millis(50);
            while !f.running() && !f.done() && std::time::Instant::now() < end {
                std::thread::yield_now();
            }
            hit_running += f.running() as u32;
            *c = f.cancel();
        }
        assert!(
            hit_running > 10,
            "only {hit_running} cancels hit a running task"
        );
        let n_cancelled = check_outcomes(futs, |x| x * 7 + 1);
        assert!(n_cancelled > 10, "only {n_cancelled} cancels succeeded");

        // Victims announce when they will end (in a file) and run until then; the items
        // behind them are quick.
        fn victim((round, path): (u64, String)) -> u64 {
            let t = now_ns() + 2_000_000;
            std::fs::write(&path, format!("{round} {t}")).unwrap();
            // Sleep most of the way, then spin, so it ends within a microsecond of t.
            std::thread::sleep(Duration::from_micros(1500));
            while now_ns() < t {
                std::hint::spin_loop();
            }
            round * 1000
        }
        fn quick(x: u64) -> u64 {
            if x.is_multiple_of(4) {
                // Right behind a victim: still running when a kill aimed at it lands late.
                std::thread::sleep(Duration::from_millis(1));
            }
            x.wrapping_mul(31) ^ 5
        }
        let path = std::env::temp_dir().join(format!("mp-cancel-{}", std::process::id()));
        let path_s = path.display().to_string();
        let pool = ProcessPool::builder().workers(1).build().unwrap();
        let (mut all, mut victims) = (Vec::new(), Vec::new());
        for round in 0..300u64 {
            let f = pool.submit(victim, (round, path_s.clone())).unwrap();
            let q: Vec<_> = (0..4)
                .map(|k| {
                    let x = round * 4 + k;
                    (x, pool.submit(quick, x).unwrap(), false)
                })
                .collect();
            let t = loop {
                let s = std::fs::read_to_string(&path).unwrap_or_default();
                let mut w = s.split(' ').map(|v| v.parse::<u64>().ok());
                if let (Some(Some(r)), Some(Some(t))) = (w.next(), w.next())
                    && r == round
                {
                    break t;
                }
                std::thread::sleep(Duration::from_micros(50));
            };
            // From 30 µs before the victim's end to 10 µs after it.
            let at = t - 30_000 + (round * 7919 % 40_000);
            // Sleep, then spin the last stretch (spinning throughout would starve the
            // other tests' workers on a small machine).
            std::thread::sleep(Duration::from_nanos(at.saturating_sub(now_ns() + 300_000)));
            while now_ns() < at {
                std::hint::spin_loop();
            }
            let c = f.cancel();
            // Waiting on a future runs a dispatcher round on this thread: the cancel is
            // acted on now, not after the dispatcher thread wakes up.
            q[0].1.wait_timeout(Duration::from_millis(1));
            victims.push((round, f, c));
            all.extend(q);
        }
        let _ = std::fs::remove_file(&path);
        let n_cancelled = check_outcomes(victims, |r| r * 1000);
        assert!(
            n_cancelled > 10,
            "only {n_cancelled} victims were cancelled"
        );
        assert_eq!(check_outcomes(all, quick), 0);
        // The pool goes on with fresh workers.
        assert_eq!(pool.map(work, 0..50u64).unwrap()[49], 49 * 7 + 1);
    });
}

/// Allocates `mb` MiB in one of a few ways: 0 `vec![1; n]`, 1 `Vec::with_capacity`, 2 a
/// `String` that grows, 3 `vec!` on a thread the task starts.
/// Each result goes through `black_box`: an optimizer that sees the bytes unused removes
/// the allocation (the release build returned 1024 from under a 512 MiB limit).
fn hog((how, mb): (u32, usize)) -> usize {
    use std::hint::black_box;
    let n = mb << 20;
    match how {
        0 => {
            black_box(vec![1u8; n])
                .iter()
                .map(|&b| b as usize)
                .sum::<usize>()
                >> 20
        }
        1 => {
            let mut v: Vec<u8> = Vec::with_capacity(n);
            v.resize(n, 1);
            black_box(v).len() >> 20
        }
        2 => {
            let (mut s, piece) = (String::new(), "x".repeat(1 << 20));
            for _ in 0..mb {
                s.push_str(&piece);
            }
            black_box(s).len() >> 20
        }
        _ => std::thread::spawn(move || black_box(vec![1u8; n]).len() >> 20)
            .join()
            .unwrap(),
    }
}

fn triple(x: u32) -> u32 {
    x * 3
}

/// Only a failed allocation is `MemoryLimit`, however it is made, on whichever thread, under
/// both start methods (a forked or an exec'd main thread runs the tasks); the worker is
/// replaced and other tasks complete.
#[test]
fn an_allocation_past_the_memory_limit_is_memory_limit() {
    deadline(120, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            allocations_past_the_limit(method);
        }
    });
}

fn allocations_past_the_limit(method: StartMethod) {
    let pool = ProcessPool::builder()
        .workers(2)
        .start_method(method)
        .memory_limit(512 << 20)
        .build()
        .unwrap();
    for how in 0..4 {
        let bad = pool.submit(hog, (how, 1024)).unwrap();
        let good: Vec<_> = (0..10).map(|x| pool.submit(triple, x).unwrap()).collect();
        match bad.result() {
            Err(TaskError::MemoryLimit { limit, pid, .. }) => {
                assert_eq!(limit, 512 << 20);
                assert!(pid > 0);
            }
            other => panic!("allocation {how} ({method:?}): {other:?}"),
        }
        for (x, f) in (0..10).zip(good) {
            assert_eq!(f.result().unwrap(), x * 3);
        }
        assert_eq!(pool.submit(hog, (how, 16)).unwrap().result().unwrap(), 16);
    }
}

/// A task's own abort, Rust's or C's, on the task's thread or another, is a worker death by
/// SIGABRT even under a memory limit: only a failed allocation is `MemoryLimit`.
#[test]
fn an_abort_under_a_memory_limit_is_a_worker_death_not_memory_limit() {
    deadline(120, || {
        fn die(how: u32) -> u32 {
            match how {
                0 => std::process::abort(),
                // SAFETY: abort() has no preconditions; it ends the process.
                1 => unsafe { libc::abort() },
                // An assert in C code ends in abort(): raise SIGABRT the same way.
                2 => {
                    // SAFETY: raise() has no preconditions.
                    unsafe { libc::raise(libc::SIGABRT) };
                    unreachable!("SIGABRT returned")
                }
                _ => std::thread::spawn(|| std::process::abort()).join().unwrap(),
            }
        }
        let pool = ProcessPool::builder()
            .workers(2)
            .memory_limit(512 << 20)
            .build()
            .unwrap();
        for how in 0..4 {
            let bad = pool.submit(die, how).unwrap();
            let good: Vec<_> = (0..10).map(|x| pool.submit(triple, x).unwrap()).collect();
            match bad.result() {
                Err(TaskError::WorkerDied { status, pid, .. }) => {
                    assert_eq!(status.signal, Some(libc::SIGABRT), "abort {how}");
                    assert!(pid > 0);
                }
                other => panic!("abort {how}: {other:?}"),
            }
            for (x, f) in (0..10).zip(good) {
                assert_eq!(f.result().unwrap(), x * 3);
            }
        }
        // A real allocation failure after all those aborts is still told apart.
        assert!(matches!(
            pool.submit(hog, (0, 1024)).unwrap().result(),
            Err(TaskError::MemoryLimit { .. })
        ));
    });
}

/// A worker that reopens the pool's memory file through `/proc/<parent>/fd` and tries to
/// resize it gets EPERM (the file is sealed): shrinking it would make the parent's next
/// access to the lost pages a SIGBUS. Returns, per pool memfd found, the errno of each try.
fn resize_pool_memfds(parent: u32) -> Vec<(i32, i32)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{parent}/fd")).unwrap() {
        let path = e.unwrap().path();
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        if !target
            .to_string_lossy()
            .starts_with("/memfd:multiproc-pool")
        {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        else {
            continue;
        };
        let len = f.metadata().unwrap().len();
        let errno = |r: std::io::Result<()>| r.err().and_then(|e| e.raw_os_error()).unwrap_or(0);
        let grow = errno(f.set_len(len + 4096));
        let shrink = errno(f.set_len(0));
        out.push((shrink, grow));
    }
    out
}

#[test]
fn a_worker_cannot_resize_the_pool_memory() {
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        let tries = pool
            .submit(resize_pool_memfds, std::process::id())
            .unwrap()
            .result()
            .unwrap();
        assert!(!tries.is_empty(), "the worker found no pool memfd");
        for (shrink, grow) in tries {
            assert_eq!(shrink, libc::EPERM, "shrinking the pool memfd");
            assert_eq!(grow, libc::EPERM, "growing the pool memfd");
        }
        // The parent is unharmed: the pool still works.
        assert_eq!(pool.map(triple, 0..100u32).unwrap()[99], 297);
    });
}
