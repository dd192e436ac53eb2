//! Faults aimed at the pool itself: kills that must blame exactly their target, and the
//! worker that breaks the frame protocol.

mod common;
use common::deadline;
use multiproc::{Chunksize, Executor, ProcessPool, TaskError};
use std::time::Duration;

multiproc::test_support!();

/// Slow items take about the timeout, so many kills land just as the item finishes and
/// the worker moves on to a fast one. A fast item never runs near the timeout, so it must
/// never be blamed; one in forty runs far past it and must always be. Every item's outcome
/// is checked.
#[test]
fn a_timeout_kill_blames_exactly_the_item_it_aimed_at() {
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
