//! `insights()` on both pools: per-worker counts that add up, times that cover what the
//! tasks did, restarts with their causes, and the slowest task found.

mod common;
use common::{assert_gone, deadline};
use multiproc::{Chunksize, Executor, Insights, ProcessPool, RestartCause, TaskError, ThreadPool};
use std::time::{Duration, Instant};

multiproc::test_support!();

/// The known slow item, and how long it and the others sleep.
const SLOW: u64 = 13;
const SLOW_MS: u64 = 150;
const FAST_MS: u64 = 10;
const ITEMS: u64 = 20;

fn nap(x: u64) -> u64 {
    let ms = if x == SLOW { SLOW_MS } else { FAST_MS };
    std::thread::sleep(Duration::from_millis(ms));
    x * 2
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn crash(_: ()) -> u32 {
    std::process::abort()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// What must hold for 20 items, one slow, run in chunks of one on `workers` workers since
/// `built` (just before the pool was built).
fn check_counts_and_times(ins: &Insights, workers: usize, built: Instant) {
    assert_eq!(ins.workers.len(), workers, "{ins}");
    assert_eq!(
        ins.tasks(),
        ITEMS,
        "per-worker counts must add up to the items:\n{ins}"
    );
    let slept = Duration::from_millis((ITEMS - 1) * FAST_MS + SLOW_MS);
    let working: Duration = ins.workers.iter().map(|w| w.working).sum();
    assert!(
        working >= slept,
        "working {working:?} < slept {slept:?}\n{ins}"
    );
    let alive = built.elapsed();
    for w in &ins.workers {
        assert!(
            w.working + w.waiting + w.starting <= alive,
            "slot {} accounts for more than the pool's life {alive:?}:\n{ins}",
            w.slot
        );
    }
    let top = &ins.slowest[0];
    assert_eq!(
        (top.index, top.items),
        (Some(SLOW as usize), 1),
        "the slowest task must be the known slow one:\n{ins}"
    );
    assert!(top.duration >= Duration::from_millis(SLOW_MS), "{ins}");
    assert!(ins.slowest.len() <= 5);
    assert!(
        ins.slowest
            .windows(2)
            .all(|w| w[0].duration >= w[1].duration)
    );
}

#[test]
fn a_process_pool_counts_every_item_and_finds_the_slow_one() {
    deadline(60, || {
        let built = Instant::now();
        let pool = ProcessPool::new(2).unwrap();
        let out: Vec<u64> = pool
            .imap_chunked(nap, 0..ITEMS, Chunksize::Fixed(1))
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(out.len(), ITEMS as usize);
        let ins = pool.insights();
        check_counts_and_times(&ins, 2, built);
        for (w, &p) in ins.workers.iter().zip(pool.initial_pids()) {
            assert_eq!(w.pids, vec![p]);
            assert!(w.restarts.is_empty(), "{ins}");
            // Starting a worker process takes some time, and not seconds.
            assert!(w.starting > Duration::ZERO && w.starting < Duration::from_secs(20));
        }
        assert!(
            ins.slowest
                .iter()
                .all(|t| pool.initial_pids().contains(&t.pid))
        );
        // The table names every worker and the slow item.
        let table = ins.to_string();
        for p in pool.initial_pids() {
            assert!(table.contains(&p.to_string()), "{table}");
        }
        assert!(table.contains(&format!("item {SLOW}")), "{table}");
        // A submit's slow task has no index.
        pool.submit(sleep_ms, 200).unwrap().result().unwrap();
        let top = pool.insights().slowest[0].clone();
        assert_eq!((top.index, top.items), (None, 1));
        assert!(top.duration >= Duration::from_millis(200));
        let pids = pool.initial_pids().to_vec();
        drop(pool);
        assert_gone(&pids);
    });
}

#[test]
fn a_process_pool_reports_retirements_crashes_and_timeouts_with_their_causes() {
    deadline(60, || {
        let pool = ProcessPool::builder()
            .workers(1)
            .max_tasks_per_child(3)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        // Six tasks: the first worker retires after three, the second after six.
        let ran: Vec<u32> = (0..6)
            .map(|_| pool.submit(pid, ()).unwrap().result().unwrap())
            .collect();
        let crashed = match pool.submit(crash, ()).unwrap().result() {
            Err(TaskError::WorkerDied { pid, .. }) => pid,
            other => panic!("{other:?}"),
        };
        let timed_out = match pool.submit(sleep_ms, 5_000).unwrap().result() {
            Err(TaskError::TimedOut { pid, .. }) => pid,
            other => panic!("{other:?}"),
        };
        assert_eq!(pool.submit(pid, ()).unwrap().result().unwrap(), {
            let w = &pool.insights().workers[0];
            *w.pids.last().unwrap()
        });
        pool.close();
        pool.join().unwrap();
        let ins = pool.insights();
        let w = &ins.workers[0];
        let causes: Vec<(u32, RestartCause)> = w
            .restarts
            .iter()
            .map(|r| (r.pid, r.cause.clone()))
            .collect();
        assert_eq!(
            causes,
            vec![
                (ran[0], RestartCause::MaxTasksPerChild),
                (ran[3], RestartCause::MaxTasksPerChild),
                (crashed, RestartCause::Signal(libc::SIGABRT)),
                (timed_out, RestartCause::Timeout),
            ],
            "{ins}"
        );
        // Every process that held the slot, in order; the crash and the timeout ran on the
        // third and fourth, and their items gave no outcome of their own.
        assert_eq!(w.pids.len(), 5, "{ins}");
        assert_eq!(&w.pids[..4], &[ran[0], ran[3], crashed, timed_out]);
        assert_eq!(w.tasks, 7, "{ins}");
        let table = ins.to_string();
        for want in ["max_tasks_per_child", "signal 6 (SIGABRT)", "timeout kill"] {
            assert!(table.contains(want), "{want:?} missing from\n{table}");
        }
        assert_gone(&w.pids);
    });
}

#[test]
fn a_thread_pool_counts_every_item_and_finds_the_slow_one() {
    deadline(60, || {
        let built = Instant::now();
        let pool = ThreadPool::builder()
            .workers(2)
            .thread_name("insight")
            .insights(true)
            .build()
            .unwrap();
        let out: Vec<u64> = pool
            .imap_chunked(nap, 0..ITEMS, Chunksize::Fixed(1))
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(out.len(), ITEMS as usize);
        let ins = pool.insights();
        check_counts_and_times(&ins, 2, built);
        for w in &ins.workers {
            assert_eq!(
                w.thread.as_deref(),
                Some(format!("insight-{}", w.slot).as_str())
            );
            assert_eq!(w.pids, vec![std::process::id()]);
            assert!(w.restarts.is_empty());
        }
        // A panic fails its task and is counted; the thread is not replaced.
        let r = pool
            .submit(|_: ()| -> u32 { panic!("boom") }, ())
            .unwrap()
            .result();
        assert!(matches!(r, Err(TaskError::Panicked { .. })));
        let later = pool.insights();
        assert_eq!(later.tasks(), ITEMS + 1);
        assert_eq!(later.restarts(), 0);
        assert!(later.to_string().contains("insight-0"));
    });
}

#[test]
fn a_thread_pool_without_insights_counts_but_does_not_time() {
    deadline(60, || {
        let pool = ThreadPool::new(2).unwrap();
        pool.map(nap, 0..4u64).unwrap();
        let ins = pool.insights();
        assert_eq!(ins.tasks(), 4);
        assert!(ins.workers.iter().all(|w| !w.timed && w.working.is_zero()));
        assert!(ins.slowest.is_empty());
        assert!(ins.to_string().contains(".insights(true)"), "{ins}");
    });
}
