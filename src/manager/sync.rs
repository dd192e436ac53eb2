//! Lock, RLock, Event, Semaphore, Condition and Barrier proxies: synchronization served by
//! a manager, so processes on several machines can share them (Python's
//! `Manager().Lock()` and friends).
//!
//! A lock is owned by the *thread* that acquired it (each thread has its own connection
//! to the server): guards are `!Send` and release on drop. A thread or process that dies
//! holding one loses its connection, the server releases the lock, and the next
//! acquirer's guard says so ([`owner_died`](LockGuard::owner_died)).

use std::marker::PhantomData;
use std::time::Duration;

use super::client::{ObjRef, expect_bool, expect_ok, expect_u64, impl_proxy, unexpected, wait_for};
use super::protocol::{Kind, Op, Response, Wait};
use crate::error::{Error, Result};

fn acquired(r: Response<'_>) -> Result<Option<bool>> {
    match r {
        Response::Acquired { owner_died } => Ok(Some(owner_died)),
        Response::Bool(false) => Ok(None),
        r => Err(unexpected(r)),
    }
}

/// A held lock of a [`Lock`], [`RLock`] or [`Condition`]; releases it when dropped.
/// `!Send`: the lock belongs to the thread that took it.
///
/// Sending one to another thread does not compile:
///
/// ```compile_fail,E0277
/// fn release_elsewhere(guard: multiproc::manager::LockGuard<'_>) {
///     std::thread::scope(|s| {
///         s.spawn(move || drop(guard));
///     });
/// }
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    obj: &'a ObjRef,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Whether the previous holder died (disconnected) while holding the lock: the data it
    /// protects may be half-updated.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::builder().thread(true).start().unwrap();
    /// let lock = m.lock("l").unwrap();
    /// let l2 = lock.clone();
    /// // A thread that ends holding the lock (a killed process is the same).
    /// std::thread::spawn(move || std::mem::forget(l2.acquire().unwrap())).join().unwrap();
    /// assert!(lock.acquire().unwrap().owner_died());
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // A failure here means the server is gone, and the lock with it.
        let _ = self.obj.call_mut(Op::Release, |tc, r| {
            tc.holding = tc.holding.saturating_sub(1);
            expect_ok(r)
        });
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockGuard({:?})", self.obj)
    }
}

fn acquire_on(obj: &ObjRef, wait: Wait) -> Result<Option<LockGuard<'_>>> {
    let got = obj.call_mut(Op::Acquire(wait), |tc, r| {
        let got = acquired(r)?;
        if got.is_some() {
            tc.holding += 1;
        }
        Ok(got)
    })?;
    Ok(got.map(|owner_died| LockGuard {
        obj,
        owner_died,
        _not_send: PhantomData,
    }))
}

macro_rules! lock_methods {
    () => {
        /// The object's name on the manager.
        pub fn name(&self) -> &str {
            &self.obj.name
        }

        /// Waits for the lock and takes it.
        pub fn acquire(&self) -> Result<LockGuard<'_>> {
            acquire_on(&self.obj, Wait::Forever).map(|g| g.expect("an unbounded wait succeeds"))
        }

        /// Takes the lock if it comes free within `timeout` (`Ok(None)` if not).
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
            acquire_on(&self.obj, wait_for(Some(timeout)))
        }

        /// Takes the lock if it is free now.
        pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
            acquire_on(&self.obj, Wait::No)
        }

        /// Whether anyone holds it.
        pub fn locked(&self) -> Result<bool> {
            self.obj.call(Op::Locked, expect_bool)
        }
    };
}

/// A mutual-exclusion lock served by a [`Manager`](super::Manager). Not reentrant:
/// acquiring it again from the thread that holds it is an
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) (it would deadlock).
///
/// ```standalone_crate
/// # multiproc::init();
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let lock = m.lock("l").unwrap();
/// {
///     let _g = lock.acquire().unwrap();
///     assert!(lock.locked().unwrap());
/// }
/// assert!(!lock.locked().unwrap());
/// ```
pub struct Lock {
    pub(crate) obj: ObjRef,
}

impl Lock {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Lock { obj }
    }
    lock_methods!();
}
impl_proxy!(Lock, Kind::Lock, "lock".to_string());

/// A reentrant lock served by a [`Manager`](super::Manager): the thread holding it may
/// acquire it again; it is released when the last guard is dropped.
///
/// ```standalone_crate
/// # multiproc::init();
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let r = m.rlock("r").unwrap();
/// let a = r.acquire().unwrap();
/// let b = r.acquire().unwrap();
/// drop(b);
/// assert!(r.locked().unwrap());
/// drop(a);
/// assert!(!r.locked().unwrap());
/// ```
pub struct RLock {
    pub(crate) obj: ObjRef,
}

impl RLock {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        RLock { obj }
    }
    lock_methods!();
}
impl_proxy!(RLock, Kind::RLock, "rlock".to_string());

/// An event flag served by a [`Manager`](super::Manager).
///
/// ```standalone_crate
/// # multiproc::init();
/// use std::time::Duration;
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let e = m.event("go").unwrap();
/// assert!(!e.wait_timeout(Duration::from_millis(1)).unwrap());
/// e.set().unwrap();
/// assert!(e.is_set().unwrap());
/// e.wait().unwrap();
/// ```
pub struct Event {
    pub(crate) obj: ObjRef,
}

impl Event {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Event { obj }
    }

    /// The object's name on the manager.
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.obj.call(Op::EventSet, expect_ok)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.obj.call(Op::EventClear, expect_ok)
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.obj.call(Op::EventIsSet, expect_bool)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.obj
            .call(Op::EventWait(Wait::Forever), expect_bool)
            .map(|_| ())
    }

    /// Waits at most `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.obj
            .call(Op::EventWait(wait_for(Some(timeout))), expect_bool)
    }
}
impl_proxy!(Event, Kind::Event, "event".to_string());

/// A counting semaphore served by a [`Manager`](super::Manager) (Python's `Semaphore` and,
/// made with [`Manager::bounded_semaphore`](super::Manager::bounded_semaphore),
/// `BoundedSemaphore`). Like Python's, a permit has no owner: any thread may release it,
/// and a process that dies holding one does not give it back.
///
/// ```standalone_crate
/// # multiproc::init();
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let s = m.semaphore("slots", 1).unwrap();
/// s.acquire().unwrap();
/// assert!(!s.try_acquire().unwrap());
/// s.release().unwrap();
/// assert_eq!(s.value().unwrap(), 1);
/// ```
pub struct Semaphore {
    pub(crate) obj: ObjRef,
}

impl Semaphore {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Semaphore { obj }
    }

    /// The object's name on the manager.
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// Takes a permit, waiting for one.
    pub fn acquire(&self) -> Result<()> {
        self.obj
            .call(Op::Acquire(Wait::Forever), expect_bool)
            .map(|_| ())
    }

    /// Takes a permit if one comes free within `timeout`; returns whether it did.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.obj
            .call(Op::Acquire(wait_for(Some(timeout))), expect_bool)
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Result<bool> {
        self.obj.call(Op::Acquire(Wait::No), expect_bool)
    }

    /// Gives a permit back. A bounded semaphore refuses to pass its initial value
    /// ([`Error::InvalidArgument`](crate::Error::InvalidArgument)).
    pub fn release(&self) -> Result<()> {
        self.release_n(1)
    }

    /// Gives `n` permits back.
    pub fn release_n(&self, n: u32) -> Result<()> {
        self.obj.call(Op::SemRelease(n), expect_ok)
    }

    /// The number of free permits.
    pub fn value(&self) -> Result<u64> {
        self.obj.call(Op::SemValue, expect_u64)
    }
}
impl_proxy!(Semaphore, Kind::Semaphore, "semaphore".to_string());

/// A condition variable with its own lock, served by a [`Manager`](super::Manager).
///
/// ```standalone_crate
/// # multiproc::init();
/// use std::time::Duration;
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let c = m.condition("c").unwrap();
/// let c2 = c.clone();
/// let t = std::thread::spawn(move || {
///     let g = c2.acquire().unwrap();
///     c2.notify_all(&g).unwrap();
/// });
/// let g = c.acquire().unwrap();
/// // Wakes up when notified (or after the timeout, if the notifier came first).
/// let _ = c.wait_timeout(&g, Duration::from_millis(200)).unwrap();
/// drop(g);
/// t.join().unwrap();
/// ```
pub struct Condition {
    pub(crate) obj: ObjRef,
}

impl Condition {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Condition { obj }
    }
    lock_methods!();

    fn check<'a>(&self, guard: &LockGuard<'a>) -> Result<()> {
        if std::ptr::eq(guard.obj, &self.obj) || guard.obj.name == self.obj.name {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "the guard is not of this condition's lock".into(),
            ))
        }
    }

    /// Releases the lock, waits to be notified, and takes the lock back.
    pub fn wait(&self, guard: &LockGuard<'_>) -> Result<()> {
        self.check(guard)?;
        self.obj
            .call(Op::CondWait(Wait::Forever), expect_bool)
            .map(|_| ())
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; returns whether it was notified.
    /// The lock is held again either way.
    pub fn wait_timeout(&self, guard: &LockGuard<'_>, timeout: Duration) -> Result<bool> {
        self.check(guard)?;
        self.obj
            .call(Op::CondWait(wait_for(Some(timeout))), expect_bool)
    }

    /// Waits until `pred()` holds (checked with the lock held).
    pub fn wait_for(&self, guard: &LockGuard<'_>, mut pred: impl FnMut() -> bool) -> Result<()> {
        while !pred() {
            self.wait(guard)?;
        }
        Ok(())
    }

    /// Wakes one waiter.
    pub fn notify(&self, guard: &LockGuard<'_>) -> Result<()> {
        self.notify_n(guard, 1)
    }

    /// Wakes up to `n` waiters.
    pub fn notify_n(&self, guard: &LockGuard<'_>, n: u32) -> Result<()> {
        self.check(guard)?;
        self.obj.call(Op::CondNotify(n), expect_ok)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self, guard: &LockGuard<'_>) -> Result<()> {
        self.check(guard)?;
        self.obj.call(Op::CondNotifyAll, expect_ok)
    }
}
impl_proxy!(Condition, Kind::Condition, "condition".to_string());

/// A barrier for a fixed number of parties, served by a [`Manager`](super::Manager).
///
/// ```standalone_crate
/// # multiproc::init();
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let b = m.barrier("start", 2).unwrap();
/// let b2 = b.clone();
/// let t = std::thread::spawn(move || b2.wait().unwrap());
/// let mine = b.wait().unwrap();
/// let theirs = t.join().unwrap();
/// assert_eq!(mine + theirs, 1); // arrival indices 0 and 1
/// ```
pub struct Barrier {
    pub(crate) obj: ObjRef,
}

impl Barrier {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Barrier { obj }
    }

    /// The object's name on the manager.
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// Waits until every party has arrived; returns this party's arrival index
    /// (`0..parties`). A broken barrier is an [`Error::BrokenBarrier`](crate::Error::BrokenBarrier).
    pub fn wait(&self) -> Result<u32> {
        self.wait_on(Wait::Forever)
    }

    /// Like [`wait`](Self::wait); after `timeout` the barrier breaks (for every party).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_on(wait_for(Some(timeout)))
    }

    fn wait_on(&self, w: Wait) -> Result<u32> {
        self.obj
            .call(Op::BarrierWait(w), expect_u64)
            .map(|n| n as u32)
    }

    /// Breaks the barrier: every waiter, and every later `wait`, fails.
    pub fn abort(&self) -> Result<()> {
        self.obj.call(Op::BarrierAbort, expect_ok)
    }

    /// Back to the initial state; current waiters fail with `BrokenBarrier`.
    pub fn reset(&self) -> Result<()> {
        self.obj.call(Op::BarrierReset, expect_ok)
    }

    fn info(&self) -> Result<(u32, u32, bool)> {
        self.obj.call(Op::BarrierInfo, |r| match r {
            Response::BarrierInfo(p, n, b) => Ok((p, n, b)),
            r => Err(unexpected(r)),
        })
    }

    /// The number of parties.
    pub fn parties(&self) -> Result<u32> {
        Ok(self.info()?.0)
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.info()?.1)
    }

    /// Whether it is broken.
    pub fn broken(&self) -> Result<bool> {
        Ok(self.info()?.2)
    }
}
impl_proxy!(Barrier, Kind::Barrier, "barrier".to_string());
