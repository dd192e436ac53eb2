//! `Lock`: a mutual-exclusion lock shared by threads and processes, like
//! `multiprocessing.Lock`, that reports a dead holder instead of deadlocking.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::{Cell, Kind, cell_serde};
use crate::error::{Error, Result};
// The lock word itself (shared with the queue ring) lives in `sys::lock`; the barrier's
// internal lock reaches it through here.
pub(crate) use crate::sys::lock::{
    RawError, raw_abandon, raw_lock, raw_locked, raw_make_unrecoverable, raw_unlock,
};

// ---- the public error -----------------------------------------------------------------

/// Why acquiring a [`Lock`] (or [`RLock`](crate::RLock), or the lock of a
/// [`Value`](crate::Value)/[`Array`](crate::Array)) did not simply succeed.
///
/// Like std's `PoisonError`, the owner-died case hands you the guard: the lock *is* yours.
/// Repair the data it protects, call `mark_consistent()` on the guard, and go on. Dropping
/// that guard without marking it consistent makes the lock unusable for everybody
/// ([`NotRecoverable`](AcquireError::NotRecoverable)): the POSIX robust-mutex rule, which
/// keeps anyone from silently using half-updated data.
///
/// Converting to [`Error`] (with `?`) drops the guard, so it makes the lock unrecoverable.
///
/// ```
/// use multiproc::{AcquireError, Lock};
/// let lock = Lock::new().unwrap();
/// let l2 = lock.clone();
/// // A thread that ends while holding the lock (a process killed inside it is the same).
/// std::thread::spawn(move || std::mem::forget(l2.acquire().unwrap())).join().unwrap();
/// match lock.acquire() {
///     Err(AcquireError::OwnerDied(mut guard)) => {
///         // ... repair the data the lock protects, then:
///         guard.mark_consistent();
///     }
///     other => panic!("expected OwnerDied, got {other:?}"),
/// }
/// assert!(lock.try_acquire().is_ok()); // usable again
/// ```
pub enum AcquireError<G> {
    /// The previous holder (thread or process) died, or panicked, while holding the lock.
    /// You hold it now.
    OwnerDied(G),
    /// An earlier holder died and the lock was released without repair; it cannot be used.
    NotRecoverable,
    /// The timeout passed before the lock could be acquired.
    Timeout(Duration),
}

impl<G> AcquireError<G> {
    /// The guard, if the lock was acquired (owner-died case).
    pub fn into_guard(self) -> Option<G> {
        match self {
            AcquireError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> AcquireError<H> {
        match self {
            AcquireError::OwnerDied(g) => AcquireError::OwnerDied(f(g)),
            AcquireError::NotRecoverable => AcquireError::NotRecoverable,
            AcquireError::Timeout(d) => AcquireError::Timeout(d),
        }
    }
}

impl<G> fmt::Debug for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            AcquireError::NotRecoverable => f.write_str("NotRecoverable"),
            AcquireError::Timeout(d) => write!(f, "Timeout({d:?})"),
        }
    }
}

impl<G> fmt::Display for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(_) => Error::OwnerDied.fmt(f),
            AcquireError::NotRecoverable => Error::NotRecoverable.fmt(f),
            AcquireError::Timeout(d) => Error::Timeout(*d).fmt(f),
        }
    }
}

impl<G> std::error::Error for AcquireError<G> {}

impl<G> From<AcquireError<G>> for Error {
    fn from(e: AcquireError<G>) -> Error {
        match e {
            AcquireError::OwnerDied(_) => Error::OwnerDied,
            AcquireError::NotRecoverable => Error::NotRecoverable,
            AcquireError::Timeout(d) => Error::Timeout(d),
        }
    }
}

/// Turns a raw outcome into the public one, building the guard with `make(consistent)`.
pub(crate) fn wrap<G>(
    raw: std::result::Result<bool, RawError>,
    timeout: Option<Duration>,
    make: impl FnOnce(bool) -> G,
) -> std::result::Result<G, AcquireError<G>> {
    match raw {
        Ok(false) => Ok(make(true)),
        Ok(true) => Err(AcquireError::OwnerDied(make(false))),
        Err(RawError::NotRecoverable) => Err(AcquireError::NotRecoverable),
        Err(RawError::Timeout) => Err(AcquireError::Timeout(timeout.unwrap_or_default())),
    }
}

// ---- Lock -----------------------------------------------------------------------------

/// A lock for threads and processes alike (Python's `multiprocessing.Lock`), with a guard.
///
/// It is a futex word in shared memory: acquiring and releasing an uncontended lock are one
/// atomic instruction each. Clones are handles to the same lock; pass a clone to a
/// [`Process`](crate::Process) or a pool task (it is `Serialize`).
///
/// If a holder dies while holding it (even by SIGKILL), the next acquirer learns it within
/// tens of milliseconds, as [`AcquireError::OwnerDied`], with the guard. A holder that
/// panics counts as dead too (std's `Mutex` poisoning), and that is noticed at once.
///
/// It is not re-entrant: a thread that acquires it twice waits for itself (use
/// [`RLock`](crate::RLock)). The process that created it must keep a handle until every
/// process it sent one to has received it: the last handle in the creator unlinks the
/// segment's name, after which nobody can attach (the receiver then fails to deserialize).
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Lock, Process, Value};
///
/// fn add(counter: Value<u64>) {
///     for _ in 0..1000 {
///         *counter.lock().unwrap() += 1;
///     }
/// }
///
/// let counter = Value::new(0u64).unwrap();
/// let procs: Vec<_> = (0..2).map(|_| Process::start(add, counter.clone()).unwrap()).collect();
/// procs.iter().for_each(|p| p.join());
/// assert_eq!(counter.get().unwrap(), 2000);
///
/// let lock = Lock::new().unwrap();
/// let guard = lock.acquire().unwrap();
/// assert!(lock.try_acquire().is_err());
/// drop(guard);
/// assert!(lock.try_acquire().is_ok());
/// ```
#[derive(Clone)]
pub struct Lock {
    cell: Cell,
}

cell_serde!(Lock, super::Kind::Lock);

impl Lock {
    /// A new unlocked lock (in a shared memory segment of its own).
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            cell: Cell::new(Kind::Lock)?,
        })
    }

    pub(crate) fn from_cell(cell: Cell) -> Lock {
        Lock { cell }
    }

    pub(crate) fn cell(&self) -> &Cell {
        &self.cell
    }

    #[inline]
    fn word(&self) -> &AtomicU32 {
        self.cell.word(0)
    }

    /// Blocks until the lock is acquired.
    #[inline]
    pub fn acquire(&self) -> std::result::Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        wrap(raw_lock(self.word(), None), None, |c| self.guard(c))
    }

    /// Blocks at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{AcquireError, Lock};
    /// let lock = Lock::new().unwrap();
    /// let _g = lock.acquire().unwrap();
    /// let t = std::thread::scope(|s| s.spawn(|| {
    ///     matches!(lock.acquire_timeout(Duration::from_millis(20)), Err(AcquireError::Timeout(_)))
    /// }).join().unwrap());
    /// assert!(t);
    /// ```
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        wrap(raw_lock(self.word(), Some(timeout)), Some(timeout), |c| {
            self.guard(c)
        })
    }

    /// Acquires only if the lock is free now (never blocks; does not check whether the
    /// holder is alive: [`acquire_timeout`](Lock::acquire_timeout) does).
    pub fn try_acquire(&self) -> std::result::Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Whether the lock is held now (by anyone). Python's `Lock.locked()`.
    pub fn locked(&self) -> bool {
        raw_locked(self.word())
    }

    fn guard(&self, consistent: bool) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            consistent,
            _not_send: PhantomData,
        }
    }

    pub(crate) fn same(&self, other: &Lock) -> bool {
        self.cell.same(&other.cell)
    }
}

/// Holds a [`Lock`]; releases it when dropped.
///
/// Not `Send`: a lock records the thread that holds it, to detect its death.
///
/// ```
/// let lock = multiproc::Lock::new().unwrap();
/// {
///     let guard = lock.acquire().unwrap();
///     assert!(guard.is_consistent());
///     assert!(lock.locked());
/// } // released here
/// assert!(!lock.locked());
/// ```
///
/// Sending one to another thread does not compile (here, a scoped thread, so the borrow is
/// fine and only `Send` is missing; the same code with a `SemaphoreGuard` compiles):
///
/// ```compile_fail,E0277
/// let lock = multiproc::Lock::new().unwrap();
/// let guard = lock.acquire().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard));
/// });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    consistent: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    /// After [`AcquireError::OwnerDied`]: declares the protected data repaired, so the lock
    /// stays usable after this guard is released.
    pub fn mark_consistent(&mut self) {
        self.consistent = true;
    }

    /// Whether the data is known to be consistent (false after an owner died, until
    /// [`mark_consistent`](LockGuard::mark_consistent)).
    pub fn is_consistent(&self) -> bool {
        self.consistent
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }

    /// Releases without running `Drop` (for `Condition::wait`); returns what it needs to
    /// acquire again.
    pub(crate) fn release_for_wait(self) -> (&'a Lock, bool) {
        let me = std::mem::ManuallyDrop::new(self);
        raw_unlock(me.lock.word());
        (me.lock, me.consistent)
    }

    pub(crate) fn reacquire(
        lock: &'a Lock,
        consistent: bool,
    ) -> std::result::Result<LockGuard<'a>, AcquireError<LockGuard<'a>>> {
        match lock.acquire() {
            Ok(mut g) => {
                g.consistent = consistent;
                Ok(g)
            }
            e => e,
        }
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.consistent {
            raw_make_unrecoverable(self.lock.word());
        } else if std::thread::panicking() {
            raw_abandon(self.lock.word());
        } else {
            raw_unlock(self.lock.word());
        }
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", self.lock)
            .field("consistent", &self.consistent)
            .finish()
    }
}
