//! A robust lock word biased to the first thread that takes it: while only that thread
//! uses the lock, taking and releasing it are two plain stores, no locked instruction.
//!
//! A queue's side (its producers, or its consumers) is usually one thread of one process.
//! Taking the robust lock word (`sys::lock`) costs a compare-and-swap, and releasing it
//! another; each waits until every store before it has reached the other CPU (the ring's
//! frame and `P`, whose cache lines the consumer has just read). Without them, two
//! processes streaming 64-byte messages move 8 % more (`multiproc bench --filter
//! queue.msgs_64B`, alternated runs of both builds). So the lock is *biased*:
//!
//! * Three words in shared memory: the robust lock word, `bias` (0: never biased; a
//!   thread id: biased to that thread; with [`REVOKING`] or [`REVOKED`] set: revoked) and
//!   `busy` (1 while the biased thread is inside its critical section; written only by it).
//! * **The biased thread** takes the lock by storing `busy = 1` and then reading `bias`:
//!   still its own id, it holds the lock; it releases it by storing `busy = 0`. No fence.
//! * **Anyone else** takes the robust lock word. Holding it, it finds the lock biased to
//!   another thread and revokes the bias: it stores `bias |= REVOKING`, then runs
//!   `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which makes every running thread of every
//!   registered process execute a full memory barrier (a thread that is not running has
//!   passed one in its context switch). So either the biased thread's `busy = 1` store is
//!   visible to the revoker after that call, or the biased thread's read of `bias` comes
//!   after its barrier and sees the revocation (an asymmetric Dekker: the fence that
//!   `busy = 1; read bias` would need is paid, once, by the revoker). The revoker then waits
//!   for `busy == 0`, stores `REVOKED`, and from then on everyone uses the lock word.
//! * A thread takes the bias only while holding the lock word, only if `bias` is 0, and
//!   only if its process has registered for that `membarrier` command (once per process;
//!   a process that cannot never biases). A revoked lock is never biased again, so a side
//!   with many users pays for one revocation in its lifetime.
//!
//! **Deaths.** A biased thread killed inside its critical section leaves `busy = 1`. The
//! revoker checks the thread every [`LIVENESS_CHECK`] (as the lock word's waiters check a
//! holder) and clears `busy` once it is gone; the data is consistent at every instant for
//! the lock's one user (the queue commits with single stores). A revoker killed before it
//! stored `REVOKED` leaves `REVOKING`: the next holder of the lock word revokes again (the
//! barrier and the wait are idempotent). A biased thread that exits normally leaves
//! `busy = 0`; its id may be reused by a new thread, which then simply is the biased one
//! (once its own process has registered: the fast path asks).
//!
//! Not modelled by loom (it has no `membarrier`); `ring::mpmc`'s tests run the revocation
//! with threads and processes racing, and with a dead biased holder.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering::*, compiler_fence};
use std::time::{Duration, Instant};

use super::lock::{Held, LIVENESS_CHECK, RawError, lock_until};
use super::shm::{current_tid, fork_generation, task_alive};

/// `bias` flag: a revoker has announced the revocation; the biased thread may still be
/// inside its critical section.
const REVOKING: u32 = 1 << 31;
/// `bias` flag: revoked, and the biased thread is out: only the lock word counts.
const REVOKED: u32 = 1 << 30;
/// The thread id in `bias` (Linux thread ids stay below 2^22).
const TID: u32 = REVOKED - 1;

/// Why a biased lock was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BiasError {
    /// From the lock word: a timeout, or an unusable word.
    Raw(RawError),
    /// The barrier that revokes the bias failed (`membarrier` refused in this process).
    Barrier(rustix::io::Errno),
}

/// The three words of a biased lock (see the module docs), in shared memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BiasedLock<'a> {
    word: &'a AtomicU32,
    bias: &'a AtomicU32,
    busy: &'a AtomicU32,
}

/// A held [`BiasedLock`], released when dropped (also while unwinding). `!Send`: it is
/// the holding thread's.
#[must_use = "the lock is released as soon as this is dropped"]
pub(crate) enum BiasedHeld<'a> {
    /// Held through the bias: `busy` is cleared on release.
    Biased(&'a AtomicU32, PhantomData<*const ()>),
    /// Held through the lock word.
    Locked(#[allow(dead_code, reason = "held for its release on drop")] Held<'a>),
}

impl Drop for BiasedHeld<'_> {
    #[inline]
    fn drop(&mut self) {
        if let BiasedHeld::Biased(busy, _) = self {
            // `Release`: a revoker that reads 0 here sees the whole critical section.
            busy.store(0, Release);
        }
    }
}

impl<'a> BiasedLock<'a> {
    /// The lock made of these three words (zero in a fresh mapping).
    #[inline]
    pub(crate) fn new(word: &'a AtomicU32, bias: &'a AtomicU32, busy: &'a AtomicU32) -> Self {
        BiasedLock { word, bias, busy }
    }

    /// Takes the lock, giving up at `deadline`; taken over from a dead holder if need be
    /// (not reported: this lock's users keep their data consistent at every instant).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<BiasedHeld<'a>, BiasError> {
        let me = current_tid();
        // `registered()` too: a thread that has the biased thread's id without being it
        // (the id reused by another process, or this image after an `exec`) registers
        // before it may hold the lock this way, so a revoker's barrier reaches it.
        if self.bias.load(Relaxed) == me && registered() {
            self.busy.store(1, Relaxed);
            // Only the compiler is kept from swapping the store and the load: a revoker's
            // `membarrier` orders them on the CPU (see the module docs).
            compiler_fence(SeqCst);
            if self.bias.load(Acquire) == me {
                // Everything before this thread's last release is its own, so nothing
                // needs acquiring: the bias was set by this thread while it held the word.
                return Ok(BiasedHeld::Biased(self.busy, PhantomData));
            }
            self.busy.store(0, Release);
        }
        self.lock_slow(me, deadline)
    }

    #[cold]
    fn lock_slow(&self, me: u32, deadline: Option<Instant>) -> Result<BiasedHeld<'a>, BiasError> {
        let (held, _owner_died) = lock_until(self.word, deadline).map_err(BiasError::Raw)?;
        let bias = self.bias.load(Acquire);
        if bias == 0 {
            if registered() {
                // Later calls of this thread take the fast path. Nobody else can be inside
                // meanwhile: anyone else takes the word first and revokes.
                self.bias.store(me, Release);
            }
        } else if bias & REVOKED == 0 && bias != me {
            self.revoke(bias & TID, deadline)?;
        }
        Ok(BiasedHeld::Locked(held))
    }

    /// Ends the bias to `holder` (the caller holds the lock word): announce, barrier, wait
    /// until `holder` is out of its critical section (or dead), then mark it revoked.
    fn revoke(&self, holder: u32, deadline: Option<Instant>) -> Result<(), BiasError> {
        self.bias.store(holder | REVOKING, SeqCst);
        barrier().map_err(BiasError::Barrier)?;
        let mut watched = Instant::now();
        let mut backoff = super::wait::Backoff::new(super::Spin::SHORT, deadline);
        while self.busy.load(Acquire) != 0 {
            if watched.elapsed() >= LIVENESS_CHECK {
                if !task_alive(holder) {
                    self.busy.store(0, Relaxed);
                    break;
                }
                watched = Instant::now();
            }
            if !backoff.snooze() {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    // Still `REVOKING`: the next holder of the word finishes the job.
                    return Err(BiasError::Raw(RawError::Timeout));
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        self.bias.store(holder | REVOKED, Release);
        Ok(())
    }

    /// The thread the lock is biased to now, if any (for tests).
    #[cfg(test)]
    pub(crate) fn biased_to(&self) -> Option<u32> {
        let b = self.bias.load(Relaxed);
        (b != 0 && b & (REVOKING | REVOKED) == 0).then_some(b)
    }
}

/// `fork generation + 1` once this process asked to register for the global expedited
/// `membarrier`, with [`UNREGISTERED`] set if it could not (0: not asked yet). A child of
/// `fork` asks again: registration belongs to a process image's memory.
static REGISTERED: AtomicU32 = AtomicU32::new(0);
const UNREGISTERED: u32 = 1 << 31;

/// Whether this process is registered, so that its threads may take a bias.
pub(crate) fn registered() -> bool {
    let generation = fork_generation().wrapping_add(1) & TID;
    let r = REGISTERED.load(Relaxed);
    if r & TID == generation {
        return r & UNREGISTERED == 0;
    }
    let ok = rustix::thread::membarrier(rustix::thread::MembarrierCommand::RegisterGlobalExpedited)
        .is_ok();
    REGISTERED.store(generation | if ok { 0 } else { UNREGISTERED }, Relaxed);
    ok
}

/// A full memory barrier on every running thread of every registered process (the
/// biased thread's process registered before it took the bias).
fn barrier() -> Result<(), rustix::io::Errno> {
    rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited)
}
