//! `Semaphore` and `BoundedSemaphore` (Python's `multiprocessing.Semaphore` and
//! `BoundedSemaphore`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Cell, Kind, cell_serde, deadline};
use crate::error::{Error, Result};
use crate::sys::{EventCount, Spin};

// Words: 0 = count, 1 = sleepers, 2 = bound (BoundedSemaphore only), 3 = the event count's
// sequence (the futex word).

fn event(cell: &Cell) -> EventCount<'_> {
    EventCount::new(cell.word(3), cell.word(1))
}

fn try_take(count: &AtomicU32) -> bool {
    let mut c = count.load(Ordering::Relaxed);
    while c > 0 {
        match count.compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => c = now,
        }
    }
    false
}

fn take(cell: &Cell, timeout: Option<Duration>) -> bool {
    let count = cell.word(0);
    if try_take(count) {
        return true;
    }
    if timeout == Some(Duration::ZERO) {
        return false;
    }
    event(cell).wait_until(Spin::SHORT, deadline(timeout), None, || try_take(count))
}

fn give(cell: &Cell, n: u32, bound: Option<u32>) -> Result<()> {
    let count = cell.word(0);
    match bound {
        None => {
            count.fetch_add(n, Ordering::SeqCst);
        }
        Some(max) => {
            let mut c = count.load(Ordering::Relaxed);
            loop {
                if c.checked_add(n).is_none_or(|new| new > max) {
                    return Err(Error::InvalidArgument(format!(
                        "BoundedSemaphore released too many times (its bound is {max})"
                    )));
                }
                match count.compare_exchange_weak(c, c + n, Ordering::SeqCst, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(now) => c = now,
                }
            }
        }
    }
    event(cell).notify(n);
    Ok(())
}

/// A counter of permits for threads and processes alike: `acquire` takes one (blocking
/// while there is none), dropping the guard or `release` gives one back.
///
/// # A holder that dies
///
/// A semaphore has no owner: a count in shared memory does not say who took its permits
/// (`release` by anyone is allowed, as in Python). So a process that dies holding a permit
/// (SIGKILL, abort, a crash) never gives it back: the count stays one lower for good, and
/// nobody is told. There is no `OwnerDied` here, unlike [`Lock`](crate::Lock); a waiter
/// for that permit waits until someone else releases one, so where a holder may crash, use
/// [`acquire_timeout`](Semaphore::acquire_timeout), or have whoever watches the processes
/// `release()` for a dead one. A *thread* that panics holding a guard does give the permit
/// back (the guard's `Drop` runs while unwinding).
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Process, Semaphore};
/// fn worker(sem: Semaphore) {
///     let _permit = sem.acquire();
///     // at most two processes run here at once
/// }
/// let sem = Semaphore::new(2).unwrap();
/// let ps: Vec<_> = (0..3).map(|_| Process::start(worker, sem.clone()).unwrap()).collect();
/// ps.iter().for_each(|p| p.join());
/// assert_eq!(sem.get_value(), 2);
/// ```
#[derive(Clone)]
pub struct Semaphore {
    cell: Cell,
}

cell_serde!(Semaphore, super::Kind::Semaphore);

impl Semaphore {
    /// A semaphore with `value` permits.
    pub fn new(value: u32) -> Result<Semaphore> {
        let cell = Cell::new(Kind::Semaphore)?;
        cell.word(0).store(value, Ordering::Release);
        Ok(Semaphore { cell })
    }

    fn from_cell(cell: Cell) -> Semaphore {
        Semaphore { cell }
    }

    /// Takes a permit, waiting as long as needed.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        take(&self.cell, None);
        self.guard()
    }

    /// Takes a permit if one comes within `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sem = multiproc::Semaphore::new(0).unwrap();
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_none());
    /// sem.release();
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_some());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        take(&self.cell, Some(timeout)).then(|| self.guard())
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Adds a permit (Python's `release()`), waking one waiter.
    pub fn release(&self) {
        let _ = give(&self.cell, 1, None);
    }

    /// Adds `n` permits (Python's `release(n)`).
    pub fn release_n(&self, n: u32) {
        let _ = give(&self.cell, n, None);
    }

    /// The number of free permits now.
    pub fn get_value(&self) -> u32 {
        self.cell.word(0).load(Ordering::Relaxed)
    }

    fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard {
            cell: &self.cell,
            bounded: false,
        }
    }
}

/// A [`Semaphore`] whose count may not exceed its initial value: releasing more is an
/// error (Python raises `ValueError`).
///
/// Like [`Semaphore`], it has no owner: a permit held by a process that dies is lost and
/// nobody is told (see [*A holder that dies*](Semaphore#a-holder-that-dies)).
///
/// ```
/// let sem = multiproc::BoundedSemaphore::new(1).unwrap();
/// let permit = sem.acquire();
/// drop(permit);
/// assert!(sem.release().is_err()); // would exceed 1
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    cell: Cell,
}

cell_serde!(BoundedSemaphore, super::Kind::BoundedSemaphore);

impl BoundedSemaphore {
    /// A semaphore with `value` permits, never more.
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        let cell = Cell::new(Kind::BoundedSemaphore)?;
        cell.word(2).store(value, Ordering::Relaxed);
        cell.word(0).store(value, Ordering::Release);
        Ok(BoundedSemaphore { cell })
    }

    fn from_cell(cell: Cell) -> BoundedSemaphore {
        BoundedSemaphore { cell }
    }

    /// Takes a permit, waiting as long as needed.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        take(&self.cell, None);
        self.guard()
    }

    /// Takes a permit if one comes within `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        take(&self.cell, Some(timeout)).then(|| self.guard())
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Gives a permit back; an error if that would exceed the initial value.
    pub fn release(&self) -> Result<()> {
        give(&self.cell, 1, Some(self.bound()))
    }

    /// The number of free permits now.
    pub fn get_value(&self) -> u32 {
        self.cell.word(0).load(Ordering::Relaxed)
    }

    /// The initial (and maximal) value.
    pub fn bound(&self) -> u32 {
        self.cell.word(2).load(Ordering::Relaxed)
    }

    fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard {
            cell: &self.cell,
            bounded: true,
        }
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], given back when dropped.
///
/// ```
/// let sem = multiproc::Semaphore::new(1).unwrap();
/// drop(sem.acquire());          // taken and given back
/// assert_eq!(sem.get_value(), 1);
/// sem.acquire().forget();       // taken for good (Python: acquire() without release())
/// assert_eq!(sem.get_value(), 0);
/// sem.release();
/// ```
///
/// A permit is not tied to a thread (as in Python, any thread may release a semaphore), so
/// it may be sent to another one, unlike a [`LockGuard`](crate::LockGuard):
///
/// ```
/// let sem = multiproc::Semaphore::new(1).unwrap();
/// let permit = sem.acquire();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(permit));
/// });
/// assert_eq!(sem.get_value(), 1);
/// ```
#[must_use = "the permit is given back as soon as the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    cell: &'a Cell,
    bounded: bool,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken (Python: an `acquire()` with no matching `release()`).
    pub fn forget(self) {
        std::mem::forget(self)
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let bound = self
            .bounded
            .then(|| self.cell.word(2).load(Ordering::Relaxed));
        // A permit we took always fits back under the bound, unless someone released
        // extra meanwhile; that error belongs to that release, not to us.
        let _ = give(self.cell, 1, bound);
    }
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}
