//! The Executor API: the same generic code on both pools; futures, wait, as_completed,
//! callbacks, cancellation and `.await`.

mod common;
use common::deadline;
use multiproc::{Executor, ProcessPool, Return, TaskError, ThreadPool, as_completed, wait};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

multiproc::test_support!();

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fails_on_3(x: u64) -> u64 {
    if x == 3 {
        panic!("three");
    }
    x
}

fn fails_after_300ms(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    fails_on_3(x)
}

/// One generic function, run unchanged on either pool.
fn exercise(pool: &impl Executor) {
    assert_eq!(pool.submit(square, 7).unwrap().result().unwrap(), 49);
    assert_eq!(pool.apply(square, 8).unwrap(), 64);
    assert_eq!(pool.apply_async(square, 9).unwrap().result().unwrap(), 81);
    assert_eq!(
        pool.map(square, 0..100u64).unwrap(),
        (0..100u64).map(square).collect::<Vec<_>>()
    );
    // Submitted slow first: both run at once, and the fast one must come out first (input
    // order would give 600 first). The gap is large so a loaded machine cannot swap them.
    let futs: Vec<_> = [600u64, 0]
        .iter()
        .map(|&ms| pool.submit(sleep_ms, ms).unwrap())
        .collect();
    let order: Vec<u64> = as_completed(futs).map(|f| f.result().unwrap()).collect();
    assert_eq!(
        order,
        vec![0, 600],
        "as_completed yields in completion order"
    );

    let futs: Vec<_> = vec![
        pool.submit(sleep_ms, 1).unwrap(),
        pool.submit(sleep_ms, 3000).unwrap(),
    ];
    let w = wait(&futs, Return::FirstCompleted, Some(Duration::from_secs(20)));
    assert_eq!(w.done, vec![0]);
    assert_eq!(w.not_done, vec![1]);
    let w = wait(&futs, Return::AllCompleted, Some(Duration::from_millis(50)));
    assert_eq!(w.not_done, vec![1], "timeout honoured");

    // FirstException returns at the first failure: not at the first success (that would be
    // FirstCompleted), and not only when all are done (AllCompleted would wait for the
    // 3 s task).
    let futs: Vec<_> = vec![
        pool.submit(sleep_ms, 0).unwrap(),
        pool.submit(fails_after_300ms, 3).unwrap(),
        pool.submit(sleep_ms, 3000).unwrap(),
    ];
    let w = wait(&futs, Return::FirstException, Some(Duration::from_secs(20)));
    assert_eq!(w.done, vec![0, 1], "returned at the failure of task 1");
    assert_eq!(w.not_done, vec![2]);

    let out: Vec<_> = pool.imap(fails_on_3, 0..6u64).collect();
    assert!(
        matches!(&out[3], Err(TaskError::Panicked { index: Some(3), message, .. }) if message == "three")
    );
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 5);
}

#[test]
fn the_same_generic_code_runs_on_threads_and_processes() {
    deadline(120, || {
        exercise(&ThreadPool::new(2).unwrap());
        exercise(&ProcessPool::new(2).unwrap());
    });
}

#[test]
fn done_callbacks_and_result_timeout() {
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let f = pool.submit(sleep_ms, 200).unwrap();
        assert!(!f.done());
        let t = Instant::now();
        assert!(matches!(
            f.result_timeout(Duration::from_millis(20)),
            Err(multiproc::Error::Timeout(_))
        ));
        assert!(t.elapsed() < Duration::from_millis(150));
        let h = hits.clone();
        f.add_done_callback(move |r| {
            assert_eq!(*r.as_ref().unwrap(), 200);
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert!(f.wait_timeout(Duration::from_secs(10)));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Added after completion: runs at once.
        let h = hits.clone();
        f.add_done_callback(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(f.result_timeout(Duration::from_secs(1)).unwrap(), 200);
        assert!(!f.cancel(), "finished futures cannot be cancelled");
    });
}

#[test]
fn futures_can_be_awaited_in_tokio() {
    deadline(60, || {
        let pool = ProcessPool::new(2).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (a, b) = rt.block_on(async {
            let a = pool.submit(square, 12).unwrap();
            let b = pool.submit(sleep_ms, 30).unwrap();
            tokio::join!(a, b)
        });
        assert_eq!(a.unwrap(), 144);
        assert_eq!(b.unwrap(), 30);
    });
}

#[test]
fn imap_reads_its_input_lazily() {
    deadline(60, || {
        let pulled = Arc::new(AtomicUsize::new(0));
        let p = pulled.clone();
        let pool = ProcessPool::new(2).unwrap();
        let input = (0..10_000_000u64).inspect(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
        });
        let mut it = pool.imap(square, input);
        for i in 0..10u64 {
            assert_eq!(it.next().unwrap().unwrap(), i * i);
        }
        let n = pulled.load(Ordering::SeqCst);
        assert!(n < 100_000, "imap read {n} items ahead: not bounded");
        drop(it);
    });
}
