//! Cross-process synchronization: Lock, RLock, Semaphore, BoundedSemaphore, Event,
//! Condition, Barrier. Every blocking step has a hard deadline; every primitive is used
//! from processes of both start methods.

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::{
    AcquireError, Array, Barrier, BoundedSemaphore, Condition, Error, Event, Lock, Process, RLock,
    Semaphore, SharedMemory, StartMethod, Value,
};

multiproc::test_support!();

const METHODS: [StartMethod; 2] = [StartMethod::ForkServer, StartMethod::Spawn];
const DEADLINE: Duration = Duration::from_secs(120);

/// Increments per process in the counter tests (the 50 million). Unoptimized
/// builds are ~10x slower, so they check the same property with fewer increments unless
/// `MULTIPROC_FULL_COUNT=1`.
fn increments() -> u64 {
    if cfg!(debug_assertions) && std::env::var_os("MULTIPROC_FULL_COUNT").is_none() {
        5_000_000
    } else {
        50_000_000
    }
}

/// Joins every process within the deadline (killing them otherwise) and checks they all
/// exited with 0.
fn join_all(procs: &[Process]) {
    let start = Instant::now();
    for p in procs {
        let left = DEADLINE.saturating_sub(start.elapsed());
        if !p.join_timeout(left) {
            procs.iter().for_each(|p| {
                let _ = p.kill();
            });
            panic!("process {} did not finish within {DEADLINE:?}", p.pid());
        }
        assert_eq!(p.exitcode(), Some(0), "process {} failed", p.pid());
    }
}

/// Runs `f` in a thread and fails the test if it does not finish within `limit` (a panic
/// in `f` is re-raised as itself).
fn with_deadline<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    common::deadline(limit.as_secs().max(1), f)
}

// ---- exact counts under contention ----------------------------------------------------

/// A plain (not atomic) increment: only the lock makes it exact. The load and store are
/// atomic accesses so that the test is sound even if the lock were broken.
fn increment(shm: &SharedMemory) {
    let c = &shm.atomic_u64s()[0];
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

fn count(shm: &SharedMemory) -> u64 {
    shm.atomic_u64s()[0].load(Ordering::Relaxed)
}

fn count_under_lock((lock, shm, n): (Lock, SharedMemory, u64)) {
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        increment(&shm);
    }
}

#[test]
fn two_processes_count_exactly_under_lock() {
    let n = increments();
    let lock = Lock::new().unwrap();
    let shm = SharedMemory::create(64).unwrap();
    let procs: Vec<_> = METHODS
        .iter()
        .map(|&m| {
            let arg = (lock.clone(), shm.clone_handle().unwrap(), n);
            Process::start_with(m, count_under_lock, arg).unwrap()
        })
        .collect();
    join_all(&procs);
    assert_eq!(count(&shm), 2 * n);
}

fn count_under_semaphore((sem, shm, n): (Semaphore, SharedMemory, u64)) {
    for _ in 0..n {
        let _permit = sem.acquire();
        increment(&shm);
    }
}

#[test]
fn two_processes_count_exactly_under_semaphore() {
    let n = increments();
    let sem = Semaphore::new(1).unwrap();
    let shm = SharedMemory::create(64).unwrap();
    let procs: Vec<_> = METHODS
        .iter()
        .map(|&m| {
            let arg = (sem.clone(), shm.clone_handle().unwrap(), n);
            Process::start_with(m, count_under_semaphore, arg).unwrap()
        })
        .collect();
    join_all(&procs);
    assert_eq!(count(&shm), 2 * n);
    assert_eq!(sem.get_value(), 1);
}

fn count_value((v, n): (Value<u64>, u64)) {
    for _ in 0..n {
        *v.lock().unwrap() += 1;
    }
}

#[test]
fn two_processes_count_exactly_with_value_and_its_lock() {
    let n = increments();
    let v = Value::new(0u64).unwrap();
    let procs: Vec<_> = METHODS
        .iter()
        .map(|&m| Process::start_with(m, count_value, (v.clone(), n)).unwrap())
        .collect();
    join_all(&procs);
    assert_eq!(v.get().unwrap(), 2 * n);
}

#[test]
fn threads_count_exactly_under_lock() {
    let lock = Lock::new().unwrap();
    let v = Value::new(0u64).unwrap();
    let n = 200_000;
    with_deadline(DEADLINE, move || {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..n {
                        let _g = lock.acquire().unwrap();
                        v.set_unsynchronized(v.get_unsynchronized() + 1);
                    }
                });
            }
        });
        assert_eq!(v.get_unsynchronized(), 4 * n);
    });
}

// ---- a holder that dies ---------------------------------------------------------------

fn hold_forever((lock, held): (Lock, Event)) {
    let _g = lock.acquire().unwrap();
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn sigkilled_holder_is_reported_as_owner_died_within_100ms() {
    for method in METHODS {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        let p = Process::start_with(method, hold_forever, (lock.clone(), held.clone())).unwrap();
        assert!(
            held.wait_timeout(Duration::from_secs(30)),
            "child never took the lock"
        );

        // A waiter already blocked (no timeout) when the holder dies.
        let (tx, rx) = mpsc::channel();
        let waiter_lock = lock.clone();
        std::thread::spawn(move || {
            let outcome = match waiter_lock.acquire() {
                Ok(_) => "acquired",
                Err(AcquireError::OwnerDied(mut g)) => {
                    g.mark_consistent();
                    "owner died"
                }
                Err(AcquireError::NotRecoverable) => "not recoverable",
                Err(AcquireError::Timeout(_)) => "timeout",
            };
            let _ = tx.send((outcome, Instant::now()));
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "acquired a lock that is held");

        p.kill().unwrap();
        let killed = Instant::now();
        assert!(p.join_timeout(Duration::from_secs(10)));
        let (outcome, at) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the waiter is still blocked 5 s after the holder died");
        let latency = at.saturating_duration_since(killed);
        eprintln!("{method:?}: owner death noticed {latency:?} after the SIGKILL");
        assert_eq!(outcome, "owner died");
        assert!(
            latency < Duration::from_millis(100),
            "noticed after {latency:?}"
        );
        // Marked consistent: the lock works normally again.
        drop(lock.acquire_timeout(Duration::from_secs(1)).unwrap());
    }
}

#[test]
fn unrepaired_owner_death_makes_the_lock_unrecoverable() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let p = Process::start(hold_forever, (lock.clone(), held.clone())).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(30)));
    p.kill().unwrap();
    assert!(p.join_timeout(Duration::from_secs(10)));
    let err = lock.acquire_timeout(Duration::from_secs(5)).unwrap_err();
    let guard = err.into_guard().expect("owner died, with the guard");
    assert!(!guard.is_consistent());
    drop(guard); // not repaired
    for _ in 0..2 {
        assert!(matches!(
            lock.acquire_timeout(Duration::from_secs(1)),
            Err(AcquireError::NotRecoverable)
        ));
    }
    let e: Error = lock.try_acquire().unwrap_err().into();
    assert!(matches!(e, Error::NotRecoverable), "{e}");
}

#[test]
fn a_thread_that_exits_holding_the_lock_is_an_owner_death() {
    let lock = Lock::new().unwrap();
    let l2 = lock.clone();
    std::thread::spawn(move || std::mem::forget(l2.acquire().unwrap()))
        .join()
        .unwrap();
    let r = with_deadline(Duration::from_secs(10), move || {
        let start = Instant::now();
        let died = matches!(lock.acquire(), Err(AcquireError::OwnerDied(_)));
        (died, start.elapsed())
    });
    assert!(r.0);
    assert!(r.1 < Duration::from_millis(100), "{:?}", r.1);
}

fn panic_holding(lock: Lock) {
    let _g = lock.acquire().unwrap();
    panic!("inside the critical section");
}

#[test]
fn a_holder_that_panics_is_an_owner_death_noticed_at_once() {
    for method in METHODS {
        let lock = Lock::new().unwrap();
        let p = Process::start_with(method, panic_holding, lock.clone()).unwrap();
        assert!(p.join_timeout(Duration::from_secs(30)));
        assert_eq!(p.exitcode(), Some(1));
        // No liveness check needed: even a non-blocking attempt sees it.
        match lock.try_acquire() {
            Err(AcquireError::OwnerDied(mut g)) => g.mark_consistent(),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        drop(lock.try_acquire().expect("usable after repair"));
    }
    let lock = Lock::new().unwrap();
    let l2 = lock.clone();
    let panicked = std::thread::spawn(move || {
        let _g = l2.acquire().unwrap();
        panic!("thread panics holding the lock");
    })
    .join();
    assert!(panicked.is_err());
    assert!(matches!(
        lock.try_acquire(),
        Err(AcquireError::OwnerDied(_))
    ));
    // That guard was dropped unrepaired: the lock is now unusable, and says so.
    assert!(matches!(
        lock.try_acquire(),
        Err(AcquireError::NotRecoverable)
    ));
}

fn die_holding_value(v: Value<u64>) {
    let mut g = v.lock().unwrap();
    *g = 7;
    std::process::abort();
}

#[test]
fn value_reports_a_dead_holder_once() {
    for method in METHODS {
        let v = Value::new(0u64).unwrap();
        let p = Process::start_with(method, die_holding_value, v.clone()).unwrap();
        assert!(p.join_timeout(Duration::from_secs(30)));
        assert_eq!(p.exitcode(), Some(-6));
        let r = with_deadline(Duration::from_secs(10), move || {
            let first = v.get();
            (matches!(first, Err(Error::OwnerDied)), v.get().ok())
        });
        // The guard works on a copy that is written back on release: a holder that dies
        // inside its critical section leaves the value as it was before it (unless it dies
        // during the write-back itself). Its `7` is not seen.
        assert_eq!(r, (true, Some(0)));
    }
}

// ---- timeouts -------------------------------------------------------------------------

/// `f` must block for `timeout` and give up: returns whether it reported a timeout.
fn assert_times_out(what: &str, timeout: Duration, f: impl FnOnce(Duration) -> bool) {
    let start = Instant::now();
    let timed_out = f(timeout);
    let took = start.elapsed();
    eprintln!("{what}: timeout {timeout:?} took {took:?}");
    assert!(timed_out, "{what}: no timeout reported");
    assert!(took >= timeout, "{what}: returned early, after {took:?}");
    assert!(
        took < timeout + Duration::from_millis(20),
        "{what}: overslept, {took:?} for {timeout:?}"
    );
}

#[test]
fn timeouts_are_honoured() {
    with_deadline(Duration::from_secs(30), || {
        let t = Duration::from_millis(60);
        let lock = Lock::new().unwrap();
        let g = lock.acquire().unwrap();
        let l2 = lock.clone();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_times_out(
                    "Lock",
                    t,
                    |t| matches!(l2.acquire_timeout(t), Err(AcquireError::Timeout(d)) if d == t),
                )
            });
        });
        let rl = RLock::new().unwrap();
        let rg = rl.acquire().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_times_out("RLock", t, |t| {
                    matches!(rl.acquire_timeout(t), Err(AcquireError::Timeout(_)))
                })
            });
        });
        drop(rg);
        let sem = Semaphore::new(0).unwrap();
        assert_times_out("Semaphore", t, |t| sem.acquire_timeout(t).is_none());
        let ev = Event::new().unwrap();
        assert_times_out("Event", t, |t| !ev.wait_timeout(t));
        drop(g);
        let cond = Condition::with_lock(lock.clone()).unwrap();
        assert_times_out("Condition", t, |t| {
            let g = cond.acquire().unwrap();
            let (_g, notified) = cond.wait_timeout(g, t).unwrap();
            !notified
        });
        let b = Barrier::new(2).unwrap();
        assert_times_out("Barrier", t, |t| {
            matches!(b.wait_timeout(t), Err(Error::Timeout(_)))
        });
        assert!(
            b.broken(),
            "a barrier wait that timed out breaks the barrier"
        );
    });
}

// ---- Barrier --------------------------------------------------------------------------

fn barrier_party((b, arrived, seen, index): (Barrier, Value<u32>, Array<u32>, usize)) {
    *arrived.lock().unwrap() += 1;
    let i = b.wait_timeout(Duration::from_secs(60)).unwrap();
    // Nobody gets through before all four have arrived.
    seen.set(index, arrived.get().unwrap() * 100 + i).unwrap();
}

#[test]
fn barrier_of_four_processes_releases_all_together() {
    let b = Barrier::new(4).unwrap();
    let arrived = Value::new(0u32).unwrap();
    let seen = Array::<u32>::new(4).unwrap();
    let procs: Vec<_> = (0..4)
        .map(|i| {
            let arg = (b.clone(), arrived.clone(), seen.clone(), i);
            Process::start_with(METHODS[i % 2], barrier_party, arg).unwrap()
        })
        .collect();
    join_all(&procs);
    let seen = seen.to_vec().unwrap();
    assert!(seen.iter().all(|s| s / 100 == 4), "{seen:?}");
    let mut indices: Vec<_> = seen.iter().map(|s| s % 100).collect();
    indices.sort();
    assert_eq!(indices, [0, 1, 2, 3]);
    assert_eq!(b.n_waiting(), 0);
    assert!(!b.broken());
}

fn wait_expect_broken((b, waiting): (Barrier, Semaphore)) {
    waiting.release();
    assert!(matches!(
        b.wait_timeout(Duration::from_secs(60)),
        Err(Error::BrokenBarrier)
    ));
}

#[test]
fn barrier_abort_wakes_every_waiter_with_an_error() {
    let b = Barrier::new(4).unwrap();
    let waiting = Semaphore::new(0).unwrap();
    let procs: Vec<_> = METHODS
        .iter()
        .map(|&m| Process::start_with(m, wait_expect_broken, (b.clone(), waiting.clone())).unwrap())
        .collect();
    let b2 = b.clone();
    let w2 = waiting.clone();
    let thread = std::thread::spawn(move || wait_expect_broken((b2, w2)));
    // All three are (about to be) blocked in wait.
    let start = Instant::now();
    while b.n_waiting() < 3 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(b.n_waiting(), 3);
    b.abort();
    join_all(&procs);
    with_deadline(Duration::from_secs(10), move || thread.join().unwrap());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset();
    assert!(!b.broken());
    let ts: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || b.wait_timeout(Duration::from_secs(30)))
        })
        .collect();
    let mut got = vec![b.wait_timeout(Duration::from_secs(30)).unwrap()];
    got.extend(ts.into_iter().map(|t| t.join().unwrap().unwrap()));
    got.sort();
    assert_eq!(got, [0, 1, 2, 3]);
}

#[test]
fn barrier_reset_breaks_current_waiters() {
    let b = Barrier::new(3).unwrap();
    let b2 = b.clone();
    let t = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(30)));
    while b.n_waiting() < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    b.reset();
    let r = with_deadline(Duration::from_secs(10), move || t.join().unwrap());
    assert!(matches!(r, Err(Error::BrokenBarrier)));
    assert!(!b.broken(), "reset leaves the barrier usable");
}

fn wait_forever_at(b: Barrier) {
    let _ = b.wait();
}

#[test]
fn a_party_sigkilled_while_waiting_breaks_the_barrier_for_the_others() {
    for method in METHODS {
        let b = Barrier::new(3).unwrap();
        let p = Process::start_with(method, wait_forever_at, b.clone()).unwrap();
        let start = Instant::now();
        while b.n_waiting() < 1 && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(b.n_waiting(), 1, "the child never arrived");
        // A waiter with no timeout, already blocked when the party dies.
        let (tx, rx) = mpsc::channel();
        let b2 = b.clone();
        std::thread::spawn(move || {
            let r = b2.wait();
            let _ = tx.send((matches!(r, Err(Error::BrokenBarrier)), Instant::now()));
        });
        while b.n_waiting() < 2 && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(b.n_waiting(), 2);
        p.kill().unwrap();
        let killed = Instant::now();
        assert!(p.join_timeout(Duration::from_secs(10)));
        let (broken, at) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the waiter is still blocked 5 s after a party died");
        let latency = at.saturating_duration_since(killed);
        eprintln!("{method:?}: dead party noticed {latency:?} after the SIGKILL");
        assert!(broken, "expected BrokenBarrier");
        assert!(
            latency < Duration::from_secs(2),
            "noticed after {latency:?}"
        );
        assert!(b.broken());
        assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    }
}

// ---- Event, Condition, RLock, BoundedSemaphore -----------------------------------------

fn set_after((ev, ms): (Event, u64)) {
    std::thread::sleep(Duration::from_millis(ms));
    ev.set();
}

#[test]
fn event_wakes_waiters_in_another_process() {
    for method in METHODS {
        let ev = Event::new().unwrap();
        assert!(!ev.is_set());
        let p = Process::start_with(method, set_after, (ev.clone(), 50)).unwrap();
        let ev2 = ev.clone();
        with_deadline(Duration::from_secs(30), move || ev2.wait());
        assert!(ev.is_set());
        assert!(ev.wait_timeout(Duration::ZERO));
        ev.clear();
        assert!(!ev.is_set());
        join_all(&[p]);
    }
}

fn consumer((cond, items, n): (Condition, Value<u32>, u32)) {
    for _ in 0..n {
        let g = cond.acquire().unwrap();
        let g = cond.wait_for(g, || items.get_unsynchronized() > 0).unwrap();
        items.set_unsynchronized(items.get_unsynchronized() - 1);
        drop(g);
    }
}

#[test]
fn condition_producer_consumer_across_processes() {
    let n = 2000;
    let cond = Condition::new().unwrap();
    let items = Value::new(0u32).unwrap();
    let procs: Vec<_> = METHODS
        .iter()
        .map(|&m| Process::start_with(m, consumer, (cond.clone(), items.clone(), n)).unwrap())
        .collect();
    let c2 = cond.clone();
    let i2 = items.clone();
    with_deadline(DEADLINE, move || {
        for _ in 0..2 * n {
            let g = c2.acquire().unwrap();
            i2.set_unsynchronized(i2.get_unsynchronized() + 1);
            c2.notify();
            drop(g);
        }
    });
    join_all(&procs);
    assert_eq!(items.get().unwrap(), 0);
}

#[test]
fn condition_notify_all_wakes_every_waiter() {
    let cond = Condition::new().unwrap();
    let flag = Value::new(0u32).unwrap();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (cond, flag) = (cond.clone(), flag.clone());
            std::thread::spawn(move || {
                let g = cond.acquire().unwrap();
                let (_g, ok) = cond
                    .wait_for_timeout(g, Duration::from_secs(30), || {
                        flag.get_unsynchronized() == 1
                    })
                    .unwrap();
                ok
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    {
        let _g = cond.acquire().unwrap();
        flag.set_unsynchronized(1);
        cond.notify_all();
    }
    let all = with_deadline(Duration::from_secs(10), move || {
        waiters.into_iter().all(|t| t.join().unwrap())
    });
    assert!(all);
}

fn try_rlock((rl, out): (RLock, Value<u32>)) {
    let got = rl.try_acquire().is_ok();
    out.set(u32::from(got) + 1).unwrap();
}

#[test]
fn rlock_is_reentrant_for_its_holder_only() {
    let rl = RLock::new().unwrap();
    let g1 = rl.acquire().unwrap();
    let g2 = rl.acquire().unwrap();
    assert_eq!(rl.depth(), 2);
    for method in METHODS {
        let out = Value::new(0u32).unwrap();
        join_all(&[Process::start_with(method, try_rlock, (rl.clone(), out.clone())).unwrap()]);
        assert_eq!(
            out.get().unwrap(),
            1,
            "another process acquired a held RLock"
        );
    }
    let rl2 = rl.clone();
    assert!(
        std::thread::spawn(move || rl2.try_acquire().is_err())
            .join()
            .unwrap()
    );
    drop(g2);
    assert!(rl.locked());
    drop(g1);
    assert!(!rl.locked());
    let out = Value::new(0u32).unwrap();
    join_all(&[Process::start(try_rlock, (rl.clone(), out.clone())).unwrap()]);
    assert_eq!(out.get().unwrap(), 2);
}

#[test]
fn bounded_semaphore_refuses_release_past_its_bound() {
    let s = BoundedSemaphore::new(2).unwrap();
    let a = s.acquire();
    let b = s.try_acquire().unwrap();
    assert!(s.try_acquire().is_none());
    drop(a);
    drop(b);
    assert_eq!(s.get_value(), 2);
    assert!(matches!(s.release(), Err(Error::InvalidArgument(_))));
    s.acquire().forget();
    s.release().unwrap();
    assert_eq!(s.get_value(), 2);
}

#[test]
fn semaphore_limits_concurrency_across_processes() {
    fn enter((sem, inside, peak): (Semaphore, Value<u32>, Value<u32>)) {
        for _ in 0..200 {
            let _p = sem.acquire();
            let now = {
                let mut g = inside.lock().unwrap();
                *g += 1;
                *g
            };
            {
                let mut p = peak.lock().unwrap();
                *p = (*p).max(now);
            }
            std::thread::yield_now();
            *inside.lock().unwrap() -= 1;
        }
    }
    let sem = Semaphore::new(2).unwrap();
    let inside = Value::new(0u32).unwrap();
    let peak = Value::new(0u32).unwrap();
    let procs: Vec<_> = (0..4)
        .map(|i| {
            let arg = (sem.clone(), inside.clone(), peak.clone());
            Process::start_with(METHODS[i % 2], enter, arg).unwrap()
        })
        .collect();
    join_all(&procs);
    assert!(peak.get().unwrap() <= 2);
    assert_eq!(sem.get_value(), 2);
}

fn hold_permit_forever((sem, held): (Semaphore, Event)) {
    sem.acquire().forget();
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The documented contract of an ownerless semaphore: a permit held by a SIGKILLed process
/// is lost and nobody is told; a thread that panics holding one gives it back.
#[test]
fn semaphore_permit_of_a_killed_holder_is_lost_and_a_panicking_thread_returns_it() {
    let sem = Semaphore::new(1).unwrap();
    let held = Event::new().unwrap();
    let p = Process::start(hold_permit_forever, (sem.clone(), held.clone())).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(30)));
    p.kill().unwrap();
    assert!(p.join_timeout(Duration::from_secs(10)));
    assert_eq!(
        sem.get_value(),
        0,
        "a dead holder's permit is not given back"
    );
    assert!(
        sem.acquire_timeout(Duration::from_millis(100)).is_none(),
        "no owner-died report: the waiter simply times out"
    );
    sem.release(); // whoever watches the processes gives the permit back

    let s2 = sem.clone();
    let r = std::thread::spawn(move || {
        let _permit = s2.acquire();
        panic!("panics holding a permit");
    })
    .join();
    assert!(r.is_err());
    assert_eq!(sem.get_value(), 1, "the guard's Drop ran while unwinding");
}

// ---- handles across processes ----------------------------------------------------------

#[test]
fn a_handle_of_the_wrong_kind_is_refused() {
    let lock = Lock::new().unwrap();
    let bytes = postcard::to_stdvec(&lock).unwrap();
    let err = postcard::from_bytes::<Semaphore>(&bytes).unwrap_err();
    let _ = err; // postcard flattens the message; the attempt must fail, not misbehave
    assert!(postcard::from_bytes::<Lock>(&bytes).is_ok());
    let v = Value::new(1u64).unwrap();
    let bytes = postcard::to_stdvec(&v).unwrap();
    assert!(postcard::from_bytes::<Value<u32>>(&bytes).is_err());
    assert!(postcard::from_bytes::<Array<u64>>(&bytes).is_err());
    assert_eq!(
        postcard::from_bytes::<Value<u64>>(&bytes)
            .unwrap()
            .get()
            .unwrap(),
        1
    );
}

// ---- pool tasks ---------------------------------------------------------------------------

fn pool_add((v, n): (Value<u64>, u64)) -> u64 {
    for _ in 0..n {
        *v.lock().unwrap() += 1;
    }
    n
}

#[test]
fn primitives_travel_to_pool_tasks() {
    use multiproc::{Executor, ProcessPool};
    with_deadline(DEADLINE, || {
        for method in METHODS {
            let pool = ProcessPool::builder()
                .workers(2)
                .start_method(method)
                .build()
                .unwrap();
            let v = Value::new(0u64).unwrap();
            let done = pool
                .map(pool_add, (0..8).map(|_| (v.clone(), 10_000)))
                .unwrap();
            assert_eq!(done.iter().sum::<u64>(), 80_000);
            assert_eq!(v.get().unwrap(), 80_000);
        }
    });
}
