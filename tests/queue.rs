//! Queue, SimpleQueue, JoinableQueue: semantics, processes, faults.

mod common;
use common::deadline;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use multiproc::{Connection, Error, JoinableQueue, Pipe, Process, Queue, SimpleQueue, StartMethod};

multiproc::test_support!();

#[test]
fn fifo_len_try_and_timeouts() {
    deadline(20, || {
        let q: Queue<String> = Queue::new().unwrap();
        assert!(q.is_empty());
        assert!(matches!(q.try_get(), Err(Error::Empty)));
        for d in [Duration::ZERO, Duration::from_millis(30)] {
            let t0 = Instant::now();
            assert!(matches!(q.get_timeout(d), Err(Error::Timeout(_))));
            let el = t0.elapsed();
            // Generous bound (loaded CI machines); the few-ms precision is in the benches.
            assert!(el >= d && el < d + Duration::from_millis(250), "{el:?}");
        }
        for i in 0..1000 {
            q.put(&format!("m{i}")).unwrap();
        }
        assert_eq!(q.len(), 1000);
        for i in 0..1000 {
            assert_eq!(q.try_get().unwrap(), format!("m{i}"));
        }
        assert!(q.is_empty());
    });
}

#[test]
fn bounded_queue_blocks_and_wakes() {
    deadline(20, || {
        let q: Queue<u32> = Queue::bounded(2).unwrap();
        q.put(&1).unwrap();
        q.try_put(&2).unwrap();
        assert!(q.is_full());
        assert!(matches!(q.try_put(&3), Err(Error::Full)));
        let t0 = Instant::now();
        assert!(matches!(
            q.put_timeout(&3, Duration::from_millis(50)),
            Err(Error::Timeout(_))
        ));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.put(&3)); // blocks until a get
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.get().unwrap(), 1);
        t.join().unwrap().unwrap();
        assert_eq!((q.get().unwrap(), q.get().unwrap()), (2, 3));
    });
}

#[test]
fn close_fails_puts_drains_gets_and_wakes_waiters() {
    deadline(20, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || q2.get());
        std::thread::sleep(Duration::from_millis(100));
        q.close();
        assert!(matches!(waiter.join().unwrap(), Err(Error::Closed(_))));

        let q: Queue<u32> = Queue::new().unwrap();
        q.put(&1).unwrap();
        q.put(&2).unwrap();
        q.close();
        assert!(q.is_closed());
        assert!(matches!(q.put(&3), Err(Error::Closed(_))));
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.iter().collect::<Vec<_>>(), [2]);
        assert!(matches!(q.get(), Err(Error::Closed(_))));

        // A producer blocked on a full queue wakes up too.
        let q: Queue<u32> = Queue::bounded(1).unwrap();
        q.put(&1).unwrap();
        let q2 = q.clone();
        let blocked = std::thread::spawn(move || q2.put(&2));
        std::thread::sleep(Duration::from_millis(100));
        q.close();
        assert!(matches!(blocked.join().unwrap(), Err(Error::Closed(_))));
    });
}

#[test]
fn byte_capacity_and_oversized_items() {
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
    assert!(matches!(
        q.put(&vec![0; 70 << 10]),
        Err(Error::InvalidArgument(_))
    ));
    // Fill by bytes: 10 KiB items, 6 fit in 64 KiB.
    let mut n = 0;
    while q.try_put(&vec![n as u8; 10 << 10]).is_ok() {
        n += 1;
    }
    assert_eq!(n, 6);
    for i in 0..n {
        assert_eq!(q.get().unwrap(), vec![i as u8; 10 << 10]);
    }
}

/// A producer blocked on a full queue spins for room for several frames (so that it does
/// not read the consumer's line after every get), but its `put` still completes once room
/// for its one frame is there and stays so: the slack never turns into a timeout.
#[test]
fn a_put_on_a_full_queue_needs_room_for_its_own_frame_only() {
    deadline(30, || {
        let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
        while q.try_put(&vec![1; 1 << 10]).is_ok() {}
        let q2 = q.clone();
        let blocked = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let r = q2.put_timeout(&vec![2; 1 << 10], Duration::from_millis(500));
            (r, t0.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        // Room for exactly one more 1 KiB frame, and the consumer stops.
        assert_eq!(q.get().unwrap(), vec![1; 1 << 10]);
        let (r, took) = blocked.join().unwrap();
        assert!(r.is_ok(), "{r:?} after {took:?}");
        assert!(took < Duration::from_millis(500));
        assert!(matches!(q.try_put(&vec![3; 1 << 10]), Err(Error::Full)));
    });
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(try_from = "u32")]
struct Even(u32);

impl TryFrom<u32> for Even {
    type Error = String;
    fn try_from(v: u32) -> Result<Even, String> {
        if v.is_multiple_of(2) {
            Ok(Even(v))
        } else {
            Err(format!("{v} is odd"))
        }
    }
}

#[test]
fn undecodable_and_unsendable_items_are_typed_errors() {
    let q: Queue<Even> = Queue::new().unwrap();
    q.put(&Even(3)).unwrap(); // serializes fine, does not decode
    q.put(&Even(4)).unwrap();
    match q.get() {
        Err(Error::Deserialize { type_name, .. }) => assert!(type_name.contains("Even")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        q.get().unwrap(),
        Even(4),
        "a bad item is consumed, not stuck"
    );

    let conns: Queue<Connection> = Queue::new().unwrap();
    let (a, _b) = Pipe::duplex().unwrap();
    match conns.put(&a) {
        Err(Error::Serialize { message, .. }) => assert!(message.contains("argument"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(conns.is_empty());
}

fn produce(args: (Queue<(u32, u64)>, u32, u64)) {
    let (q, who, n) = args;
    for i in 0..n {
        q.put(&(who, i)).unwrap();
    }
}

type Item = (u32, u64);

fn consume(args: (Queue<Item>, Queue<Vec<Item>>)) {
    let (q, out) = args;
    let mut got = Vec::new();
    while let Ok(item) = q.get() {
        got.push(item);
    }
    out.put(&got).unwrap();
}

#[test]
fn many_producers_many_consumers_across_processes() {
    deadline(120, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let q: Queue<(u32, u64)> = Queue::bounded(100).unwrap();
            let out: Queue<Vec<(u32, u64)>> = Queue::new().unwrap();
            let n = 20_000u64;
            let producers: Vec<Process> = (0..3)
                .map(|w| Process::start_with(method, produce, (q.clone(), w, n)).unwrap())
                .collect();
            let consumers: Vec<Process> = (0..2)
                .map(|_| Process::start_with(method, consume, (q.clone(), out.clone())).unwrap())
                .collect();
            // This thread consumes too, while the producers run (the consumer processes may
            // take everything: never wait for a fixed count here).
            let mut mine = Vec::new();
            let end = Instant::now() + Duration::from_secs(60);
            while producers.iter().any(Process::is_alive) && Instant::now() < end {
                if let Ok(item) = q.get_timeout(Duration::from_millis(5)) {
                    mine.push(item);
                }
            }
            for p in &producers {
                assert!(p.join_timeout(Duration::from_secs(60)));
                assert_eq!(p.exitcode(), Some(0));
            }
            q.close();
            mine.extend(q.iter());
            let mut all = mine.clone();
            for _ in 0..2 {
                all.extend(out.get_timeout(Duration::from_secs(60)).unwrap());
            }
            for p in &consumers {
                assert!(p.join_timeout(Duration::from_secs(10)));
            }
            assert_eq!(all.len() as u64, 3 * n, "{method:?}");
            let set: BTreeSet<_> = all.iter().copied().collect();
            assert_eq!(set.len() as u64, 3 * n, "duplicates");
            // Per producer, each consumer saw its items in order.
            for w in 0..3 {
                let seq: Vec<u64> = mine.iter().filter(|x| x.0 == w).map(|x| x.1).collect();
                assert!(seq.windows(2).all(|p| p[0] < p[1]));
            }
        }
    });
}

fn put_forever(args: (Queue<u64>, Connection)) {
    let (q, ready) = args;
    ready.send(&()).unwrap();
    let mut i = 0u64;
    loop {
        q.put(&i).unwrap();
        i += 1;
    }
}

#[test]
fn producer_killed_anywhere_loses_and_corrupts_nothing() {
    deadline(120, || {
        let q: Queue<u64> = Queue::builder()
            .maxsize(5000)
            .capacity_bytes(64 << 10)
            .build()
            .unwrap();
        let mut total = 0;
        for round in 0..12u64 {
            let (mine, theirs) = Pipe::duplex().unwrap();
            // Daemon: if an assertion fails before the kill, the exit hook must not wait forever.
            let p = Process::builder()
                .daemon(true)
                .start(put_forever, (q.clone(), theirs))
                .unwrap();
            mine.recv_timeout::<()>(Duration::from_secs(20)).unwrap();
            // Consume while it produces, so the kill lands in the middle of a put.
            let mut expect = 0u64;
            let mut check = |v: u64| {
                assert_eq!(v, expect, "round {round}");
                expect += 1;
            };
            let until = Instant::now() + Duration::from_micros(2000 + round * 1500);
            while Instant::now() < until {
                if let Ok(v) = q.try_get() {
                    check(v);
                }
            }
            p.kill().unwrap();
            assert!(p.join_timeout(Duration::from_secs(10)));
            // Every item it put is there, in order, with no gap and no garbage.
            loop {
                match q.try_get() {
                    Ok(v) => check(v),
                    Err(Error::Empty) => break,
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            total += expect;
            // The queue still works (taking over a lock its holder died with if need be).
            q.put_timeout(&7, Duration::from_secs(5)).unwrap();
            assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 7);
        }
        assert!(total > 12 * 1000, "the producer hardly ran: {total}");
    });
}

fn get_forever(args: (Queue<u64>, Connection)) {
    let (q, report) = args;
    report.send(&u64::MAX).unwrap();
    loop {
        let v = q.get().unwrap();
        report.send(&v).unwrap();
    }
}

#[test]
fn consumer_killed_mid_get_loses_at_most_its_item() {
    deadline(120, || {
        for round in 0..8u64 {
            let q: Queue<u64> = Queue::new().unwrap();
            let n = 200_000u64;
            for i in 0..n {
                q.put(&i).unwrap();
            }
            let (mine, theirs) = Pipe::duplex().unwrap();
            // Daemon: if an assertion fails before the kill, the exit hook must not wait forever.
            let p = Process::builder()
                .daemon(true)
                .start(get_forever, (q.clone(), theirs))
                .unwrap();
            assert_eq!(
                mine.recv_timeout::<u64>(Duration::from_secs(20)).unwrap(),
                u64::MAX
            );
            // Read its reports concurrently, so it is killed while getting, not while
            // blocked on a full pipe.
            let reader = std::thread::spawn(move || {
                let mut seen = Vec::new();
                while let Ok(v) = mine.recv::<u64>() {
                    seen.push(v);
                }
                seen
            });
            std::thread::sleep(Duration::from_micros(200 + round * 900));
            p.kill().unwrap();
            assert!(p.join_timeout(Duration::from_secs(10)));
            let seen = reader.join().unwrap();
            let first_left = q.get_timeout(Duration::from_secs(5)).unwrap();
            let mut left = vec![first_left];
            left.extend(std::iter::from_fn(|| q.try_get().ok()));
            // The child reported a prefix; what is left is a suffix; at most one in between.
            assert!(
                seen.iter().copied().eq(0..seen.len() as u64),
                "round {round}"
            );
            assert!(left.iter().copied().eq(first_left..n), "round {round}");
            let lost = first_left - seen.len() as u64;
            assert!(lost <= 1, "round {round}: lost {lost}");
        }
    });
}

// Byte buffers travel as one serde byte string (`serde_bytes`), as a user moving bulk data
// would send them: a plain `Vec<u8>` is a sequence of 44 million single-byte items, which
// a debug build encodes so slowly under load that it measured the encoder, not the queue.
type Bytes = serde_bytes::ByteBuf;

fn big_echo(args: (Queue<Bytes>, Queue<Bytes>)) {
    let (inq, outq) = args;
    while let Ok(v) = inq.get() {
        outq.put(&v).unwrap();
    }
}

#[test]
fn large_messages_through_a_process() {
    deadline(60, || {
        let a: Queue<Bytes> = Queue::new().unwrap();
        let b: Queue<Bytes> = Queue::new().unwrap();
        let p = Process::start(big_echo, (a.clone(), b.clone())).unwrap();
        for size in [1usize << 20, 3 << 20, 17, 40 << 20] {
            let v = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            a.put(&v).unwrap();
            assert_eq!(b.get_timeout(Duration::from_secs(30)).unwrap(), v);
        }
        a.close();
        assert!(p.join_timeout(Duration::from_secs(10)));
        assert_eq!(p.exitcode(), Some(0));
    });
}

fn work(q: JoinableQueue<u32>) {
    while let Ok(_job) = q.get() {
        std::thread::sleep(Duration::from_millis(1));
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_join_and_task_done() {
    deadline(60, || {
        let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
        q.join_timeout(Duration::from_millis(10)).unwrap(); // nothing put: done
        assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
        q.put(&1).unwrap();
        assert!(matches!(
            q.join_timeout(Duration::from_millis(50)),
            Err(Error::Timeout(_))
        ));
        let workers: Vec<Process> = (0..2)
            .map(|_| Process::start(work, q.clone()).unwrap())
            .collect();
        for i in 0..100 {
            q.put(&i).unwrap();
        }
        q.join_timeout(Duration::from_secs(30)).unwrap();
        assert!(q.is_empty());
        q.close();
        for p in workers {
            assert!(p.join_timeout(Duration::from_secs(10)));
            assert_eq!(p.exitcode(), Some(0));
        }
    });
}

#[test]
fn simple_queue() {
    let q: SimpleQueue<(String, u8)> = SimpleQueue::new().unwrap();
    assert!(q.is_empty());
    q.put(&("a".into(), 1)).unwrap();
    assert!(!q.is_empty());
    assert_eq!(q.get().unwrap(), ("a".to_string(), 1));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(10)),
        Err(Error::Timeout(_))
    ));
    q.close();
    assert!(matches!(q.put(&("b".into(), 2)), Err(Error::Closed(_))));
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn leak_check(_: ()) {
    let before = fd_count();
    for _ in 0..20 {
        let q: Queue<u32> = Queue::new().unwrap();
        q.put(&1).unwrap();
        let (a, b) = Pipe::duplex().unwrap();
        a.send(&q.get().unwrap()).unwrap();
        let _: u32 = b.recv().unwrap();
        let q2: JoinableQueue<u8> = JoinableQueue::new().unwrap();
        drop((q, q2, a, b));
    }
    std::process::exit(if fd_count() == before { 0 } else { 42 });
}

#[test]
fn no_fd_or_shm_left_behind() {
    // Checked in a child, where no other test opens fds concurrently.
    let shm_before: BTreeSet<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    let p = Process::start(leak_check, ()).unwrap();
    assert!(p.join_timeout(Duration::from_secs(30)));
    let shm_after: BTreeSet<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    // Every segment multiproc creates is named `mp-<creator pid>-...`: anything new with the
    // child's pid was left behind by it (other tests and programs run concurrently, so
    // only the child's own names can be blamed on it).
    let childs = format!("mp-{}-", p.pid());
    let new: Vec<_> = shm_after
        .difference(&shm_before)
        .filter(|n| n.to_string_lossy().starts_with(&childs))
        .collect();
    assert!(new.is_empty(), "left in /dev/shm by the child: {new:?}");
    assert_eq!(p.exitcode(), Some(0), "fds leaked");
}

// ---- queues in a process pool: through the initializer, as in Python ----

static POOL_QUEUE: std::sync::OnceLock<Queue<u64>> = std::sync::OnceLock::new();

fn keep_queue(q: Queue<u64>) {
    POOL_QUEUE.set(q).unwrap();
}

fn record(x: u64) -> u64 {
    POOL_QUEUE.get().unwrap().put(&(x * 10)).unwrap();
    x
}

fn takes_queue(_q: Queue<u64>) -> u64 {
    0
}

#[test]
fn queue_passed_to_a_pool_initializer_works_in_workers() {
    use multiproc::{Executor, ProcessPool};
    deadline(120, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let q: Queue<u64> = Queue::new().unwrap();
            let pool = ProcessPool::builder()
                .workers(2)
                .start_method(method)
                .initializer(keep_queue, q.clone())
                .build()
                .unwrap();
            let out: Vec<u64> = pool.map(record, 0..50u64).unwrap();
            assert_eq!(out, (0..50).collect::<Vec<_>>());
            let mut got: Vec<u64> = (0..50)
                .map(|_| q.get_timeout(Duration::from_secs(10)).unwrap())
                .collect();
            got.sort();
            assert_eq!(got, (0..50).map(|x| x * 10).collect::<Vec<_>>());
            // A queue as a task's argument is refused with a message saying where it can go.
            match pool.submit(takes_queue, q.clone()) {
                Err(Error::Serialize { message, .. }) => {
                    assert!(message.contains("initializer"), "{message}")
                }
                Ok(f) => panic!("accepted: {:?}", f.result()),
                Err(e) => panic!("{e}"),
            }
            pool.shutdown(true, false);
        }
    });
}

#[derive(serde::Serialize, Debug, PartialEq)]
struct Touchy(u32);

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Touchy, D::Error> {
        let v = u32::deserialize(d)?;
        assert_ne!(v, 13, "unlucky");
        Ok(Touchy(v))
    }
}

#[test]
fn a_panicking_deserialize_consumes_its_item_and_releases_the_lock() {
    deadline(20, || {
        let q: Queue<Touchy> = Queue::new().unwrap();
        q.put(&Touchy(13)).unwrap();
        q.put(&Touchy(1)).unwrap();
        let q2 = q.clone();
        assert!(std::thread::spawn(move || q2.get()).join().is_err());
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), Touchy(1));
    });
}

#[test]
fn threads_stress_a_tiny_ring_with_varied_sizes() {
    // 4 producers and 4 consumers on a 4 KiB ring: constant wrapping, full and empty
    // waits, lock contention. Every item arrives once, in order per producer, intact.
    deadline(120, || {
        let q: Queue<(u32, u32, Vec<u8>)> = Queue::builder().capacity_bytes(4096).build().unwrap();
        let n = 5_000u32;
        let producers: Vec<_> = (0..4u32)
            .map(|w| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..n {
                        let len = ((i * 37 + w * 11) % 700) as usize;
                        q.put(&(w, i, vec![(i % 251) as u8; len])).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok((w, i, v)) = q.get() {
                        assert_eq!(v.len(), ((i * 37 + w * 11) % 700) as usize);
                        assert!(v.iter().all(|&b| b == (i % 251) as u8));
                        got.push((w, i));
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        q.close();
        let mut all = Vec::new();
        for c in consumers {
            let got = c.join().unwrap();
            for w in 0..4 {
                let seq: Vec<u32> = got.iter().filter(|x| x.0 == w).map(|x| x.1).collect();
                assert!(seq.windows(2).all(|p| p[0] < p[1]), "order per producer");
            }
            all.extend(got);
        }
        all.sort();
        assert_eq!(all.len(), 4 * n as usize);
        all.dedup();
        assert_eq!(all.len(), 4 * n as usize);
    });
}

/// Sends a queue to a child as seen by one type and received as another: how a program
/// whose processes disagree on a queue's item type looks from the inside.
struct Retyped<A, B> {
    send: Option<Queue<A>>,
    got: Option<Queue<B>>,
}

impl<A, B> serde::Serialize for Retyped<A, B> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.send.serialize(s)
    }
}

impl<'de, A, B> serde::Deserialize<'de> for Retyped<A, B> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Retyped {
            send: None,
            got: Option::<Queue<B>>::deserialize(d)?,
        })
    }
}

/// Puts a `(u32, u32)` where the parent expects a `u32`, then a `u32`.
fn put_wrong_then_right(args: (Retyped<u32, (u32, u32)>, Queue<u32>)) {
    let (wrong, right) = args;
    wrong.got.unwrap().put(&(5, 7)).unwrap();
    right.put(&42).unwrap();
}

#[test]
fn an_item_of_another_type_is_a_typed_error_and_the_next_item_is_intact() {
    deadline(60, || {
        let q: Queue<u32> = Queue::new().unwrap();
        let arg = (
            Retyped {
                send: Some(q.clone()),
                got: None,
            },
            q.clone(),
        );
        let p = Process::start(put_wrong_then_right, arg).unwrap();
        assert!(p.join_timeout(Duration::from_secs(30)));
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(q.len(), 2);
        match q.get_timeout(Duration::from_secs(5)) {
            Err(e @ Error::WrongType { expected, .. }) => {
                assert_eq!(expected, "u32");
                assert!(e.to_string().contains("u32"), "{e}");
            }
            other => panic!("a (u32, u32) read as u32 must fail, got {other:?}"),
        }
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 42);
        assert!(q.is_empty());
        q.put(&1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
    });
}
