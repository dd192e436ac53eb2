//! The robust lock word: one `AtomicU32` in (possibly shared) memory that names the thread
//! holding it, so that a waiter can tell a dead holder from a slow one. `sync::Lock`,
//! `sync::RLock`, the barrier's internal lock and the queue ring's producer and consumer
//! locks are all this word. The protocol is in `README.md` beside this file.
//!
//! The word needs no `unsafe` (it is an atomic; only the tests' fork helper has some); the
//! owner's identity and liveness come from `sys::shm` (a fork-aware thread id cache;
//! `/proc` with a `kill(tid, 0)` fallback).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::futex::futex_wake;
use super::shm::{current_tid, task_alive};
use super::wait::{Backoff, FutexWord, Spin};

/// How long a blocked waiter sleeps at most before it re-checks that the holder it waits
/// for is alive. Bounds how late a death is noticed.
pub(crate) const LIVENESS_CHECK: Duration = Duration::from_millis(10);

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
fn settle<W: FutexWord>(word: &W, v: u32, me: u32) -> Option<std::result::Result<bool, RawError>> {
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

/// What a blocked acquirer needs besides the word: when to look at whether the holder
/// lives, whether it does, and how long it may sleep. [`OsPatience`] is the real one (the
/// clock, `/proc`); the loom model below substitutes a deterministic one, so that the very
/// protocol of [`lock_slow`] is model-checked.
pub(crate) trait Patience {
    /// The spin before the first sleep.
    const SPIN: Spin;
    /// Called each time round with the holder seen: whether to check that it lives now.
    fn check_due(&mut self, owner: u32) -> bool;
    /// Whether thread `tid` lives.
    fn alive(&self, tid: u32) -> bool;
    /// The longest next sleep, or `None` once the deadline has passed.
    fn next_sleep(&self) -> Option<Duration>;
}

/// The real [`Patience`]: checks a holder seen for [`LIVENESS_CHECK`] through `/proc`
/// (`kill(0)` fallback), sleeps at most that long, stops at `deadline`.
struct OsPatience {
    deadline: Option<Instant>,
    watched: u32,
    since: Instant,
}

impl Patience for OsPatience {
    const SPIN: Spin = Spin::LOCK;
    fn check_due(&mut self, owner: u32) -> bool {
        let now = Instant::now();
        if owner != self.watched {
            self.watched = owner;
            self.since = now;
            false
        } else if now.duration_since(self.since) >= LIVENESS_CHECK {
            self.since = now;
            true
        } else {
            false
        }
    }
    fn alive(&self, tid: u32) -> bool {
        task_alive(tid)
    }
    fn next_sleep(&self) -> Option<Duration> {
        match self.deadline {
            None => Some(LIVENESS_CHECK),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left.min(LIVENESS_CHECK)),
                _ => None,
            },
        }
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
    let mut patience = OsPatience {
        deadline: timeout.and_then(|d| Instant::now().checked_add(d)),
        watched: 0,
        since: Instant::now(),
    };
    lock_slow(word, me, &mut patience)
}

/// The contended acquisition of `word` by thread `me`: a short spin, then sleeps on the
/// word, checking now and then that the holder lives and taking over from one that died.
fn lock_slow<W: FutexWord, P: Patience>(
    word: &W,
    me: u32,
    patience: &mut P,
) -> std::result::Result<bool, RawError> {
    // A short spin: the holder of a short critical section on another core is usually
    // about to release.
    let mut backoff = Backoff::new(P::SPIN, None);
    while backoff.snooze() {
        let v = word.load(Ordering::Relaxed);
        if v == 0 {
            if word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(false);
            }
        } else if let Some(outcome) = settle(word, v, me) {
            return outcome;
        }
    }
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
        if patience.check_due(owner) && owner != me && !patience.alive(owner) {
            // Take the lock over from the dead holder.
            if word
                .compare_exchange(v, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(true);
            }
            continue;
        }
        let Some(sleep) = patience.next_sleep() else {
            return Err(RawError::Timeout);
        };
        if v & WAITERS == 0
            && word
                .compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        word.wait(v | WAITERS, Some(sleep));
    }
}

/// Releases the lock word, which the calling thread holds.
///
/// Only a word that still names this thread is released: if a waiter wrongly judged us dead
/// and took the lock over (a reused thread id, see `README.md` beside this file), it stays theirs.
#[inline]
pub(crate) fn raw_unlock(word: &AtomicU32) {
    unlock_as(word, current_tid())
}

/// [`raw_unlock`] by thread `me`.
#[inline]
fn unlock_as<W: FutexWord>(word: &W, me: u32) {
    if word
        .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        .is_err()
    {
        unlock_slow(word, me);
    }
}

#[cold]
fn unlock_slow<W: FutexWord>(word: &W, me: u32) {
    let mut v = word.load(Ordering::Relaxed);
    while v & TID_MASK == me {
        match word.compare_exchange(v, 0, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => {
                if v & WAITERS != 0 {
                    word.wake(1);
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

/// Whether the calling thread holds the word (for re-entrant acquisition).
#[inline]
pub(crate) fn raw_owned_by_me(word: &AtomicU32) -> bool {
    word.load(Ordering::Relaxed) & TID_MASK == current_tid()
}

/// Whether the word is held (by anyone).
pub(crate) fn raw_locked(word: &AtomicU32) -> bool {
    word.load(Ordering::Relaxed) != 0
}

/// A held lock word that is released (only if it still names this thread) when dropped,
/// also while unwinding. For users whose protected data is consistent at every instant (the
/// queue ring commits with one atomic store), so a panic needs no "abandoned" mark.
///
/// `!Send`: the word names the acquiring thread; releasing it from another would be refused.
#[must_use = "the lock is released as soon as this is dropped"]
pub(crate) struct Held<'a> {
    word: &'a AtomicU32,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        raw_unlock(self.word);
    }
}

/// Acquires `word` like [`raw_lock`], giving up at `deadline`; the result also says whether
/// it was taken over from a holder that died. The clock is read only if the word is busy.
#[inline]
pub(crate) fn lock_until(
    word: &AtomicU32,
    deadline: Option<Instant>,
) -> std::result::Result<(Held<'_>, bool), RawError> {
    let me = current_tid();
    let died = if word
        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        false
    } else {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        raw_lock_slow(word, me, timeout)?
    };
    Ok((
        Held {
            word,
            _not_send: PhantomData,
        },
        died,
    ))
}

/// Runs `f` in a forked child of this (multi-threaded) test process and returns its exit
/// code. `f` must only touch atomics and make system calls: another thread may have held
/// the allocator's lock at the fork.
#[cfg(test)]
pub(crate) fn in_forked_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs only `f` (atomics and system calls, see above) and `_exit`s,
    // so it never needs a lock another thread held at the fork.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let code = f();
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(code) }
        }
        pid => {
            let status = super::process::wait(pid as u32).expect("waitpid");
            status
                .code
                .unwrap_or_else(|| panic!("forked child ended with {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::shm::alive_from;

    #[test]
    fn a_word_is_released_only_if_it_still_names_us() {
        let word = AtomicU32::new(0);
        let (held, died) = lock_until(&word, None).unwrap();
        assert!(!died);
        assert!(raw_owned_by_me(&word));
        // A waiter that misjudged us dead took it over: neither releasing nor abandoning
        // may undo its hold.
        let other = WAITERS | ((1 << 22) + 3);
        word.store(other, Ordering::Relaxed);
        raw_unlock(&word);
        raw_abandon(&word);
        drop(held);
        assert_eq!(word.load(Ordering::Relaxed), other);
        assert_eq!(
            raw_lock(&word, Some(Duration::ZERO)),
            Err(RawError::Timeout)
        );
    }

    #[test]
    fn a_forked_child_has_its_own_thread_id() {
        let parent = current_tid();
        let word = AtomicU32::new(0);
        let code = in_forked_child(|| {
            let me = current_tid();
            let real = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            // The child's copy of `word` is its own; what matters is whom it names.
            let _ = raw_lock(&word, None);
            let named = word.load(Ordering::Relaxed) & TID_MASK;
            i32::from(me != real) | i32::from(me == parent) << 1 | i32::from(named != real) << 2
        });
        assert_eq!(
            code, 0,
            "bits: 1 stale tid, 2 parent's tid, 4 word names another"
        );
    }

    #[test]
    fn a_dead_owner_is_recognised_even_without_proc() {
        // What `kill(tid, 0)` says when `/proc` shows nothing (hidden, or not mounted).
        assert!(
            alive_from(current_tid(), None),
            "a living thread judged dead"
        );
        let (r, w) = rustix::pipe::pipe().unwrap();
        let code = in_forked_child(|| {
            let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
            i32::from(rustix::io::write(&w, &pid.to_ne_bytes()) != Ok(4))
        });
        assert_eq!(code, 0);
        let mut b = [0u8; 4];
        assert_eq!(rustix::io::read(&r, &mut b), Ok(4));
        let dead = u32::from_ne_bytes(b); // exited and reaped
        assert!(
            !alive_from(dead, None),
            "a reaped child {dead} judged alive"
        );
        assert!(!task_alive(dead));
    }

    #[test]
    fn a_child_that_dies_holding_the_word_is_taken_over() {
        let fd = crate::sys::mem::memfd("lock-test", 4096).unwrap();
        let map = crate::sys::SharedMapping::map(&fd, 4096).unwrap();
        let word = map.atomic_u32(0);
        let code = in_forked_child(|| {
            std::mem::forget(lock_until(word, None).map_err(|_| ()));
            i32::from(word.load(Ordering::Relaxed) == 0)
        });
        assert_eq!(code, 0);
        assert_ne!(word.load(Ordering::Relaxed), 0, "the child left it held");
        assert_eq!(raw_lock(word, Some(Duration::from_secs(3))), Ok(true));
        assert!(raw_owned_by_me(word));
        raw_unlock(word);
        assert!(!raw_locked(word));
    }
}

/// Loom models of the lock word: [`lock_slow`] and [`unlock_as`] as they are, over a loom
/// word (`sys::wait::loom_tests::ModelWord`), with thread ids and deaths given by the model.
/// Fast paths are the same CASes as the first ones of `lock_slow`, so the models start
/// there.
#[cfg(test)]
mod loom_tests {
    use super::*;
    use crate::sys::wait::loom_tests::{ModelWord, model};
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicU32 as LoomU32};

    /// Deterministic patience: looks at the holder's liveness on every second look, never
    /// times out; `dead[tid]` says who has died.
    struct ModelPatience {
        dead: Arc<[AtomicBool; 4]>,
        looked: bool,
    }

    impl Patience for ModelPatience {
        const SPIN: Spin = Spin::rounds(1);
        fn check_due(&mut self, _owner: u32) -> bool {
            self.looked = !self.looked;
            !self.looked
        }
        fn alive(&self, tid: u32) -> bool {
            !self.dead[tid as usize].load(Ordering::SeqCst)
        }
        fn next_sleep(&self) -> Option<Duration> {
            Some(LIVENESS_CHECK)
        }
    }

    fn lock(word: &ModelWord, me: u32, dead: &Arc<[AtomicBool; 4]>) -> bool {
        let mut p = ModelPatience {
            dead: dead.clone(),
            looked: false,
        };
        lock_slow(word, me, &mut p).expect("the model has no deadline or poison")
    }

    fn nobody_dead() -> Arc<[AtomicBool; 4]> {
        Arc::new(std::array::from_fn(|_| AtomicBool::new(false)))
    }

    #[test]
    fn loom_two_threads_exclude_each_other_and_a_sleeper_is_always_woken() {
        // Waits sleep until woken (no timeouts): a release that forgets a sleeper deadlocks.
        model(|| {
            let word = Arc::new(ModelWord::new(0));
            let count = Arc::new(LoomU32::new(0));
            let dead = nobody_dead();
            let threads: Vec<_> = (1..=2)
                .map(|me| {
                    let (word, count, dead) = (word.clone(), count.clone(), dead.clone());
                    loom::thread::spawn(move || {
                        assert!(!lock(&word, me, &dead), "nobody died");
                        // A non-atomic increment: only exclusion keeps it whole.
                        let c = count.load(Ordering::Relaxed);
                        loom::thread::yield_now();
                        count.store(c + 1, Ordering::Relaxed);
                        unlock_as(&*word, me);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(count.load(Ordering::Relaxed), 2);
            assert_eq!(word.load(Ordering::Relaxed), 0);
        });
    }

    #[test]
    fn loom_a_holder_that_dies_is_taken_over_with_its_writes() {
        model(|| {
            let word = Arc::new(ModelWord::with_timeouts(0));
            let data = Arc::new(LoomU32::new(0));
            let dead = nobody_dead();
            let dying = {
                let (word, data, dead) = (word.clone(), data.clone(), dead.clone());
                loom::thread::spawn(move || {
                    let died = lock(&word, 1, &dead);
                    data.store(7, Ordering::Relaxed);
                    // Dies holding the lock: never releases; the kernel's exit is the mark.
                    dead[1].store(true, Ordering::SeqCst);
                    died
                })
            };
            // Contend once thread 1 holds it (its death races with our liveness checks).
            while word.load(Ordering::Relaxed) == 0 {
                loom::thread::yield_now();
            }
            let died = lock(&word, 2, &dead);
            assert!(!dying.join().unwrap());
            assert!(
                died,
                "a dead holder's lock was taken without the owner-died outcome"
            );
            // Its writes are visible to the new holder.
            assert_eq!(data.load(Ordering::Relaxed), 7);
            assert_eq!(word.load(Ordering::Relaxed) & TID_MASK, 2);
            unlock_as(&*word, 2);
            assert_eq!(word.load(Ordering::Relaxed), 0);
        });
    }

    #[test]
    fn loom_a_release_by_a_holder_judged_dead_leaves_the_new_holder_alone() {
        model(|| {
            let word = Arc::new(ModelWord::with_timeouts(0));
            let dead = nobody_dead();
            let misjudged = {
                let (word, dead) = (word.clone(), dead.clone());
                loom::thread::spawn(move || {
                    lock(&word, 1, &dead);
                    // Its tid reads as dead (reused, or /proc lied), then it releases.
                    dead[1].store(true, Ordering::SeqCst);
                    loom::thread::yield_now();
                    unlock_as(&*word, 1);
                })
            };
            lock(&word, 2, &dead);
            loom::thread::yield_now();
            assert_eq!(
                word.load(Ordering::Relaxed) & TID_MASK,
                2,
                "another thread's release undid our hold"
            );
            unlock_as(&*word, 2);
            misjudged.join().unwrap();
        });
    }
}
