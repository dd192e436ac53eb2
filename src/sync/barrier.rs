//! `Barrier`: a rendezvous point for a fixed number of threads or processes (Python's
//! `multiprocessing.Barrier`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::lock::{RawError, raw_lock, raw_unlock};
use super::{CELL, Cell, Kind, LIVENESS_CHECK, cell_serde, deadline, sleep_for};
use crate::error::{Error, Result};
use crate::sys::EventCount;
use crate::sys::shm::{current_tid, task_alive};

// Words: 0 = generation (the futex word; bumped when a round ends, released or broken),
// 1 = arrived this round, 2 = broken flag, 3 = parties, byte 16 = a 64-bit history
// (bit g % 64 set if round g ended broken), word 6 = an internal lock word, words 7 and 8 =
// the event count waiters sleep on (seq, sleepers), notified when the generation moves.
// After the cell: one 32-bit slot per arrival index, the thread id of the party that
// arrived with that index in the current round (written under the internal lock).

/// Blocks each of `parties` callers of [`wait`](Barrier::wait) until all have called it,
/// then releases them together.
///
/// [`abort`](Barrier::abort) breaks it: every waiter, and every later caller until
/// [`reset`](Barrier::reset), gets [`Error::BrokenBarrier`]. A waiter whose timeout passes
/// gets [`Error::Timeout`] and breaks the barrier for the others, as in Python.
///
/// # A party that dies
///
/// A party that dies (even by SIGKILL) *while waiting* breaks the barrier: every waiter,
/// with or without a timeout, gets [`Error::BrokenBarrier`] within tens of milliseconds
/// (each waiter wakes every 10 ms and checks the threads recorded as waiting this round,
/// as a [`Lock`](crate::Lock) checks its holder). A party that dies *before it arrives* is
/// not detected: nothing records who holds a handle, so it looks like a slow party. Give
/// waiters a timeout (or `abort()` from whoever watches the processes) if a party may
/// crash outside `wait`. A party that dies after the round was complete still counts.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Barrier, Process};
/// fn party(b: Barrier) { b.wait().unwrap(); }
/// let b = Barrier::new(3).unwrap();
/// let ps: Vec<_> = (0..2).map(|_| Process::start(party, b.clone()).unwrap()).collect();
/// let index = b.wait().unwrap(); // 0, 1 or 2: the order of arrival
/// assert!(index < 3);
/// ps.iter().for_each(|p| p.join());
/// ```
#[derive(Clone)]
pub struct Barrier {
    cell: Cell,
    /// How many arrival slots follow the cell (at most `parties`; fewer only in a segment
    /// that another process made too small, whose extra waiters then go unchecked).
    slots: usize,
}

cell_serde!(Barrier, super::Kind::Barrier);

/// Holds the barrier's internal lock (state changes are short and never block).
struct State<'a> {
    cell: &'a Cell,
}

impl State<'_> {
    fn gen_word(&self) -> &AtomicU32 {
        self.cell.word(0)
    }
    fn count(&self) -> &AtomicU32 {
        self.cell.word(1)
    }
    fn broken(&self) -> &AtomicU32 {
        self.cell.word(2)
    }
    fn history(&self) -> &AtomicU64 {
        self.cell.word64(16)
    }

    /// Ends the current round: released (`broken == false`) or broken; wakes its waiters.
    fn end_round(&self, broken: bool) {
        let g = self.gen_word().load(Ordering::Relaxed);
        let bit = 1u64 << (g % 64);
        if broken {
            self.history().fetch_or(bit, Ordering::Relaxed);
        } else {
            self.history().fetch_and(!bit, Ordering::Relaxed);
        }
        self.count().store(0, Ordering::Relaxed);
        self.gen_word().store(g.wrapping_add(1), Ordering::Release);
        EventCount::new(self.cell.word(7), self.cell.word(8)).notify_all();
    }

    /// Breaks the barrier: the current round's waiters and later callers fail.
    fn break_it(&self) {
        self.broken().store(1, Ordering::Relaxed);
        if self.count().load(Ordering::Relaxed) > 0 {
            self.end_round(true);
        }
    }
}

impl Drop for State<'_> {
    fn drop(&mut self) {
        raw_unlock(self.cell.word(6));
    }
}

/// A timed-out internal lock as the caller's timeout.
fn timed_out(e: Error, timeout: Option<Duration>) -> Error {
    match e {
        Error::Timeout(_) => Error::Timeout(timeout.unwrap_or_default()),
        e => e,
    }
}

impl Barrier {
    /// A barrier for `parties` callers (at least 1).
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        let seg = Cell::segment(CELL + 4 * parties as usize)?;
        let cell = Cell::init(&seg, 0, Kind::Barrier);
        cell.word(3).store(parties, Ordering::Release);
        Ok(Barrier::from_cell(cell))
    }

    fn from_cell(cell: Cell) -> Barrier {
        // The segment may come from another process: never index past its end.
        let room = cell.shm().len().saturating_sub(CELL) / 4;
        let slots = room.min(cell.word(3).load(Ordering::Relaxed) as usize);
        Barrier { cell, slots }
    }

    /// The slot of arrival index `i`, if the segment has one.
    fn slot(&self, i: u32) -> Option<&AtomicU32> {
        ((i as usize) < self.slots)
            .then(|| self.cell.shm().mapping().atomic_u32(CELL + 4 * i as usize))
    }

    /// Under the internal lock, in round `g`: whether a party waiting in it has died.
    fn a_waiter_died(&self, st: &State<'_>) -> bool {
        let me = current_tid();
        let n = st.count().load(Ordering::Relaxed);
        (0..n).filter_map(|i| self.slot(i)).any(|s| {
            let tid = s.load(Ordering::Relaxed);
            tid != 0 && tid != me && !task_alive(tid)
        })
    }

    /// Takes the internal lock, waiting at most until `deadline` (a live holder keeps it for
    /// a few instructions; only a stopped process or foreign bytes keep it longer).
    fn state(&self, deadline: Option<Instant>) -> Result<State<'_>> {
        let state = State { cell: &self.cell };
        // The internal lock is held only for a few instructions; if a process died inside
        // them, its round is in an unknown state: break the barrier (reset repairs it).
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match raw_lock(self.cell.word(6), timeout) {
            Ok(false) => {}
            Ok(true) => state.broken().store(1, Ordering::Relaxed),
            Err(RawError::Timeout) => return Err(Error::Timeout(Duration::ZERO)),
            // This barrier never marks it so: the segment's bytes are not a barrier's,
            // which only another process can have caused.
            Err(RawError::NotRecoverable) => {
                return Err(Error::Protocol(
                    "the barrier's shared memory is corrupted (its internal lock is unusable)"
                        .into(),
                ));
            }
        }
        Ok(state)
    }

    /// Waits until `parties` callers are waiting; returns this caller's arrival index
    /// (0 to `parties - 1`; exactly one caller gets `parties - 1`).
    pub fn wait(&self) -> Result<u32> {
        self.wait_inner(None)
    }

    /// As [`wait`](Barrier::wait), for at most `timeout`. On timeout the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> Result<u32> {
        let deadline = deadline(timeout);
        let (g, index) = {
            let st = self.state(deadline).map_err(|e| timed_out(e, timeout))?;
            if st.broken().load(Ordering::Relaxed) != 0 {
                return Err(Error::BrokenBarrier);
            }
            let g = st.gen_word().load(Ordering::Relaxed);
            let index = st.count().fetch_add(1, Ordering::Relaxed);
            // Wrapping: the count is in shared memory, which another process may have
            // filled with anything.
            if index.wrapping_add(1) == self.parties() {
                st.end_round(false);
                return Ok(index);
            }
            if let Some(s) = self.slot(index) {
                s.store(current_tid(), Ordering::Relaxed);
            }
            (g, index)
        };
        let gen_word = self.cell.word(0);
        let mut checked = Instant::now();
        loop {
            if gen_word.load(Ordering::Acquire) != g {
                let broken = self.cell.word64(16).load(Ordering::Relaxed) & (1 << (g % 64));
                return if broken != 0 {
                    Err(Error::BrokenBarrier)
                } else {
                    Ok(index)
                };
            }
            if checked.elapsed() >= LIVENESS_CHECK {
                checked = Instant::now();
                let st = self.state(deadline).map_err(|e| timed_out(e, timeout))?;
                if st.gen_word().load(Ordering::Relaxed) == g && self.a_waiter_died(&st) {
                    st.break_it();
                    return Err(Error::BrokenBarrier);
                }
            }
            match sleep_for(deadline, Some(LIVENESS_CHECK)) {
                Some(sleep) => {
                    let until = sleep.and_then(|s| Instant::now().checked_add(s));
                    EventCount::new(self.cell.word(7), self.cell.word(8)).sleep_until(
                        until,
                        None,
                        || gen_word.load(Ordering::Acquire) != g,
                    );
                }
                None => {
                    // Past the deadline: one look at the lock, then give up.
                    let st = self
                        .state(Some(Instant::now()))
                        .map_err(|e| timed_out(e, timeout))?;
                    if st.gen_word().load(Ordering::Relaxed) == g {
                        st.break_it();
                        return Err(Error::Timeout(timeout.unwrap_or_default()));
                    }
                }
            }
        }
    }

    /// Breaks the barrier: current and later waiters get [`Error::BrokenBarrier`] until
    /// [`reset`](Barrier::reset).
    pub fn abort(&self) {
        // A corrupt barrier (see `state`) cannot be broken further; its waiters get the
        // error.
        if let Ok(st) = self.state(None) {
            st.break_it();
        }
    }

    /// Returns the barrier to its initial state; current waiters get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let Ok(st) = self.state(None) else {
            return; // corrupt (see `state`): nothing to reset
        };
        if st.count().load(Ordering::Relaxed) > 0 {
            st.end_round(true);
        }
        st.broken().store(0, Ordering::Relaxed);
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.cell.word(3).load(Ordering::Relaxed)
    }

    /// How many callers are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.cell.word(1).load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.cell.word(2).load(Ordering::Relaxed) != 0
    }
}
