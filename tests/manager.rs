//! Manager: shared objects served to many processes, and every way a client can misbehave.

multiproc::test_support!();
mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::deadline;
use multiproc::manager::{Dict, List, Queue as MQueue};
use multiproc::{Error, Executor, Manager, Process, ProcessPool, TaskError};

type Log = Arc<Mutex<Vec<String>>>;

// The update functions the tests' servers allow.
fn plus_one(v: Option<u64>) -> u64 {
    v.unwrap_or(0) + 1
}
fn times_ten(v: Option<u64>) -> u64 {
    v.unwrap() * 10
}
fn or_seven(v: Option<u64>) -> u64 {
    v.unwrap_or(7)
}
fn minus_ten(x: i64) -> i64 {
    x - 10
}
fn panics_on_five(v: Option<u32>) -> u32 {
    if v == Some(5) {
        panic!("boom in update")
    }
    0
}
fn plus_one_u32(v: Option<u32>) -> u32 {
    v.unwrap() + 1
}

/// A thread server with short timeouts whose log lines the test can read.
fn thread_manager() -> (Manager, Log) {
    let log: Log = Arc::default();
    let l2 = log.clone();
    let m = Manager::builder()
        .thread(true)
        .update_fn(plus_one)
        .update_fn(times_ten)
        .update_fn(or_seven)
        .update_fn(minus_ten)
        .update_fn(panics_on_five)
        .update_fn(plus_one_u32)
        .handshake_timeout(Duration::from_millis(300))
        .idle_timeout(Some(Duration::from_millis(400)))
        .max_message_size(1 << 20)
        .logger(move |line| l2.lock().unwrap().push(line.to_string()))
        .start()
        .unwrap();
    (m, log)
}

/// Waits up to 5 s for a log line containing `what`.
fn wait_log(log: &Log, what: &str) -> String {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(l) = log.lock().unwrap().iter().find(|l| l.contains(what)) {
            return l.clone();
        }
        assert!(
            Instant::now() < end,
            "no log line with {what:?}: {:?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A raw socket to the server that has passed authentication and hello.
fn raw(m: &Manager) -> (multiproc::Connection, UnixStream) {
    let c = multiproc::manager::__raw_client(m.address().clone(), m.authkey().unwrap()).unwrap();
    let s = UnixStream::from(c.as_fd().try_clone_to_owned().unwrap());
    (c, s)
}

#[test]
fn dict_operations() {
    deadline(20, || {
        let (m, _) = thread_manager();
        let d = m.dict::<String, u64>("d").unwrap();
        assert_eq!(d.insert(&"a".into(), &1).unwrap(), None);
        assert_eq!(d.insert(&"a".into(), &2).unwrap(), Some(1));
        d.insert(&"b".into(), &3).unwrap();
        assert_eq!(d.get(&"a".into()).unwrap(), Some(2));
        assert!(d.contains_key(&"b".into()).unwrap());
        assert!(!d.contains_key(&"z".into()).unwrap());
        assert_eq!(d.len().unwrap(), 2);
        let mut k = d.keys().unwrap();
        k.sort();
        assert_eq!(k, ["a", "b"]);
        let mut v = d.values().unwrap();
        v.sort();
        assert_eq!(v, [2, 3]);
        let mut it = d.items().unwrap();
        it.sort();
        assert_eq!(it, [("a".to_string(), 2), ("b".to_string(), 3)]);
        assert_eq!(d.update(&"a".into(), times_ten).unwrap(), 20);
        assert_eq!(d.update(&"new".into(), or_seven).unwrap(), 7);
        assert_eq!(d.remove(&"b".into()).unwrap(), Some(3));
        assert_eq!(d.remove(&"b".into()).unwrap(), None);
        // The same name from another handle is the same object.
        let again = m.dict::<String, u64>("d").unwrap();
        assert_eq!(again.get(&"a".into()).unwrap(), Some(20));
        d.clear().unwrap();
        assert!(again.is_empty().unwrap());
    });
}

#[test]
fn list_queue_namespace_value() {
    deadline(20, || {
        let (m, _) = thread_manager();
        let l = m.list::<u32>("l").unwrap();
        assert_eq!(l.push(&1).unwrap(), 1);
        l.append(&2).unwrap();
        assert_eq!(l.extend([3, 4, 5]).unwrap(), 5);
        assert_eq!(l.get(1).unwrap(), Some(2));
        assert_eq!(l.get(9).unwrap(), None);
        l.set(0, &10).unwrap();
        assert!(matches!(l.set(9, &0), Err(Error::InvalidArgument(_))));
        assert_eq!(l.pop().unwrap(), Some(5));
        assert_eq!(l.to_vec().unwrap(), [10, 2, 3, 4]);
        assert_eq!(l.len().unwrap(), 4);

        let q = m.bounded_queue::<String>("q", 2).unwrap();
        q.put(&"a".into()).unwrap();
        q.put_timeout(&"b".into(), Duration::from_millis(10))
            .unwrap();
        assert!(q.is_full().unwrap());
        assert!(matches!(q.try_put(&"c".into()), Err(Error::Full)));
        assert!(matches!(
            q.put_timeout(&"c".into(), Duration::from_millis(20)),
            Err(Error::Timeout(_))
        ));
        assert_eq!(q.maxsize().unwrap(), Some(2));
        assert_eq!(q.get().unwrap(), "a");
        assert_eq!(q.try_get().unwrap(), "b");
        assert!(matches!(q.try_get(), Err(Error::Empty)));
        let t = Instant::now();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(50)),
            Err(Error::Timeout(_))
        ));
        assert!(t.elapsed() >= Duration::from_millis(45));
        q.put(&"last".into()).unwrap();
        q.close().unwrap();
        assert!(q.is_closed().unwrap());
        assert!(matches!(q.put(&"x".into()), Err(Error::Closed(_))));
        assert_eq!(q.get().unwrap(), "last");
        assert!(matches!(q.get(), Err(Error::Closed(_))));

        let ns = m.namespace("ns").unwrap();
        ns.set("x", &1.5f64).unwrap();
        ns.set("name", &"n".to_string()).unwrap();
        assert_eq!(ns.get::<f64>("x").unwrap(), 1.5);
        assert!(matches!(ns.get::<u8>("x"), Err(Error::TypeMismatch { .. })));
        assert!(matches!(ns.get::<u8>("nope"), Err(Error::NotFound(_))));
        assert!(ns.remove("x").unwrap());
        assert_eq!(ns.fields().unwrap(), ["name"]);

        let v = m.value("v", 5i64).unwrap();
        assert_eq!(v.get().unwrap(), 5);
        v.set(&6).unwrap();
        assert_eq!(v.update(minus_ten).unwrap(), -4);
        // An existing value keeps its own, whatever the initial value of a later lookup.
        assert_eq!(m.value("v", 100i64).unwrap().get().unwrap(), -4);
    });
}

#[test]
fn sync_proxies() {
    deadline(20, || {
        let (m, _) = thread_manager();
        let lock = m.lock("lock").unwrap();
        let g = lock.acquire().unwrap();
        assert!(!g.owner_died());
        assert!(matches!(lock.try_acquire(), Err(Error::InvalidArgument(_))));
        let l2 = lock.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let other = std::thread::spawn(move || {
            let a = l2.try_acquire().unwrap().is_none();
            // The clock starts before the holder is told, so the holder's 50 ms all fall
            // inside `waited`, however late this thread was scheduled.
            let t = Instant::now();
            ready_tx.send(()).unwrap();
            let g = l2.acquire_timeout(Duration::from_secs(5)).unwrap().unwrap();
            drop(g);
            (a, t.elapsed())
        });
        ready_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(g);
        let (was_busy, waited) = other.join().unwrap();
        assert!(
            was_busy && waited >= Duration::from_millis(50),
            "{waited:?}"
        );

        // A thread that ends holding the lock: its connection closes, the server releases
        // the lock and tells the next holder.
        let l3 = lock.clone();
        std::thread::spawn(move || std::mem::forget(l3.acquire().unwrap()))
            .join()
            .unwrap();
        let g = lock
            .acquire_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert!(g.owner_died());
        drop(g);

        let r = m.rlock("r").unwrap();
        let a = r.acquire().unwrap();
        let b = r.try_acquire().unwrap().unwrap();
        drop(a);
        assert!(r.locked().unwrap());
        drop(b);
        assert!(!r.locked().unwrap());

        let e = m.event("e").unwrap();
        let e2 = e.clone();
        let t = std::thread::spawn(move || e2.wait_timeout(Duration::from_secs(5)).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        e.set().unwrap();
        assert!(t.join().unwrap());
        e.clear().unwrap();
        assert!(!e.is_set().unwrap());

        let s = m.semaphore("s", 2).unwrap();
        s.acquire().unwrap();
        assert!(s.try_acquire().unwrap());
        assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
        s.release_n(2).unwrap();
        assert_eq!(s.value().unwrap(), 2);
        let bs = m.bounded_semaphore("bs", 1).unwrap();
        assert!(matches!(bs.release(), Err(Error::InvalidArgument(_))));

        let c = m.condition("c").unwrap();
        let ready = m.value("ready", false).unwrap();
        let (c2, ready2) = (c.clone(), ready.clone());
        let t = std::thread::spawn(move || {
            let g = c2.acquire().unwrap();
            c2.wait_for(&g, || ready2.get().unwrap()).unwrap();
            true
        });
        std::thread::sleep(Duration::from_millis(30));
        {
            let g = c.acquire().unwrap();
            ready.set(&true).unwrap();
            c.notify_all(&g).unwrap();
        }
        assert!(t.join().unwrap());
        let g = c.acquire().unwrap();
        assert!(!c.wait_timeout(&g, Duration::from_millis(20)).unwrap());
        drop(g);

        let b = m.barrier("b", 3).unwrap();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.wait().unwrap())
            })
            .collect();
        let mut idx = vec![b.wait().unwrap()];
        idx.extend(hs.into_iter().map(|h| h.join().unwrap()));
        idx.sort();
        assert_eq!(idx, [0, 1, 2]);
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(20)),
            Err(Error::BrokenBarrier)
        ));
        assert!(b.broken().unwrap());
        b.reset().unwrap();
        assert_eq!((b.parties().unwrap(), b.n_waiting().unwrap()), (3, 0));
    });
}

fn fetch(result_list: List<String>, link: String) {
    result_list.append(&format!("<{link}>")).unwrap();
}

/// The tutorial's pattern: `pool.starmap(fetch, [(result_list, link) for link in links])`.
#[test]
fn starmap_appends_to_a_started_manager_list() {
    deadline(30, || {
        let m = Manager::start().unwrap();
        let pid = m.pid().unwrap();
        let result_list = m.list::<String>("results").unwrap();
        let links: Vec<String> = (0..20).map(|i| format!("page{i}")).collect();
        let pool = ProcessPool::new(2).unwrap();
        pool.starmap(
            fetch,
            links.iter().map(|l| (result_list.clone(), l.clone())),
        )
        .unwrap();
        let mut got = result_list.to_vec().unwrap();
        got.sort();
        let mut want: Vec<String> = links.iter().map(|l| format!("<{l}>")).collect();
        want.sort();
        assert_eq!(got, want);
        drop(pool);
        // Dropping the last handle stops the server and reaps its process.
        drop(m);
        common::assert_gone(&[pid]);
        assert!(matches!(result_list.len(), Err(Error::Disconnected(_))));
    });
}

fn child_uses(args: (Dict<String, u64>, MQueue<u32>, List<u32>)) {
    let (d, q, l) = args;
    d.update(&"child".into(), plus_one).unwrap();
    l.push(&7).unwrap();
    q.put(&(l.len().unwrap() as u32)).unwrap();
}

#[test]
fn proxies_travel_through_process_arguments_and_queues() {
    deadline(30, || {
        let m = Manager::builder().update_fn(plus_one).start().unwrap();
        let d = m.dict::<String, u64>("d").unwrap();
        let q = m.queue::<u32>("answers").unwrap();
        let l = m.list::<u32>("from-child").unwrap();
        let p = Process::start(child_uses, (d.clone(), q.clone(), l.clone())).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 1);
        p.join();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(d.get(&"child".into()).unwrap(), Some(1));
        assert_eq!(l.to_vec().unwrap(), [7]);
        // Through a multiproc::Queue between processes.
        let local = multiproc::Queue::<Dict<String, u64>>::new().unwrap();
        local.put(&d).unwrap();
        let p = Process::start(
            |q: multiproc::Queue<Dict<String, u64>>| {
                let d = q.get().unwrap();
                d.insert(&"via-queue".into(), &9).unwrap();
            },
            local,
        )
        .unwrap();
        p.join();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(d.get(&"via-queue".into()).unwrap(), Some(9));
    });
}

#[test]
fn type_mismatch_is_a_typed_error() {
    deadline(20, || {
        let (m, _) = thread_manager();
        m.list::<u8>("x").unwrap().push(&1).unwrap();
        match m.dict::<String, u64>("x") {
            Err(Error::TypeMismatch {
                name,
                expected,
                found,
            }) => {
                assert_eq!(name, "x");
                assert!(
                    expected.contains("dict") && found.contains("list<u8>"),
                    "{expected} / {found}"
                );
            }
            other => panic!("expected TypeMismatch, got {other:?}"),
        }
        assert!(matches!(
            m.list::<u16>("x"),
            Err(Error::TypeMismatch { .. })
        ));
        // A proxy deserialized as the wrong type fails on first use.
        let l = m.list::<u8>("x").unwrap();
        let bytes = postcard::to_stdvec(&l).unwrap();
        let wrong: List<String> = postcard::from_bytes(&bytes).unwrap();
        assert!(matches!(wrong.len(), Err(Error::TypeMismatch { .. })));
        assert_eq!(l.to_vec().unwrap(), [1]);
    });
}

#[test]
fn update_panic_fails_that_request_only() {
    deadline(20, || {
        let (m, _) = thread_manager();
        let d = m.dict::<u32, u32>("d").unwrap();
        d.insert(&1, &5).unwrap();
        let r = d.update(&1, panics_on_five);
        match r {
            Err(Error::Task(TaskError::Panicked { message, .. })) => {
                assert!(message.contains("boom in update"))
            }
            other => panic!("expected a panic error, got {other:?}"),
        }
        assert_eq!(d.get(&1).unwrap(), Some(5));
        assert_eq!(d.update(&1, plus_one_u32).unwrap(), 6);
    });
}

#[test]
fn auth_and_tcp_rules() {
    deadline(20, || {
        // TCP without a key is refused at start-up.
        for r in [
            Manager::serve("127.0.0.1:0", b""),
            Manager::builder().listen("127.0.0.1:0").start(),
            Manager::builder()
                .listen("127.0.0.1:0")
                .thread(true)
                .start(),
        ] {
            match r {
                Err(Error::InvalidArgument(m)) => assert!(m.contains("auth key"), "{m}"),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        let (log, l2): (Log, Log) = {
            let l: Log = Arc::default();
            (l.clone(), l)
        };
        let m = Manager::builder()
            .listen("127.0.0.1:0")
            .authkey(b"right")
            .thread(true)
            .logger(move |s| l2.lock().unwrap().push(s.into()))
            .start()
            .unwrap();
        let d = m.dict::<u8, u8>("d").unwrap();
        d.insert(&1, &1).unwrap();
        assert!(matches!(
            Manager::connect(m.address().clone(), b"wrong"),
            Err(Error::AuthenticationFailed(_))
        ));
        wait_log(&log, "authentication failed");
        let other = Manager::connect(m.address().clone(), b"right").unwrap();
        assert_eq!(other.dict::<u8, u8>("d").unwrap().get(&1).unwrap(), Some(1));
    });
}

#[test]
fn bad_input_closes_only_that_connection() {
    deadline(30, || {
        let (m, log) = thread_manager();
        let d = m.dict::<u32, u32>("d").unwrap();
        d.insert(&1, &100).unwrap();
        let check = |what: &str| {
            wait_log(&log, what);
            // Every other client is served and the data is intact.
            assert_eq!(d.get(&1).unwrap(), Some(100), "after {what}");
            assert_eq!(d.len().unwrap(), 1);
        };

        // Garbage instead of the handshake.
        let path = match m.address() {
            multiproc::connection::Address::Unix(p) => p.clone(),
            a => panic!("{a:?}"),
        };
        let mut s = UnixStream::connect(&path).unwrap();
        let _ = s.write_all(b"\x00\x00\x00\x05hello world garbage");
        check("authentication failed");
        drop(s);

        // Garbage frame after hello.
        let (c, _s) = raw(&m);
        c.send_bytes(b"\xff\xfe\xfd garbage").unwrap();
        check("malformed request");
        drop(c);
        log.lock().unwrap().clear();

        // Unknown operation code: object 0, op 200.
        let (c, _s) = raw(&m);
        c.send_bytes(&[0, 200, 1]).unwrap();
        check("unknown operation");
        drop(c);
        log.lock().unwrap().clear();

        // A length prefix over the limit.
        let (c, mut s) = raw(&m);
        s.write_all(&0x7fff_fff0u32.to_be_bytes()).unwrap();
        check("exceeds the maximum");
        drop((c, s));

        // A truncated frame, then the client disappears.
        let (c, mut s) = raw(&m);
        s.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
        drop((c, s));
        check("disappeared in the middle");

        // A truncated frame, then silence: the idle timeout.
        let (c, mut s) = raw(&m);
        s.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
        check("idle");
        drop((c, s));
        log.lock().unwrap().clear();

        // Connects and sends nothing.
        let s = UnixStream::connect(&path).unwrap();
        check("handshake in time");
        drop(s);

        // Disappears while its request waits (a blocked queue get, then SIGKILL).
        let q = m.queue::<u32>("q").unwrap();
        let started = m.event("started").unwrap();
        let p = Process::start(
            |(q, started): (MQueue<u32>, multiproc::manager::Event)| {
                started.set().unwrap();
                let _ = q.get();
            },
            (q.clone(), started.clone()),
        )
        .unwrap();
        assert!(started.wait_timeout(Duration::from_secs(10)).unwrap());
        // The child's get is on the wire now (or about to be): give it time to block.
        std::thread::sleep(Duration::from_millis(100));
        p.kill().unwrap();
        p.join();
        check("went away while its request waited");
        q.put(&5).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 5);
    });
}

/// A client killed in the middle of sending a large `extend` changes nothing; one killed
/// between operations leaves whole batches only.
#[test]
fn operations_are_atomic() {
    deadline(30, || {
        let (m, _log) = thread_manager();
        let l = m.list::<u64>("l").unwrap();
        // Half a frame of a 1000-item extend, then gone.
        let bytes = {
            let items: Vec<u64> = (0..1000).collect();
            let probe = m.list::<u64>("probe").unwrap();
            probe.extend(&items).unwrap();
            postcard::to_stdvec(&items).unwrap()
        };
        let (c, mut s) = raw(&m);
        let len = (bytes.len() as u32 + 16).to_be_bytes();
        s.write_all(&len).unwrap();
        s.write_all(&bytes[..bytes.len() / 2]).unwrap();
        drop((c, s));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(l.len().unwrap(), 0);

        let p = Process::start(
            |l: List<u64>| {
                let batch: Vec<u64> = (0..1000).collect();
                loop {
                    l.extend(&batch).unwrap();
                }
            },
            l.clone(),
        )
        .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while l.len().unwrap() < 3000 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        p.kill().unwrap();
        p.join();
        let n = l.len().unwrap();
        assert!(n >= 3000, "{n}");
        assert_eq!(n % 1000, 0, "a killed client left a partial batch");
    });
}

fn hammer((d, l, proc, threads, ops): (Dict<String, u64>, List<u32>, u32, u32, u32)) {
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (d, l) = (d.clone(), l.clone());
            std::thread::spawn(move || {
                for i in 0..ops {
                    d.update(&"n".into(), plus_one).unwrap();
                    l.push(&((proc * threads + t) * 100_000 + i)).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn many_clients_from_several_processes_count_exactly() {
    deadline(60, || {
        let m = Manager::builder().update_fn(plus_one).start().unwrap();
        let d = m.dict::<String, u64>("counter").unwrap();
        let l = m.list::<u32>("appends").unwrap();
        let (procs, threads, ops) = (4u32, 16u32, 150u32);
        let ps: Vec<_> = (0..procs)
            .map(|p| Process::start(hammer, (d.clone(), l.clone(), p, threads, ops)).unwrap())
            .collect();
        for p in &ps {
            p.join();
            assert_eq!(p.exitcode(), Some(0));
        }
        let total = (procs * threads * ops) as u64;
        assert_eq!(d.get(&"n".into()).unwrap(), Some(total));
        let mut all = l.to_vec().unwrap();
        assert_eq!(all.len() as u64, total);
        all.sort();
        all.dedup();
        assert_eq!(all.len() as u64, total, "an append was duplicated");
    });
}

#[test]
fn stopped_or_killed_server_gives_disconnected_never_a_hang() {
    deadline(30, || {
        // Shut down while a client is blocked in a get.
        let m = Manager::start().unwrap();
        let pid = m.pid().unwrap();
        let q = m.queue::<u32>("q").unwrap();
        let q2 = q.clone();
        let blocked = std::thread::spawn(move || q2.get());
        std::thread::sleep(Duration::from_millis(100));
        m.shutdown().unwrap();
        assert!(matches!(
            blocked.join().unwrap(),
            Err(Error::Disconnected(_))
        ));
        assert!(matches!(q.len(), Err(Error::Disconnected(_))));
        common::assert_gone(&[pid]);

        // Killed outright.
        let m = Manager::start().unwrap();
        let pid = m.pid().unwrap();
        let e = m.event("e").unwrap();
        let e2 = e.clone();
        let blocked = std::thread::spawn(move || e2.wait());
        std::thread::sleep(Duration::from_millis(100));
        kill9(pid);
        assert!(matches!(
            blocked.join().unwrap(),
            Err(Error::Disconnected(_))
        ));
        assert!(matches!(e.set(), Err(Error::Disconnected(_))));
        let addr = m.address().clone();
        drop(m);
        common::assert_gone(&[pid]);
        assert!(matches!(
            Manager::connect(addr, b"k"),
            Err(Error::Disconnected(_))
        ));
    });
}

fn kill9(pid: u32) {
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
}

fn fd_check(_: ()) {
    let before = common::fd_count();
    std::thread::spawn(|| {
        let (m, _) = thread_manager();
        let d = m.dict::<u8, u8>("d").unwrap();
        d.insert(&1, &2).unwrap();
        m.shutdown().unwrap();
        assert!(matches!(d.get(&1), Err(Error::Disconnected(_))));
    })
    .join()
    .unwrap();
    assert_eq!(common::fd_count(), before, "fds left behind");
}

/// In a process of its own, so other tests' fds do not blur the count.
#[test]
fn thread_server_leaves_no_fd_behind() {
    deadline(20, || {
        let p = Process::start(fd_check, ()).unwrap();
        p.join();
        assert_eq!(p.exitcode(), Some(0));
    });
}

#[test]
fn idle_connections_are_replaced_and_lock_holders_kept() {
    deadline(20, || {
        let (m, log) = thread_manager(); // idle timeout 400 ms
        let d = m.dict::<u8, u8>("d").unwrap();
        d.insert(&1, &1).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        // The server closed the idle connection; the client made a new one.
        wait_log(&log, "idle");
        assert_eq!(d.get(&1).unwrap(), Some(1));

        // Holding a lock past the idle timeout keeps the connection, and the lock.
        let lock = m.lock("l").unwrap();
        let g = lock.acquire().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let l2 = lock.clone();
        let busy = std::thread::spawn(move || l2.try_acquire().unwrap().is_none())
            .join()
            .unwrap();
        assert!(busy, "the lock was released under its holder");
        drop(g);
        let g = lock.try_acquire().unwrap();
        let log = log.lock().unwrap().clone();
        let g = g.unwrap_or_else(|| panic!("not released by the guard; log: {log:?}"));
        assert!(!g.owner_died(), "log: {log:?}");
    });
}

/// A request built by hand: `Request { obj, op: DictUpdate(key, name, tag) }` in postcard
/// (op 12; a byte string, two strings), as a client holding the key could send anything.
fn dict_update_frame(obj: u8, key: &[u8], name: &[u8], tag: &str) -> Vec<u8> {
    let mut f = vec![obj, 12, key.len() as u8];
    f.extend_from_slice(key);
    f.push(name.len() as u8);
    f.extend_from_slice(name);
    f.push(tag.len() as u8);
    f.extend_from_slice(tag.as_bytes());
    f
}

#[test]
fn update_runs_only_registered_functions_on_their_own_type() {
    deadline(20, || {
        let (m, log) = thread_manager();
        let d = m.dict::<String, u64>("d").unwrap();
        d.insert(&"a".into(), &1).unwrap();
        // A fn the server was not told it may run: refused by name, nothing changes.
        fn not_registered(v: Option<u64>) -> u64 {
            v.unwrap_or(0) + 100
        }
        match d.update(&"a".into(), not_registered) {
            Err(Error::NotFound(msg)) => assert!(msg.contains("not_registered"), "{msg}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        // A closure has no name: refused before anything is sent.
        assert!(matches!(
            d.update(&"a".into(), |v| v.unwrap_or(0)),
            Err(Error::InvalidArgument(_))
        ));
        // A registered function over another value type than the object's.
        let wrong = m.dict::<String, u32>("d");
        assert!(matches!(wrong, Err(Error::TypeMismatch { .. })));
        let v = m.value("v", 3u64).unwrap();
        assert_eq!(d.get(&"a".into()).unwrap(), Some(1));
        assert_eq!(d.update(&"a".into(), plus_one).unwrap(), 2);
        assert_eq!(
            v.update(plus_one).unwrap(),
            4,
            "a fn(Option<V>) -> V also updates a value"
        );

        // By hand: a request naming a function that is registered but over `u32`, on a
        // `dict<String, u64>` whose tag it copies; and one naming anything at all.
        let (c, _s) = raw(&m);
        let tag = format!("dict<{}, {}>", std::any::type_name::<String>(), "u64");
        let obj = 1; // The dict is the first object opened on this server.
        let key = postcard::to_stdvec(&"a".to_string()).unwrap();
        let name = std::any::type_name_of_val(&plus_one_u32);
        c.send_bytes(&dict_update_frame(obj, &key, name.as_bytes(), &tag))
            .unwrap();
        let r = c.recv_bytes_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(&r[..2], [11, 0], "Err(TypeMismatch): {r:?}");
        // The bytes a pre-registry server read as a code offset (here 0x3f: a jump 32
        // bytes before its anchor) followed by the object's own tag: now only a name.
        // The name's length byte, 0x3f, was the offset -32 (zigzag); its first bytes the
        // tag the old server checked before jumping.
        let mut old_style = vec![tag.len() as u8];
        old_style.extend_from_slice(tag.as_bytes());
        old_style.resize(0x3f, b' ');
        let frame63 = dict_update_frame(obj, &key, &old_style, &tag);
        c.send_bytes(&frame63).unwrap();
        let r = c.recv_bytes_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(&r[..2], [11, 1], "Err(NotFound): {r:?}");
        // The connection and every other client go on; nothing changed.
        c.send_bytes(&[0, 1]).unwrap(); // Ping
        assert_eq!(c.recv_bytes_timeout(Duration::from_secs(5)).unwrap(), [0]);
        assert_eq!(d.get(&"a".into()).unwrap(), Some(2));
        assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    });
}

#[test]
fn registering_a_closure_or_two_fns_of_one_name_is_refused_at_start() {
    let r = Manager::builder()
        .thread(true)
        .update_fn(|v: Option<u8>| v.unwrap_or(0))
        .start();
    match r {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("closure"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The same fn twice is fine.
    let m = Manager::builder()
        .thread(true)
        .update_fn(plus_one)
        .update_fn(plus_one)
        .start()
        .unwrap();
    m.ping().unwrap();
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn unix_sockets_and_segments_are_created_0600() {
    deadline(30, || {
        // A started server's socket (a child process), a thread server's, and one served on
        // a path of the caller's choosing.
        let started = Manager::start().unwrap();
        let thread = Manager::builder().thread(true).start().unwrap();
        let path = std::env::temp_dir().join(format!("mp-test-0600-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let served = Manager::serve(path.as_path(), b"k").unwrap();
        for m in [&started, &thread, &served] {
            let multiproc::connection::Address::Unix(p) = m.address() else {
                panic!("{:?}", m.address())
            };
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        drop((started, thread, served));
        assert!(!path.exists(), "the served socket is removed at shutdown");
        // A shared memory segment.
        let shm = multiproc::SharedMemory::create(64).unwrap();
        let seg = std::path::Path::new("/dev/shm").join(shm.name().trim_start_matches('/'));
        assert_eq!(mode(&seg), 0o600, "{}", seg.display());
    });
}
