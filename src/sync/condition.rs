//! `Condition`: a condition variable for threads and processes alike (Python's
//! `multiprocessing.Condition`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{AcquireError, LockGuard};
use super::{Cell, CellRef, Kind, deadline};
use crate::error::Result;
use crate::sync::Lock;
use crate::sys::EventCount;

// Words: the event count: 0 = sequence number (the futex word, bumped by a notify that
// finds waiters), 1 = waiters.

/// Waits for a condition on data protected by a [`Lock`], and wakes waiters when it may
/// have changed.
///
/// As with std's `Condvar`, waits can wake spuriously: loop, or use
/// [`wait_for`](Condition::wait_for).
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Condition, Process, Value};
/// fn produce((cond, ready): (Condition, Value<u32>)) {
///     let g = cond.acquire().unwrap();
///     ready.set_unsynchronized(1); // we hold the condition's lock
///     cond.notify_all();
///     drop(g);
/// }
/// let cond = Condition::new().unwrap();
/// let ready = Value::new(0u32).unwrap();
/// let g = cond.acquire().unwrap();
/// let p = Process::start(produce, (cond.clone(), ready.clone())).unwrap();
/// let g = cond.wait_for(g, || ready.get_unsynchronized() == 1).unwrap();
/// drop(g);
/// p.join();
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: Lock,
    cell: Cell,
}

impl Condition {
    /// A condition with a new lock of its own.
    pub fn new() -> Result<Condition> {
        let seg = Cell::segment(2 * super::CELL)?;
        let lock = Lock::from_cell(Cell::init(&seg, 0, Kind::Lock));
        let cell = Cell::init(&seg, super::CELL, Kind::Condition);
        Ok(Condition { lock, cell })
    }

    /// A condition over an existing lock.
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Ok(Condition {
            lock,
            cell: Cell::new(Kind::Condition)?,
        })
    }

    /// The lock.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// Acquires the lock.
    pub fn acquire(&self) -> std::result::Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        self.lock.acquire()
    }

    /// Releases the lock, sleeps until notified (or spuriously), and acquires it again.
    ///
    /// # Panics
    ///
    /// If `guard` holds another lock than this condition's.
    pub fn wait<'a>(
        &self,
        guard: LockGuard<'a>,
    ) -> std::result::Result<LockGuard<'a>, AcquireError<LockGuard<'a>>> {
        self.wait_until(guard, None).map(|(g, _)| g)
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; the flag is `false` if the
    /// timeout passed (Python's `wait` returning `False`).
    pub fn wait_timeout<'a>(
        &self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> std::result::Result<(LockGuard<'a>, bool), AcquireError<LockGuard<'a>>> {
        self.wait_until(guard, deadline(Some(timeout)))
    }

    /// Waits until `condition()` is true (checked with the lock held).
    pub fn wait_for<'a>(
        &self,
        mut guard: LockGuard<'a>,
        mut condition: impl FnMut() -> bool,
    ) -> std::result::Result<LockGuard<'a>, AcquireError<LockGuard<'a>>> {
        while !condition() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits until `condition()` is true or `timeout` passes; the flag is the condition's
    /// last value.
    pub fn wait_for_timeout<'a>(
        &self,
        mut guard: LockGuard<'a>,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> std::result::Result<(LockGuard<'a>, bool), AcquireError<LockGuard<'a>>> {
        let deadline = deadline(Some(timeout));
        loop {
            if condition() {
                return Ok((guard, true));
            }
            let (g, notified) = self.wait_until(guard, deadline)?;
            guard = g;
            if !notified {
                let ok = condition();
                return Ok((guard, ok));
            }
        }
    }

    fn wait_until<'a>(
        &self,
        guard: LockGuard<'a>,
        deadline: Option<Instant>,
    ) -> std::result::Result<(LockGuard<'a>, bool), AcquireError<LockGuard<'a>>> {
        assert!(
            guard.lock().same(&self.lock),
            "Condition::wait called with a guard of another lock"
        );
        let event = self.event();
        // Announced while holding the lock: a notifier (who holds it to change the state
        // we wait for) either sees us, or notified before we looked at that state.
        let token = event.prepare_wait();
        let (lock, consistent) = guard.release_for_wait();
        let notified = event.wait(token, deadline) || deadline.is_none_or(|d| Instant::now() < d);
        LockGuard::reacquire(lock, consistent).map(|g| (g, notified))
    }

    /// Wakes one waiter.
    pub fn notify(&self) {
        self.notify_n(1)
    }

    /// Wakes up to `n` waiters.
    pub fn notify_n(&self, n: u32) {
        self.event().notify(n);
    }

    fn event(&self) -> EventCount<'_> {
        EventCount::new(self.cell.word(0), self.cell.word(1))
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify_n(i32::MAX as u32)
    }
}

#[derive(Serialize, Deserialize)]
struct ConditionRef {
    lock: CellRef,
    cell: CellRef,
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ConditionRef {
            lock: self.lock.cell().to_ref(),
            cell: self.cell.to_ref(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = ConditionRef::deserialize(d)?;
        let lock = Cell::from_ref(r.lock, Kind::Lock).map_err(serde::de::Error::custom)?;
        let cell = Cell::from_ref(r.cell, Kind::Condition).map_err(serde::de::Error::custom)?;
        Ok(Condition {
            lock: Lock::from_cell(lock),
            cell,
        })
    }
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?}, {})", self.lock, self.cell.describe())
    }
}
