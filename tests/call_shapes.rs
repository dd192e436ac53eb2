//! The call shapes Python users write: several-argument submit, close/join, map_async,
//! running/exception, parent_process, Process with several arguments.

multiproc::test_support!();
mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::deadline;
use multiproc::{
    Error, Executor, Pipe, Process, ProcessPool, TaskError, ThreadPool, parent_process,
};

fn print_sum(a: i32, b: i32) -> i32 {
    println!("{}", a + b);
    a + b
}

fn join3(a: String, b: u8, c: bool) -> String {
    format!("{a}-{b}-{c}")
}

fn fails_on_3(x: u32) -> u32 {
    if x == 3 {
        panic!("three")
    }
    x * 10
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn several_arguments(pool: &impl Executor) {
    assert_eq!(pool.submit_star(print_sum, (1, 2)).unwrap().result(), Ok(3));
    assert_eq!(
        pool.apply_async_star(join3, ("a".to_string(), 7, true))
            .unwrap()
            .result()
            .unwrap(),
        "a-7-true"
    );
    let f = pool
        .starmap_async(print_sum, vec![(1, 1), (2, 2), (3, 3)])
        .unwrap();
    assert_eq!(f.result().unwrap(), vec![2, 4, 6]);
}

#[test]
fn submit_star_and_starmap_async_on_both_pools() {
    deadline(60, || {
        several_arguments(&ThreadPool::new(2).unwrap());
        several_arguments(&ProcessPool::new(2).unwrap());
    });
}

fn map_async_shapes(pool: &impl Executor) {
    let all = pool.map_async(fails_on_3, 0..3).unwrap();
    assert_eq!(all.result().unwrap(), vec![0, 10, 20]);
    let bad = pool.map_async(fails_on_3, 0..6).unwrap();
    match bad.result() {
        Err(TaskError::Panicked { index, message, .. }) => {
            assert_eq!((index, message.as_str()), (Some(3), "three"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let empty = pool.map_async(fails_on_3, Vec::new()).unwrap();
    assert_eq!(empty.result().unwrap(), Vec::<u32>::new());
}

#[test]
fn map_async_gives_the_whole_vec_or_the_first_error() {
    deadline(60, || {
        map_async_shapes(&ThreadPool::new(2).unwrap());
        map_async_shapes(&ProcessPool::new(2).unwrap());
    });
}

static RELEASE: AtomicBool = AtomicBool::new(false);
static RAN: AtomicU32 = AtomicU32::new(0);

/// Item 0 blocks until released; the others take 100 ms each.
fn blocks_first(i: u32) -> u32 {
    RAN.fetch_add(1, Ordering::SeqCst);
    if i == 0 {
        while !RELEASE.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
    } else {
        std::thread::sleep(Duration::from_millis(100));
    }
    i
}

#[test]
fn cancelling_map_async_skips_what_has_not_started() {
    deadline(60, || {
        let pool = ThreadPool::new(2).unwrap();
        // 8 items on 2 threads: chunks of one item each.
        let f = pool.map_async(blocks_first, 0..8).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(f.cancel());
        assert!(f.cancelled());
        std::thread::sleep(Duration::from_millis(400));
        RELEASE.store(true, Ordering::SeqCst);
        pool.close();
        pool.join().unwrap();
        // Item 0, and item 1 that was running when the future was cancelled.
        let ran = RAN.load(Ordering::SeqCst);
        assert!(ran <= 3, "{ran} items ran after the cancel");
    });
}

fn close_then_join(
    pool: &impl Executor,
    close: impl Fn(),
    join: impl Fn() -> multiproc::Result<()>,
) {
    let err = join().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let futs: Vec<_> = (0..4).map(|_| pool.submit(nap, 100).unwrap()).collect();
    close();
    assert!(matches!(pool.submit(nap, 1), Err(Error::ShutDown)));
    join().unwrap();
    assert!(futs.iter().all(|f| f.done()), "join waits for every task");
    for f in futs {
        assert_eq!(f.result().unwrap(), 100);
    }
    join().unwrap();
}

#[test]
fn close_then_join_finishes_submitted_tasks() {
    deadline(60, || {
        let tp = ThreadPool::new(2).unwrap();
        close_then_join(&tp, || tp.close(), || tp.join());
        let pp = ProcessPool::new(2).unwrap();
        let pids = pp.initial_pids().to_vec();
        close_then_join(&pp, || pp.close(), || pp.join());
        common::assert_gone(&pids);
        let pp = ProcessPool::new(1).unwrap();
        pp.terminate();
        pp.join().unwrap();
    });
}

fn running_and_exception(pool: &impl Executor) {
    let slow = pool.submit(nap, 400).unwrap();
    let queued = pool.submit(nap, 1).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !slow.running() {
        assert!(std::time::Instant::now() < end, "never running");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!slow.done());
    assert_eq!(slow.exception(), None, "waits, then reports success");
    assert!(!slow.running());
    assert_eq!(slow.result().unwrap(), 400);
    assert_eq!(queued.result().unwrap(), 1);
    let bad = pool.submit(fails_on_3, 3).unwrap();
    assert!(matches!(bad.exception(), Some(TaskError::Panicked { .. })));
    assert!(
        matches!(bad.exception(), Some(TaskError::Panicked { .. })),
        "not taken"
    );
    assert!(!bad.running());
    assert!(bad.result().is_err());
}

#[test]
fn running_and_exception_on_both_pools() {
    deadline(60, || {
        running_and_exception(&ThreadPool::new(1).unwrap());
        running_and_exception(&ProcessPool::new(1).unwrap());
        // A task still in the queue of a one-thread pool is not running.
        let pool = ThreadPool::new(1).unwrap();
        let busy = pool.submit(nap, 300).unwrap();
        let queued = pool.submit(nap, 1).unwrap();
        while !busy.running() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!queued.running());
        assert!(queued.cancel());
        assert!(!queued.running());
        busy.result().unwrap();
    });
}

fn report_parent(w: multiproc::Connection) {
    let p = parent_process().map(|p| (p.name().to_string(), p.pid(), p.is_alive()));
    w.send(&p).unwrap();
    // A grandchild sees this child as its parent.
    let (r2, w2) = Pipe::new(false).unwrap();
    let g = Process::builder()
        .name("kid")
        .start(report_grandparent, w2)
        .unwrap();
    g.join();
    let got: Option<(String, u32)> = r2.recv().unwrap();
    w.send(&got).unwrap();
}

fn report_grandparent(w: multiproc::Connection) {
    let p = parent_process().map(|p| (p.name().to_string(), p.pid()));
    w.send(&p).unwrap();
}

#[test]
fn parent_process_in_children_and_grandchildren() {
    deadline(60, || {
        assert!(parent_process().is_none());
        let (r, w) = Pipe::new(false).unwrap();
        let p = Process::builder()
            .name("mid")
            .start(report_parent, w)
            .unwrap();
        let me: Option<(String, u32, bool)> = r.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(me, Some(("MainProcess".into(), std::process::id(), true)));
        let grand: Option<(String, u32)> = r.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(grand, Some(("mid".into(), p.pid())));
        p.join();
        assert_eq!(p.exitcode(), Some(0));
    });
}

fn send_three(w: multiproc::Connection, a: u8, b: String) {
    w.send(&(a, b)).unwrap();
}

#[test]
fn process_start_star_passes_several_arguments() {
    deadline(60, || {
        let (r, w) = Pipe::new(false).unwrap();
        let p = Process::start_star(send_three, (w, 5, "five".to_string())).unwrap();
        let got: (u8, String) = r.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(got, (5, "five".to_string()));
        p.join();
        assert_eq!(p.exitcode(), Some(0));
    });
}

/// `#[serde(untagged)]` needs `deserialize_any`, which postcard cannot do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Loose {
    Int(i64),
    Text(String),
}

fn loose_len(x: Loose) -> usize {
    match x {
        Loose::Int(_) => 8,
        Loose::Text(s) => s.len(),
    }
}

fn make_loose(x: i64) -> Loose {
    Loose::Int(x)
}

/// A `Loose` that did not decode: the error names the type and why.
fn names_loose_and_why<T: std::fmt::Debug>(r: Result<T, TaskError>) {
    match r {
        Err(TaskError::Deserialize {
            type_name, message, ..
        }) => {
            assert!(type_name.contains("Loose"), "{type_name}");
            assert!(message.contains("deserialize_any"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_type_postcard_cannot_decode_is_named_with_the_reason_and_the_fix() {
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        let submitted = pool.submit(loose_len, Loose::Int(1));
        let out: Vec<_> = pool
            .imap(loose_len, vec![Loose::Text("ab".into())])
            .collect();
        if cfg!(debug_assertions) {
            // Debug builds check at `submit`, before anything is sent.
            let err = submitted.unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::Serialize { .. }), "{msg}");
            assert!(msg.contains("Loose"), "names the type: {msg}");
            assert!(msg.contains("deserialize_any"), "says why: {msg}");
            assert!(
                msg.contains("JSON") && msg.contains("ThreadPool"),
                "says what to do: {msg}"
            );
            assert!(
                matches!(&out[0], Err(TaskError::Serialize { index: Some(0), message, .. }) if message.contains("deserialize_any")),
                "{out:?}"
            );
        } else {
            // Release builds do not: the worker's decode of the argument fails, in the
            // same words, and fails that task only.
            names_loose_and_why(submitted.unwrap().result());
            assert!(
                matches!(&out[0], Err(TaskError::Deserialize { index: Some(0), message, .. }) if message.contains("deserialize_any")),
                "{out:?}"
            );
        }
        // A result of such a type: the error says the same.
        names_loose_and_why(pool.submit(make_loose, 3).unwrap().result());
        // Threads encode nothing: the same call works there.
        let tp = ThreadPool::new(1).unwrap();
        assert_eq!(
            Executor::submit(&tp, loose_len, Loose::Text("abc".into()))
                .unwrap()
                .result(),
            Ok(3)
        );
    });
}
