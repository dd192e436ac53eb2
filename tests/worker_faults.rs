//! Faults aimed at the pool itself: kills that must blame exactly their target, and the
//! memory limit told apart from a plain abort.

mod common;
use common::deadline;
use multiproc::{Chunksize, Executor, ProcessPool, TaskError};
use std::time::Duration;

multiproc::test_support!();

#[test]
fn memory_limit_is_only_a_failed_allocation_not_any_abort() {
    deadline(60, || {
        fn hog(mb: usize) -> usize {
            let v = vec![1u8; mb << 20];
            v.iter().map(|&b| b as usize).sum::<usize>() >> 20
        }
        fn abort(_: ()) {
            std::process::abort()
        }
        let pool = ProcessPool::builder()
            .workers(1)
            .memory_limit(512 << 20)
            .build()
            .unwrap();
        match pool.submit(hog, 1024).unwrap().result() {
            Err(TaskError::MemoryLimit { limit, .. }) => assert_eq!(limit, 512 << 20),
            other => panic!("1 GiB under a 512 MiB limit: {other:?}"),
        }
        match pool.submit(abort, ()).unwrap().result() {
            Err(TaskError::WorkerDied { status, .. }) => {
                assert_eq!(status.signal, Some(libc::SIGABRT))
            }
            other => panic!("a plain abort: {other:?}"),
        }
        assert_eq!(pool.submit(hog, 16).unwrap().result().unwrap(), 16);
    });
}

/// Slow items take about the timeout, so many kills land just as the item finishes and
/// the worker moves on to a fast one. A fast item never runs near the timeout, so it must
/// never be blamed; every item's outcome is checked.
#[test]
fn a_timeout_kill_blames_exactly_the_item_it_aimed_at() {
    deadline(120, || {
        fn work(x: u64) -> u64 {
            if x % 4 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            x * 3
        }
        let pool = ProcessPool::builder()
            .workers(2)
            .task_timeout(Duration::from_millis(20))
            .build()
            .unwrap();
        let n = 400u64;
        for chunk in [1, 4] {
            let out: Vec<_> = pool
                .imap_chunked(work, 0..n, Chunksize::Fixed(chunk))
                .collect();
            assert_eq!(out.len(), n as usize);
            let mut timed_out = 0;
            for (x, r) in (0..n).zip(out) {
                match r {
                    Ok(v) => assert_eq!(v, x * 3),
                    Err(TaskError::TimedOut { .. }) if x % 4 == 0 => timed_out += 1,
                    Err(e) => panic!("item {x} (chunk {chunk}): {e}"),
                }
            }
            assert!(timed_out > 0, "no slow item timed out: the test lost its race");
        }
    });
}
