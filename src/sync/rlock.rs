//! `RLock`: a re-entrant lock (Python's `multiprocessing.RLock`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::lock::{AcquireError, wrap};
use super::{Cell, Kind, cell_serde};
use crate::error::Result;
use crate::sys::lock::{
    raw_abandon, raw_lock, raw_make_unrecoverable, raw_owned_by_me, raw_unlock,
};

/// A lock that the thread holding it may acquire again; it is released when every guard
/// is dropped. Works across threads and processes, and reports a dead holder like
/// [`Lock`](crate::Lock).
///
/// ```
/// let lock = multiproc::RLock::new().unwrap();
/// let outer = lock.acquire().unwrap();
/// let inner = lock.acquire().unwrap(); // same thread: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!lock.locked());
/// ```
#[derive(Clone)]
pub struct RLock {
    cell: Cell,
}

cell_serde!(RLock, super::Kind::RLock);

// Words: 0 = lock word (holder tid), 1 = depth, 2 = 1 while the data is inconsistent.
impl RLock {
    /// A new unlocked re-entrant lock.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            cell: Cell::new(Kind::RLock)?,
        })
    }

    fn from_cell(cell: Cell) -> RLock {
        RLock { cell }
    }

    fn word(&self) -> &AtomicU32 {
        self.cell.word(0)
    }

    fn depth_word(&self) -> &AtomicU32 {
        self.cell.word(1)
    }

    fn inconsistent(&self) -> &AtomicU32 {
        self.cell.word(2)
    }

    /// Blocks until acquired (at once if this thread holds it already).
    pub fn acquire(&self) -> std::result::Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.acquire_inner(None)
    }

    /// Blocks at most `timeout`.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.acquire_inner(Some(timeout))
    }

    /// Acquires only if free now or held by this thread.
    pub fn try_acquire(&self) -> std::result::Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.acquire_inner(Some(Duration::ZERO))
    }

    fn acquire_inner(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        let guard = || RLockGuard {
            lock: self,
            _not_send: PhantomData,
        };
        if raw_owned_by_me(self.word()) {
            // Only the holder touches the depth.
            self.depth_word().fetch_add(1, Ordering::Relaxed);
            return Ok(guard());
        }
        let raw = raw_lock(self.word(), timeout);
        // The guard is built only once the lock is ours: dropping one releases a level.
        wrap(raw, timeout, |consistent| {
            self.depth_word().store(1, Ordering::Relaxed);
            self.inconsistent()
                .store(u32::from(!consistent), Ordering::Relaxed);
            guard()
        })
    }

    /// Whether anyone holds it.
    pub fn locked(&self) -> bool {
        self.word().load(Ordering::Relaxed) != 0
    }

    /// How many guards the holder has (0 if free); meaningful to the holder.
    pub fn depth(&self) -> u32 {
        if self.locked() {
            self.depth_word().load(Ordering::Relaxed)
        } else {
            0
        }
    }
}

/// One level of holding an [`RLock`]; the lock is released when the last one is dropped.
///
/// ```
/// let lock = multiproc::RLock::new().unwrap();
/// let a = lock.acquire().unwrap();
/// let b = lock.acquire().unwrap();
/// drop(a);
/// assert!(lock.locked()); // `b` still holds it
/// drop(b);
/// assert!(!lock.locked());
/// ```
///
/// Not `Send`: the lock counts its holder's re-entries per thread. Sending a guard to
/// another thread does not compile:
///
/// ```compile_fail,E0277
/// let lock = multiproc::RLock::new().unwrap();
/// let guard = lock.acquire().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard));
/// });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// After an owner died: declares the protected data repaired.
    pub fn mark_consistent(&mut self) {
        self.lock.inconsistent().store(0, Ordering::Relaxed);
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        if self.lock.depth_word().fetch_sub(1, Ordering::Relaxed) == 1 {
            if self.lock.inconsistent().load(Ordering::Relaxed) != 0 {
                raw_make_unrecoverable(self.lock.word());
            } else if std::thread::panicking() {
                raw_abandon(self.lock.word());
            } else {
                raw_unlock(self.lock.word());
            }
        }
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("lock", self.lock)
            .finish()
    }
}
