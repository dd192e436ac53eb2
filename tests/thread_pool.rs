//! ThreadPool: capturing closures, panics, shutdown.

mod common;
use common::deadline;
use multiproc::{Error, TaskError, ThreadPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn capturing_closures_and_non_serializable_values() {
    deadline(30, || {
        let pool = ThreadPool::new(2).unwrap();
        let counter = Arc::new(AtomicUsize::new(0));
        let c = counter.clone();
        let v = pool
            .map(move |x: usize| c.fetch_add(x, Ordering::SeqCst), 1..=100)
            .unwrap();
        assert_eq!(v.len(), 100);
        assert_eq!(counter.load(Ordering::SeqCst), 5050);
        let rc = std::cell::Cell::new(5); // neither Sync nor Serialize
        let f = pool.submit(move |_: ()| rc.get() + 1, ()).unwrap();
        assert_eq!(f.result().unwrap(), 6);
    });
}

#[test]
fn a_panic_fails_only_its_task() {
    deadline(30, || {
        let pool = ThreadPool::builder().workers(2).build().unwrap();
        let out: Vec<_> = pool
            .imap(|x: u32| if x == 5 { panic!("five") } else { x }, 0..10)
            .collect();
        match &out[5] {
            Err(TaskError::Panicked {
                index: Some(5),
                message,
                location: Some(l),
                ..
            }) => {
                assert_eq!(message, "five");
                assert!(l.contains("thread_pool.rs"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 9);
        assert!(matches!(
            pool.map(|x: u32| if x == 2 { panic!("two") } else { x }, 0..5),
            Err(Error::Task(TaskError::Panicked { index: Some(2), .. }))
        ));
    });
}

#[test]
fn initializer_runs_in_every_thread() {
    deadline(30, || {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let pool = ThreadPool::builder()
            .workers(3)
            .initializer(move || {
                n2.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
        pool.shutdown(true, false);
        assert_eq!(n.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn shutdown_cancels_pending_when_asked() {
    deadline(30, || {
        let pool = ThreadPool::new(1).unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let slow = pool
            .submit(
                move |_: ()| {
                    s.store(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200))
                },
                (),
            )
            .unwrap();
        let pending: Vec<_> = (0..5)
            .map(|i| pool.submit(move |_: ()| i, ()).unwrap())
            .collect();
        while started.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        pool.shutdown(true, true);
        assert!(slow.result().is_ok());
        for p in pending {
            assert!(matches!(p.result(), Err(TaskError::Cancelled { .. })));
        }
        assert!(matches!(pool.submit(|_: ()| 1, ()), Err(Error::ShutDown)));
    });
}

#[test]
fn cancel_a_pending_future() {
    deadline(30, || {
        let pool = ThreadPool::new(1).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let _slow = pool
            .submit(|_: ()| std::thread::sleep(Duration::from_millis(100)), ())
            .unwrap();
        let r = ran.clone();
        let f = pool
            .submit(move |_: ()| r.fetch_add(1, Ordering::SeqCst), ())
            .unwrap();
        assert!(f.cancel());
        assert!(f.cancelled());
        drop(pool);
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a cancelled task never runs");
    });
}
