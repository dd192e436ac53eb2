//! Every call into user code is a trust boundary: a panic in a task, a `Serialize` or
//! `Deserialize`, a done-callback or an initializer fails exactly what it belongs to, and
//! the pool goes on.

mod common;
use common::deadline;
use multiproc::{Error, Executor, ProcessPool, TaskError, TaskFuture, ThreadPool};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

multiproc::test_support!();

/// A number whose `Serialize` panics on 13 and whose `Deserialize` panics on 7.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Touchy(u32);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            panic!("serialize panics on 13");
        }
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Touchy, D::Error> {
        let v = u32::deserialize(d)?;
        if v == 7 {
            panic!("deserialize panics on 7");
        }
        Ok(Touchy(v))
    }
}

fn touchy(x: u32) -> Touchy {
    Touchy(x)
}

fn plain(x: Touchy) -> u32 {
    x.0
}

fn double(x: u32) -> u32 {
    x * 2
}

fn is_deser_panic(e: &TaskError) -> bool {
    matches!(e, TaskError::Deserialize { message, .. } if message.contains("deserialize panics on 7"))
}

fn is_ser_panic(e: &TaskError) -> bool {
    matches!(e, TaskError::Serialize { message, .. } if message.contains("serialize panics on 13"))
}

#[test]
fn process_pool_survives_a_panicking_done_callback() {
    deadline(60, || {
        let pool = ProcessPool::new(2).unwrap();
        let f = pool.submit(double, 1).unwrap();
        f.add_done_callback(|_| panic!("callback panics"));
        assert_eq!(f.result().unwrap(), 2);
        let out: Vec<u32> = pool.imap(double, 0..50u32).map(|r| r.unwrap()).collect();
        assert_eq!(out, (0..50).map(double).collect::<Vec<_>>());
        assert_eq!(pool.submit(double, 21).unwrap().result().unwrap(), 42);
    });
}

#[test]
fn thread_pool_survives_a_panicking_done_callback() {
    deadline(60, || {
        let pool = ThreadPool::new(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // Registered while the task is still pending, so it runs on the pool's thread.
        let f = pool
            .submit(
                move |x: u32| {
                    let _ = rx.recv_timeout(Duration::from_secs(10));
                    x
                },
                5,
            )
            .unwrap();
        f.add_done_callback(|_| panic!("callback panics"));
        tx.send(()).unwrap();
        assert_eq!(f.result().unwrap(), 5);
        for i in 0..20 {
            assert_eq!(
                pool.submit(move |x: u32| x + i, 1)
                    .unwrap()
                    .result()
                    .unwrap(),
                1 + i
            );
        }
        assert_eq!(
            pool.map(double, 0..10u32).unwrap(),
            (0..10).map(double).collect::<Vec<_>>()
        );
    });
}

#[test]
fn thread_pool_survives_a_panicking_task() {
    deadline(60, || {
        let pool = ThreadPool::new(1).unwrap();
        let f = pool
            .submit(|_: u32| -> u32 { panic!("task panics") }, 0)
            .unwrap();
        assert!(
            matches!(f.result(), Err(TaskError::Panicked { message, .. }) if message == "task panics")
        );
        assert_eq!(pool.submit(double, 4).unwrap().result().unwrap(), 8);
    });
}

/// A value whose `Drop` panics: dropping a user's value is a call into user code too.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("drop panics");
        }
    }
}

/// What a pool thread drops for the user (the call of a task cancelled before it ran, the
/// result of a task whose future was already dropped, the items of a cancelled map) is
/// dropped under a guard: a panicking `Drop` costs that value, not the thread.
#[test]
fn thread_pool_survives_a_panicking_drop_of_what_it_holds() {
    deadline(60, || {
        let pool = ThreadPool::new(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = pool.submit(move |_: ()| rx.recv().is_ok(), ()).unwrap();
        // Queued behind `busy` on the one thread, then cancelled: the thread drops the call.
        let held = PanicsOnDrop;
        let cancelled = pool
            .submit(
                move |_: ()| {
                    let _keep = &held;
                },
                (),
            )
            .unwrap();
        assert!(cancelled.cancel());
        // Its future dropped before it runs: the thread drops the result, the last owner.
        drop(pool.submit(|_: ()| PanicsOnDrop, ()).unwrap());
        // A map whose items are dropped unrun (the pool shuts its queue with them in it).
        let lazy = pool.imap(drop::<PanicsOnDrop>, (0..3).map(|_| PanicsOnDrop));
        drop(lazy);
        tx.send(()).unwrap();
        assert!(busy.result().unwrap());
        // The one thread is still there.
        for i in 0..3 {
            assert_eq!(pool.submit(double, i).unwrap().result().unwrap(), 2 * i);
        }
    });
}

/// A callback that asks its own future whether it is done, takes its result, or submits to
/// the same pool must not deadlock.
fn reentrant_callbacks(pool: &'static (impl Executor + Sync)) {
    for _ in 0..3 {
        let f = Arc::new(pool.submit(double, 3).unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let nested = Arc::new(Mutex::new(Vec::new()));
        let (f2, s2, n2) = (f.clone(), seen.clone(), nested.clone());
        // Keep a weak handle only: the callback must not keep its own future alive.
        let weak = Arc::downgrade(&f2);
        drop(f2);
        f.add_done_callback(move |r| {
            let me: Arc<TaskFuture<u32>> = weak.upgrade().expect("future alive");
            let mut s = s2.lock().unwrap();
            s.push(format!("done={}", me.done()));
            s.push(format!("arg={:?}", r.as_ref().ok()));
            // Taking the result from inside its own callback must return, not deadlock.
            let _ = me.result_timeout(Duration::from_secs(2));
            // Submitting from a callback must not deadlock. (Waiting for that task inside
            // the callback could: on a one-thread pool the callback holds the thread.)
            n2.lock().unwrap().push(pool.submit(double, 10).unwrap());
            s.push("submitted".into());
        });
        f.wait_timeout(Duration::from_secs(30));
        // Wait for the callback to have run.
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().len() < 3 && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = seen.lock().unwrap().clone();
        assert_eq!(s, vec!["done=true", "arg=Some(6)", "submitted"]);
        let g = nested.lock().unwrap().pop().unwrap();
        assert_eq!(g.result().unwrap(), 20);
        // The callback's `result_timeout` did not take the outcome: it is still here.
        assert_eq!(f.result_timeout(Duration::from_secs(1)).unwrap(), 6);
        // Added after completion: runs at once, and may also look at its own future.
        let hit = Arc::new(AtomicUsize::new(0));
        let (h, weak) = (hit.clone(), Arc::downgrade(&f));
        f.add_done_callback(move |_| {
            assert!(weak.upgrade().unwrap().done());
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hit.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn reentrant_callbacks_on_a_process_pool() {
    deadline(60, || {
        let pool: &'static ProcessPool = Box::leak(Box::new(ProcessPool::new(1).unwrap()));
        reentrant_callbacks(pool);
        pool.shutdown(true, false);
    });
}

#[test]
fn reentrant_callbacks_on_a_thread_pool() {
    deadline(60, || {
        let pool: &'static ThreadPool = Box::leak(Box::new(ThreadPool::new(1).unwrap()));
        reentrant_callbacks(pool);
        pool.shutdown(true, false);
    });
}

#[test]
fn a_result_that_panics_in_deserialize_fails_only_its_item() {
    deadline(60, || {
        let pool = ProcessPool::new(2).unwrap();
        // submit
        let e = pool.submit(touchy, 7).unwrap().result().unwrap_err();
        assert!(is_deser_panic(&e), "{e:?}");
        assert_eq!(pool.submit(touchy, 8).unwrap().result().unwrap(), Touchy(8));
        // imap, in one chunk, so the failing item sits among good ones
        for ordered in [true, false] {
            let it = if ordered {
                pool.imap_chunked(touchy, 0..13u32, multiproc::Chunksize::Fixed(13))
            } else {
                pool.imap_unordered_chunked(touchy, 0..13u32, multiproc::Chunksize::Fixed(13))
            };
            let mut out: Vec<(u32, Result<Touchy, TaskError>)> = it
                .map(|r| match &r {
                    Ok(t) => (t.0, r),
                    Err(TaskError::Deserialize { index, .. }) => (index.unwrap() as u32, r),
                    Err(e) => panic!("unexpected {e:?}"),
                })
                .collect();
            out.sort_by_key(|(k, _)| *k);
            assert_eq!(out.len(), 13);
            for (k, r) in out {
                if k == 7 {
                    let e = r.unwrap_err();
                    assert!(is_deser_panic(&e), "{e:?}");
                    assert!(matches!(e, TaskError::Deserialize { index: Some(7), .. }));
                } else {
                    assert_eq!(r.unwrap(), Touchy(k), "item {k} exact");
                }
            }
        }
        // map: the first error, as a typed task error
        match pool.map(touchy, 0..13u32) {
            Err(Error::Task(e)) => assert!(is_deser_panic(&e), "{e:?}"),
            other => panic!("expected the item 7 error, got {other:?}"),
        }
        assert_eq!(
            pool.map(double, 0..100u32).unwrap(),
            (0..100).map(double).collect::<Vec<_>>()
        );
    });
}

/// A result whose `Drop` panics where it was made (the worker): `armed` does not cross.
#[derive(Debug, Serialize, Deserialize)]
struct DropBomb {
    value: u32,
    #[serde(skip)]
    armed: bool,
}

impl Drop for DropBomb {
    fn drop(&mut self) {
        if self.armed && !std::thread::panicking() {
            panic!("drop panics in the worker");
        }
    }
}

fn armed(value: u32) -> DropBomb {
    DropBomb { value, armed: true }
}

#[test]
fn a_result_whose_drop_panics_in_the_worker_still_arrives_and_the_worker_lives() {
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        let pid = pool.initial_pids()[0];
        let r = pool.submit(armed, 5).unwrap().result().unwrap();
        assert_eq!(r.value, 5);
        let all: Vec<u32> = pool
            .map(armed, 0..10)
            .unwrap()
            .into_iter()
            .map(|b| b.value)
            .collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(
            pool.submit(|_: ()| std::process::id(), ())
                .unwrap()
                .result()
                .unwrap(),
            pid,
            "the worker lived on"
        );
    });
}

#[test]
fn an_argument_that_panics_in_deserialize_in_the_worker_fails_only_its_task() {
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        let pid = pool.initial_pids()[0];
        let e = pool.submit(plain, Touchy(7)).unwrap().result().unwrap_err();
        assert!(is_deser_panic(&e), "{e:?}");
        let out: Vec<_> = pool
            .imap_chunked(plain, (0..13).map(Touchy), multiproc::Chunksize::Fixed(13))
            .collect();
        for (k, r) in out.into_iter().enumerate() {
            if k == 7 {
                assert!(matches!(&r, Err(e) if is_deser_panic(e)), "{r:?}");
            } else {
                assert_eq!(r.unwrap(), k as u32);
            }
        }
        // The worker lived on.
        assert_eq!(
            pool.submit(|_: ()| std::process::id(), ())
                .unwrap()
                .result()
                .unwrap(),
            pid
        );
    });
}

#[test]
fn a_result_that_panics_in_serialize_in_the_worker_fails_only_its_task() {
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        let pid = pool.initial_pids()[0];
        let e = pool.submit(touchy, 13).unwrap().result().unwrap_err();
        assert!(is_ser_panic(&e), "{e:?}");
        let out: Vec<_> = pool
            .imap_chunked(touchy, 10..20u32, multiproc::Chunksize::Fixed(10))
            .collect();
        for (k, r) in (10..20u32).zip(out) {
            if k == 13 {
                assert!(matches!(&r, Err(e) if is_ser_panic(e)), "{r:?}");
            } else {
                assert_eq!(r.unwrap(), Touchy(k));
            }
        }
        assert_eq!(
            pool.submit(|_: ()| std::process::id(), ())
                .unwrap()
                .result()
                .unwrap(),
            pid
        );
    });
}

#[test]
fn an_argument_that_panics_in_serialize_in_the_parent_fails_only_its_call() {
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        match pool.submit(plain, Touchy(13)) {
            Err(Error::Serialize { message, .. }) => {
                assert!(message.contains("serialize panics on 13"), "{message}")
            }
            other => panic!("expected a serialize error, got {other:?}"),
        }
        let out: Vec<_> = pool.imap(plain, (10..20).map(Touchy)).collect();
        for (k, r) in (10..20u32).zip(out) {
            if k == 13 {
                assert!(
                    matches!(&r, Err(e @ TaskError::Serialize { index: Some(3), .. }) if is_ser_panic(e)),
                    "{r:?}"
                );
            } else {
                assert_eq!(r.unwrap(), k);
            }
        }
        assert_eq!(pool.submit(double, 2).unwrap().result().unwrap(), 4);
    });
}

#[test]
fn a_thread_pool_never_serializes() {
    deadline(60, || {
        let pool = ThreadPool::new(2).unwrap();
        // Touchy(7) and Touchy(13) would panic if they were ever encoded or decoded.
        let out = pool
            .map(|t: Touchy| Touchy(t.0 + 6), vec![Touchy(1), Touchy(7)])
            .unwrap();
        assert_eq!(out, vec![Touchy(7), Touchy(13)]);
        assert_eq!(
            Executor::submit(&pool, touchy, 7)
                .unwrap()
                .result()
                .unwrap(),
            Touchy(7)
        );
    });
}

fn init_panics(_: u32) {
    panic!("initializer panics");
}

fn init_ok(_: Touchy) {}

#[test]
fn a_process_pool_initializer_that_panics_is_a_typed_error() {
    deadline(60, || {
        match ProcessPool::builder()
            .workers(2)
            .initializer(init_panics, 1)
            .build()
        {
            Err(Error::InitializerFailed(e)) => assert!(
                matches!(&*e, TaskError::Panicked { message, .. } if message == "initializer panics"),
                "{e:?}"
            ),
            other => panic!("expected InitializerFailed, got {other:?}"),
        }
        // Its argument's Deserialize panics in the worker.
        match ProcessPool::builder()
            .workers(1)
            .initializer(init_ok, Touchy(7))
            .build()
        {
            Err(Error::InitializerFailed(e)) => assert!(is_deser_panic(&e), "{e:?}"),
            other => panic!("expected InitializerFailed, got {other:?}"),
        }
        // Its argument's Serialize panics in the parent.
        match ProcessPool::builder()
            .workers(1)
            .initializer(init_ok, Touchy(13))
            .build()
        {
            Err(Error::Serialize { message, .. }) => {
                assert!(message.contains("serialize panics on 13"), "{message}")
            }
            other => panic!("expected a serialize error, got {other:?}"),
        }
    });
}

#[test]
fn a_thread_pool_initializer_that_panics_is_a_typed_error() {
    deadline(30, || {
        let r = ThreadPool::builder()
            .workers(2)
            .initializer(|| panic!("initializer panics"))
            .build();
        match r {
            Err(Error::InitializerFailed(e)) => assert!(
                matches!(&*e, TaskError::Panicked { message, .. } if message == "initializer panics"),
                "{e:?}"
            ),
            Ok(pool) => {
                let f = pool.submit(double, 1);
                panic!("build succeeded; submit gave {f:?}");
            }
            Err(e) => panic!("expected InitializerFailed, got {e:?}"),
        }
    });
}
