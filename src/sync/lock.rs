//! `Lock`: a mutual-exclusion lock shared by threads and processes, like
//! `multiprocessing.Lock`, that reports a dead holder instead of deadlocking.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Cell, Kind, LIVENESS_CHECK, SPIN, cell_serde, deadline, sleep_for};
use crate::error::{Error, Result};
use crate::sys::shm::{current_tid, task_alive};
use crate::sys::{futex_wait, futex_wake};

// ---- the raw protocol on one futex word (see README.md) -------------------------------

/// Set while some thread may be sleeping on the word (it must be woken on release).
pub(crate) const WAITERS: u32 = 1 << 31;
/// The holder's thread id (Linux tids are below 2^22).
pub(crate) const TID_MASK: u32 = 0x3fff_ffff;
/// A holder died and the next one released the lock without repairing: unusable.
pub(crate) const NOT_RECOVERABLE: u32 = TID_MASK;
/// The holder panicked while holding the lock (its guard was dropped while unwinding): the
/// next acquirer takes it over as from a dead owner. Rust's `Mutex` poisoning, made robust.
pub(crate) const ABANDONED: u32 = TID_MASK - 1;

/// Why a raw acquisition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawError {
    NotRecoverable,
    Timeout,
}

/// Acquires the lock word. `Ok(false)`: acquired; `Ok(true)`: acquired from a holder that
/// died (the data it guarded may be inconsistent).
#[inline]
pub(crate) fn raw_lock(
    word: &AtomicU32,
    timeout: Option<Duration>,
) -> std::result::Result<bool, RawError> {
    let me = current_tid();
    if word
        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return Ok(false);
    }
    raw_lock_slow(word, me, timeout)
}

/// What a waiter does about a word that is neither free nor held by a live owner:
/// `Some(outcome)` to stop waiting, `None` to go on (including after a lost race).
fn settle(word: &AtomicU32, v: u32, me: u32) -> Option<std::result::Result<bool, RawError>> {
    match v & TID_MASK {
        NOT_RECOVERABLE => Some(Err(RawError::NotRecoverable)),
        // The holder panicked: take over at once, as from a dead owner.
        ABANDONED => word
            .compare_exchange(v, me | (v & WAITERS), Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Ok(true)),
        _ => None,
    }
}

#[cold]
fn raw_lock_slow(
    word: &AtomicU32,
    me: u32,
    timeout: Option<Duration>,
) -> std::result::Result<bool, RawError> {
    if timeout == Some(Duration::ZERO) {
        let v = word.load(Ordering::Relaxed);
        return settle(word, v, me).unwrap_or(Err(RawError::Timeout));
    }
    let deadline = deadline(timeout);
    // A short spin: the holder of a short critical section on another core is usually
    // about to release.
    for _ in 0..SPIN {
        let v = word.load(Ordering::Relaxed);
        if v == 0 {
            if word
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(false);
            }
        } else if let Some(outcome) = settle(word, v, me) {
            return outcome;
        }
        std::hint::spin_loop();
    }
    let mut watched = 0;
    let mut since = Instant::now();
    loop {
        let v = word.load(Ordering::Relaxed);
        if v == 0 {
            // We may not be the only sleeper: keep WAITERS so our release wakes the next.
            if word
                .compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(false);
            }
            continue;
        }
        if let Some(outcome) = settle(word, v, me) {
            return outcome;
        }
        let owner = v & TID_MASK;
        if owner == ABANDONED {
            continue; // lost the takeover race; look again
        }
        let now = Instant::now();
        if owner != watched {
            watched = owner;
            since = now;
        } else if now.duration_since(since) >= LIVENESS_CHECK {
            since = now;
            if owner != me && !task_alive(owner) {
                // Take the lock over from the dead holder.
                if word
                    .compare_exchange(v, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(true);
                }
                continue;
            }
        }
        let Some(sleep) = sleep_for(deadline, Some(LIVENESS_CHECK)) else {
            return Err(RawError::Timeout);
        };
        if v & WAITERS == 0
            && word
                .compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        futex_wait(word, v | WAITERS, sleep);
    }
}

/// Releases the lock word, which the calling thread holds.
///
/// Only a word that still names this thread is released: if a waiter wrongly judged us dead
/// and took the lock over (a reused thread id, see README.md), it stays theirs.
#[inline]
pub(crate) fn raw_unlock(word: &AtomicU32) {
    let me = current_tid();
    if word
        .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        .is_err()
    {
        raw_unlock_slow(word, me);
    }
}

#[cold]
fn raw_unlock_slow(word: &AtomicU32, me: u32) {
    let mut v = word.load(Ordering::Relaxed);
    while v & TID_MASK == me {
        match word.compare_exchange_weak(v, 0, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => {
                if v & WAITERS != 0 {
                    futex_wake(word, 1);
                }
                return;
            }
            Err(now) => v = now,
        }
    }
}

/// Releases the lock word for good: a holder died and nobody repaired the data.
pub(crate) fn raw_make_unrecoverable(word: &AtomicU32) {
    word.store(NOT_RECOVERABLE, Ordering::Release);
    futex_wake(word, i32::MAX as u32);
}

/// Releases the lock word held by this thread as abandoned (the holder is panicking): the
/// next acquirer gets the owner-died outcome at once.
pub(crate) fn raw_abandon(word: &AtomicU32) {
    let me = current_tid();
    let mut v = word.load(Ordering::Relaxed);
    while v & TID_MASK == me {
        match word.compare_exchange_weak(
            v,
            ABANDONED | (v & WAITERS),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                if v & WAITERS != 0 {
                    futex_wake(word, 1);
                }
                return;
            }
            Err(now) => v = now,
        }
    }
}

/// Whether the word is held (by anyone).
pub(crate) fn raw_locked(word: &AtomicU32) -> bool {
    word.load(Ordering::Relaxed) != 0
}

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
