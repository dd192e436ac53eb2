//! The one way this crate waits: a bounded spin, then a sleep on an event count.
//!
//! Every blocking wait (queue, process pool, futures, semaphore, condition, event, barrier)
//! is "until some condition holds", where the condition is published by another thread or
//! process. [`EventCount`] turns such a condition into a futex sleep without lost
//! wake-ups, and [`Backoff`] is the single spin policy every waiter runs first.
//!
//! # The event count
//!
//! Two 32-bit words, anywhere (a struct field, or shared memory between processes): `seq`,
//! the futex word, and `sleepers`. A waiter
//!
//! 1. announces itself: `sleepers += 1`, then *flags* `seq` (a compare-and-swap that sets
//!    its low bit, [`FLAGGED`], written even if another waiter set it), a `SeqCst` fence;
//!    the flagged value is its *token*;
//! 2. re-checks its condition; if it holds, it leaves (`sleepers -= 1`);
//! 3. otherwise sleeps on `seq` while it still equals the token, then `sleepers -= 1`.
//!
//! A notifier publishes (any store), then a `SeqCst` fence, then reads `sleepers` and
//! `seq`; only if someone is announced and `seq` is flagged does it add 1 (a new value,
//! the flag cleared) and `FUTEX_WAKE` everyone. By the two fences, either the waiter's
//! re-check sees the publication, or the notifier sees the waiter's count and flag (or a
//! later value of `seq`: a notify since then has woken every sleeper on the earlier one),
//! so the waiter's sleep returns at once or is woken. The token comes from a `SeqCst`
//! compare-and-swap, which acquires: a token that already includes a notifier's change
//! also sees what was published before it. Nobody asleep means no system call: a notify is one fence and two loads.
//!
//! The flag is what lets a notify skip the wake of a sleeper that is already woken but
//! not yet running (still counted in `sleepers`): beside CPU hogs that can take a time
//! slice, and a queue's producer made a `FUTEX_WAKE` per message meanwhile. A wake of
//! only `n` sleepers (a semaphore's, a condition's `notify(n)`) adds 2 instead: the value
//! changes, and the flag stays for those it did not wake.
//!
//! A waiter that dies (SIGKILL) while announced leaves `sleepers` one too high and `seq`
//! perhaps flagged. That costs one `FUTEX_WAKE` that wakes nobody, never a missed wake-up.
//!
//! # The spin policy
//!
//! A cross-CPU futex wake-up costs 50–80 µs on small VMs, far more than a short task, so a
//! waiter first spins: `spin_loop` hints (cheap, for a result nanoseconds away), then
//! `yield_now` (so the thread it waits for can run on a crowded 2-core machine). The spin is
//! bounded by a round count *and* by wall-clock time ([`SPIN_BUDGET`], and never past the
//! caller's deadline): under load each yield may take a whole scheduler time slice, and an
//! unbounded spin there collapses. A single yield that took [`CROWDED`] (200 µs) ends the
//! spin at once: it handed the CPU to another thread for a slice, and the next would too,
//! while a futex sleeper, once woken, is scheduled promptly. The process remembers it for
//! [`CROWD_MEMORY`] (50 ms), and its waiters skip their yields meanwhile. Each yield is
//! timed by itself, so the one yield of a wait that then succeeds counts too: a ping-pong
//! whose every wait ends after one yield otherwise never sees that each of those yields
//! gave a CPU hog its whole slice (1.4 ms a round trip on one CPU beside a hog, 9 µs
//! once it sleeps instead). A thread that may run on one CPU only skips the hints: there
//! the thread it waits for cannot run until it yields. crossbeam-utils' `Backoff` is
//! the model; it has no time bound, so this is a few lines of our own.
//!
//! # Model checking
//!
//! The protocol is written against [`FutexWord`], so the loom models at the end of this file
//! run it over loom's atomics, with the futex modelled by a mutex and a condition variable
//! (the kernel's hash-bucket lock). Those models have no timeouts: a lost wake-up is a
//! deadlock, which loom reports.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::futex::{futex_wait, futex_wake};

/// The low bit of `seq`: a waiter is about to sleep on this value (see the module docs).
const FLAGGED: u32 = 1;

/// A wake of every sleeper (the kernel reads the count as an int).
const ALL: u32 = i32::MAX as u32;

/// The longest any waiter spins before it sleeps, whatever its round count.
pub(crate) const SPIN_BUDGET: Duration = Duration::from_millis(2);

/// A yield that took this long gave the CPU to another thread for a time slice: the
/// machine is crowded, and every further yield hands a slice to someone else while the
/// thread we wait for may be ready (under two CPU hogs, a manager client that yielded 64
/// times made 1,300 calls a second instead of 250,000). A waiter that sees one stops
/// spinning and sleeps on the futex: a woken thread is scheduled promptly. An uncrowded
/// yield takes about a microsecond, a partner on the same CPU doing a short piece of
/// work some tens.
pub(crate) const CROWDED: Duration = Duration::from_micros(200);

/// How long a slow yield is remembered, process-wide: meanwhile waiters skip their yields
/// and sleep after their hints. A yield on a crowded CPU not only hands a slice away; under
/// the kernel's EEVDF scheduler it also pushes the yielder's deadline out, so that once
/// woken it waits behind the hogs too.
const CROWD_MEMORY: Duration = Duration::from_millis(50);

/// Until when this process deems the machine crowded: nanoseconds after [`epoch`].
static CROWDED_UNTIL: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Whether this thread may run on one CPU only. Then what it waits for is likely on that
/// CPU too, and a `spin_loop` hint only delays it.
fn pinned_to_one_cpu() -> bool {
    rustix::thread::sched_getaffinity(None).is_ok_and(|set| set.count() == 1)
}

/// [`pinned_to_one_cpu`], asked again every [`PINNED_RECHECK`] spins of this thread that
/// reach a snooze (a system call per wait would cost more than many waits do; a thread's
/// affinity rarely changes, and a stale answer only costs a spin its best order).
fn pinned_cached() -> bool {
    thread_local! {
        static PINNED: std::cell::Cell<(u32, bool)> = const { std::cell::Cell::new((0, false)) };
    }
    PINNED.with(|c| {
        let (left, pinned) = c.get();
        if left > 0 {
            c.set((left - 1, pinned));
            return pinned;
        }
        let pinned = pinned_to_one_cpu();
        c.set((PINNED_RECHECK, pinned));
        pinned
    })
}

/// Whether the party that publishes `cpu` as its own (from
/// [`current_cpu`](super::sched::current_cpu)) runs on this thread's CPU while this thread
/// could run elsewhere. Then spinning or yielding for it keeps both on one CPU, and one of
/// them should move ([`move_off`](super::sched::move_off)): the scheduler rarely moves a
/// thread that never sleeps, and a futex wake-up put a sleeping one back beside the other.
pub(crate) fn shares_cpu_with(cpu: u32) -> bool {
    super::sched::current_cpu() == cpu && !pinned_cached()
}

/// How many snoozing spins reuse one answer of [`pinned_cached`].
const PINNED_RECHECK: u32 = 64;

fn nanos_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// How long a waiter stays awake: `spins` rounds of `spin_loop`, then yields up to
/// `rounds` rounds in all, and never longer than [`SPIN_BUDGET`] (nor past a deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spin {
    /// Rounds of `spin_loop` first.
    pub(crate) spins: u32,
    /// Rounds in all; those past `spins` each `yield_now`.
    pub(crate) rounds: u32,
    /// Whether the hint rounds grow: round `r` runs `2^min(r, 6)` hints instead of one, so
    /// a waiter looks at the other side's cache line less and less often. For a lock word,
    /// whose holder needs that very line back to release and to take it again.
    pub(crate) grow: bool,
}

impl Spin {
    /// Straight to sleep (a wait for something slow, such as a notify from user code).
    pub(crate) const NONE: Spin = Spin {
        spins: 0,
        rounds: 0,
        grow: false,
    };
    /// A lock or semaphore: a few hints, for a holder on another core about to release.
    pub(crate) const SHORT: Spin = Spin {
        spins: 64,
        rounds: 64,
        grow: false,
    };
    /// A lock word (`sys::lock`): 16 growing rounds, about 700 hints (some 20 µs here).
    /// Two processes taking turns on a lock as fast as they can run 2.3× as many critical
    /// sections as with 64 single hints (`multiproc bench --filter lock.incr_2proc`): the
    /// holder keeps the line between its release and its next acquisition instead of
    /// losing it to every look of the waiter.
    pub(crate) const LOCK: Spin = Spin {
        spins: 16,
        rounds: 16,
        grow: true,
    };

    /// The `spin_loop` hints of hint round `r`.
    fn hints(&self, r: u32) -> u32 {
        if self.grow { 1 << r.min(6) } else { 1 }
    }

    /// `rounds` rounds: the first 64 are `spin_loop` hints, the rest yield.
    pub(crate) const fn rounds(rounds: u32) -> Spin {
        Spin {
            spins: if rounds < 64 { rounds } else { 64 },
            rounds,
            grow: false,
        }
    }
}

/// One waiter's progress through its [`Spin`].
#[derive(Debug)]
pub(crate) struct Backoff {
    spin: Spin,
    round: u32,
    deadline: Option<Instant>,
    /// When the spin must end; set at the first clock check (most waits end before one).
    end: Option<Instant>,
    /// The clock at the check just before this round's yield, to see how long it took.
    yield_from: Option<Instant>,
    /// Where slow yields are remembered ([`CROWDED_UNTIL`]; `None` in tests of the other
    /// rules, a word of their own in tests of this one).
    crowd: Option<&'static AtomicU64>,
    /// The spin ended on a slow yield.
    crowded: bool,
    /// The clock read just after the last yield, for the next round's check: the waiter
    /// only looks at its condition in between, so reading it again would measure nothing
    /// new (and a clock read costs tens of ns on a VM: half of an idle worker's time).
    after: Option<Instant>,
}

impl Backoff {
    /// A fresh spin that never outlasts `deadline`.
    pub(crate) fn new(spin: Spin, deadline: Option<Instant>) -> Backoff {
        Backoff {
            spin,
            round: 0,
            deadline,
            end: None,
            yield_from: None,
            crowd: Some(&CROWDED_UNTIL),
            crowded: false,
            after: None,
        }
    }

    /// As [`new`](Self::new), without the [`CROWDED`] rule: a test of the other rules
    /// must not depend on how loaded the machine is.
    #[cfg(test)]
    fn ignoring_crowds(spin: Spin, deadline: Option<Instant>) -> Backoff {
        Backoff {
            crowd: None,
            ..Backoff::new(spin, deadline)
        }
    }

    /// As [`new`](Self::new), remembering slow yields in `memory` (a test's own word, so
    /// that tests running beside it neither see nor set it).
    #[cfg(test)]
    fn remembering_in(spin: Spin, memory: &'static AtomicU64) -> Backoff {
        Backoff {
            crowd: Some(memory),
            ..Backoff::new(spin, None)
        }
    }

    /// Waits a moment (a hint or a yield). `false` once the spin is spent: time to sleep.
    pub(crate) fn snooze(&mut self) -> bool {
        let mut r = self.round;
        if r == 0 && self.spin.spins > 0 && pinned_cached() {
            // Alone on one CPU, a hint only delays what it waits for: the thread that
            // would publish cannot run until this one yields or sleeps. (A pool pinned to
            // one CPU spent most of each round trip in its parties' hint rounds.)
            r = self.spin.spins;
        }
        if r >= self.spin.rounds {
            self.round = r;
            return false;
        }
        // The clock every 16 hints (a hint is nanoseconds) and at every yield (a yield is a
        // system call, and on a loaded machine may take a whole time slice).
        if (r % 16 == 15 || r >= self.spin.spins) && self.out_of_time(r >= self.spin.spins) {
            self.round = self.spin.rounds;
            return false;
        }
        if r < self.spin.spins {
            for _ in 0..self.spin.hints(r) {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
            let now = Instant::now();
            self.after_yield(now);
            self.after = Some(now);
        }
        self.round = r + 1;
        true
    }

    /// A yield that began at `yield_from` ended at `now`: if it took [`CROWDED`] or more, the
    /// spin ends and the process remembers the crowd.
    fn after_yield(&mut self, now: Instant) {
        let (Some(memory), Some(from)) = (self.crowd, self.yield_from) else {
            return;
        };
        if now.duration_since(from) >= CROWDED {
            self.crowded = true;
            let until = nanos_since_epoch(now) + CROWD_MEMORY.as_nanos() as u64;
            memory.fetch_max(until, Ordering::Relaxed);
        }
    }

    /// Whether the spin must end now: its time is up, the last yield took [`CROWDED`] or
    /// more, or (`yielding`, about to yield) the process saw a crowd lately.
    fn out_of_time(&mut self, yielding: bool) -> bool {
        let now = self.after.take().unwrap_or_else(Instant::now);
        let end = *self.end.get_or_insert_with(|| {
            let end = now + SPIN_BUDGET;
            self.deadline.map_or(end, |d| d.min(end))
        });
        if yielding && let Some(memory) = self.crowd {
            if memory.load(Ordering::Relaxed) > nanos_since_epoch(now) {
                self.crowded = true;
            }
            self.yield_from = Some(now);
        }
        self.crowded || now >= end
    }
}

/// A 32-bit word a thread can sleep on: what the event count needs of its memory.
///
/// [`AtomicU32`] is the real one (a futex, shared between processes where the word is in
/// a shared mapping); the loom models implement it over loom's atomics.
pub(crate) trait FutexWord {
    /// As `AtomicU32::load`.
    fn load(&self, order: Ordering) -> u32;
    /// As `AtomicU32::fetch_add` (wrapping).
    fn fetch_add(&self, v: u32, order: Ordering) -> u32;
    /// As `AtomicU32::fetch_sub` (wrapping).
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32;
    /// As `AtomicU32::compare_exchange` (the lock word's transitions).
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// Sleeps while the word equals `expected`, at most `timeout`; may return early.
    fn wait(&self, expected: u32, timeout: Option<Duration>);
    /// Wakes up to `n` threads sleeping on the word.
    fn wake(&self, n: u32);
    /// A fence in the memory model of these atomics.
    fn fence(order: Ordering);
}

impl FutexWord for AtomicU32 {
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    #[inline]
    fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_add(self, v, order)
    }
    #[inline]
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_sub(self, v, order)
    }
    #[inline]
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }
    fn wait(&self, expected: u32, timeout: Option<Duration>) {
        futex_wait(self, expected, timeout)
    }
    fn wake(&self, n: u32) {
        futex_wake(self, n);
    }
    #[inline]
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order)
    }
}

/// What a waiter read when it announced itself: it sleeps only while `seq` still says so.
#[derive(Debug)]
#[must_use = "a token is given back by `wait` or `cancel_wait`, or the waiter stays counted"]
pub(crate) struct Token(u32);

/// An event count over two words (see the module docs): `seq` and `sleepers`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventCount<'a, W: FutexWord = AtomicU32> {
    seq: &'a W,
    sleepers: &'a W,
}

impl<'a, W: FutexWord> EventCount<'a, W> {
    /// The event count made of these two words (zero, or left by earlier users of them).
    #[inline]
    pub(crate) fn new(seq: &'a W, sleepers: &'a W) -> EventCount<'a, W> {
        EventCount { seq, sleepers }
    }

    /// Announces a waiter. Check the condition after this, then [`wait`](Self::wait) or
    /// [`cancel_wait`](Self::cancel_wait).
    #[inline]
    pub(crate) fn prepare_wait(&self) -> Token {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // Flag the value this waiter will sleep on (see the module docs). Written even when
        // another waiter has flagged it already: a notifier's read after its fence must
        // see this waiter's own write (or a later one), as the fences promise only for
        // writes made before a fence in the same thread.
        let mut seen = self.seq.load(Ordering::Relaxed);
        let token = loop {
            let flagged = seen | FLAGGED;
            match self
                .seq
                .compare_exchange(seen, flagged, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break flagged,
                Err(now) => seen = now,
            }
        };
        W::fence(Ordering::SeqCst);
        Token(token)
    }

    /// Whether a waiter is announced (asleep, or about to be): a hint, stale at once.
    #[inline]
    pub(crate) fn has_sleepers(&self) -> bool {
        self.sleepers.load(Ordering::Relaxed) != 0
    }

    /// Withdraws a waiter whose condition held after all.
    #[inline]
    pub(crate) fn cancel_wait(&self, token: Token) {
        let _ = token;
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Sleeps until a notify after `token` was taken, `deadline`, or a spurious wake-up
    /// (callers re-check their condition), then withdraws the waiter. Returns whether
    /// there was a notify since the token was taken.
    pub(crate) fn wait(&self, token: Token, deadline: Option<Instant>) -> bool {
        let expected = token.0;
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if timeout != Some(Duration::ZERO) {
            self.seq.wait(expected, timeout);
        }
        self.cancel_wait(token);
        self.seq.load(Ordering::Acquire) != expected
    }

    /// Wakes up to `n` waiters. Call after publishing what they wait for; makes no system
    /// call when nobody sleeps.
    #[inline]
    pub(crate) fn notify(&self, n: u32) {
        W::fence(Ordering::SeqCst);
        self.wake_sleepers(n);
    }

    /// The second half of a notify, after its fence: changes `seq` and wakes, if anyone is
    /// announced and (for a wake of all) has flagged the value since the last one.
    #[inline]
    fn wake_sleepers(&self, n: u32) {
        if self.sleepers.load(Ordering::Relaxed) == 0 {
            return;
        }
        if n >= ALL {
            // Every waiter asleep on an earlier value was woken by the notify that
            // changed it; one that sleeps on this value has flagged it.
            if self.seq.load(Ordering::Relaxed) & FLAGGED != 0 {
                self.seq.fetch_add(1, Ordering::SeqCst); // the flag cleared
                self.seq.wake(ALL);
            }
        } else {
            // Sleepers this does not wake stay asleep, so the flag stays for the next.
            self.seq.fetch_add(2, Ordering::SeqCst);
            self.seq.wake(n);
        }
    }

    /// Wakes every waiter (as [`notify`](Self::notify)).
    #[inline]
    pub(crate) fn notify_all(&self) {
        self.notify(ALL)
    }

    /// As [`notify_all`](Self::notify_all), unless `covered` is non-zero: some other party
    /// has promised to look for what was published, and to notify when it stops looking if
    /// anything is left ([`uncover`](Self::uncover)). (A process pool's caller spinning on a
    /// future collects results itself; the worker then need not wake the dispatcher.)
    /// The one fence orders the publication before both reads.
    #[inline]
    pub(crate) fn notify_all_unless(&self, covered: &W) {
        W::fence(Ordering::SeqCst);
        if covered.load(Ordering::Relaxed) == 0 {
            self.wake_sleepers(ALL);
        }
    }

    /// Starts covering for notifiers (see [`notify_all_unless`](Self::notify_all_unless)).
    #[inline]
    pub(crate) fn cover(covered: &W) {
        covered.fetch_add(1, Ordering::SeqCst);
    }

    /// Stops covering, then notifies if `left()` (what the waiter's condition looks at)
    /// says something published is still there. Against a notifier's publish, fence, read
    /// of `covered`: either it saw this decrement and notified, or `left()` sees what it
    /// published.
    #[inline]
    pub(crate) fn uncover(&self, covered: &W, left: impl FnOnce() -> bool) {
        covered.fetch_sub(1, Ordering::SeqCst);
        W::fence(Ordering::SeqCst);
        // That fence is the notify's too: nothing is published between it and the wake.
        if left() {
            self.wake_sleepers(ALL);
        }
    }

    /// Waits until `ready()` (checked first), spinning by `spin`, then sleeping in slices
    /// of at most `slice` (so a notifier that died before notifying only delays a waiter).
    /// Returns `false` if `deadline` passed first (after a last check of `ready()`).
    pub(crate) fn wait_until(
        &self,
        spin: Spin,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let mut backoff = Backoff::new(spin, deadline);
        loop {
            if ready() {
                return true;
            }
            if !backoff.snooze() {
                break;
            }
        }
        self.sleep_until(deadline, slice, ready)
    }

    /// As [`wait_until`](Self::wait_until) with no spin (for callers that spin themselves).
    pub(crate) fn sleep_until(
        &self,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        loop {
            let token = self.prepare_wait();
            if ready() {
                self.cancel_wait(token);
                return true;
            }
            let mut until = deadline;
            if deadline.is_some() || slice.is_some() {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    self.cancel_wait(token);
                    return false;
                }
                if let Some(end) = slice.and_then(|s| now.checked_add(s)) {
                    until = Some(until.map_or(end, |d| d.min(end)));
                }
            }
            self.wait(token, until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_spin_ends_by_its_round_count() {
        let mut b = Backoff::new(Spin::rounds(40), None);
        let mut n = 0;
        while b.snooze() {
            n += 1;
        }
        assert_eq!(n, 40);
        assert!(!b.snooze());
        let mut none = Backoff::new(Spin::NONE, None);
        assert!(!none.snooze());
    }

    /// The case the per-yield clock is for: a ping-pong on one CPU beside a CPU hog, where
    /// each wait ends after a single yield, and that yield gave the hog its slice.
    #[test]
    fn a_yield_to_a_busy_thread_on_the_same_cpu_ends_the_spin() {
        use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
        let all = sched_getaffinity(None).unwrap();
        let cpu = (0..CpuSet::MAX_CPU).find(|&c| all.is_set(c)).unwrap();
        let mut one = CpuSet::new();
        one.set(cpu);
        let stop = Arc::new(AtomicBool::new(false));
        let hog = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                sched_setaffinity(None, &one).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        sched_setaffinity(None, &one).unwrap();
        static MEMORY: AtomicU64 = AtomicU64::new(0);
        let spin = Spin {
            spins: 0,
            rounds: 1000,
            grow: false,
        };
        // Each wait yields once, as a ping-pong's do; within a few the hog is on the CPU
        // and the yield hands it a slice.
        let t0 = Instant::now();
        let seen = (0..200).any(|_| {
            let mut b = Backoff::remembering_in(spin, &MEMORY);
            b.snooze();
            b.crowded
        });
        stop.store(true, Ordering::Relaxed);
        sched_setaffinity(None, &all).unwrap();
        hog.join().unwrap();
        assert!(
            seen,
            "no yield beside a busy thread on one CPU took {CROWDED:?}"
        );
        assert!(MEMORY.load(Ordering::Relaxed) > nanos_since_epoch(t0));
        // Remembered: the next wait skips its yields and sleeps.
        assert!(!Backoff::remembering_in(spin, &MEMORY).snooze());
    }

    #[test]
    fn a_thread_alone_on_one_cpu_skips_its_hints() {
        use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
        let spin = Spin {
            spins: 100,
            rounds: 200,
            grow: false,
        };
        // A fresh thread each, so each asks its affinity at its first snooze.
        let first_round = |pinned: bool| {
            std::thread::spawn(move || {
                if pinned {
                    let all = sched_getaffinity(None).unwrap();
                    let cpu = (0..CpuSet::MAX_CPU).find(|&c| all.is_set(c)).unwrap();
                    let mut one = CpuSet::new();
                    one.set(cpu);
                    sched_setaffinity(None, &one).unwrap();
                }
                let mut b = Backoff::ignoring_crowds(spin, None);
                assert!(b.snooze());
                // A spin of hints only is spent at once there: the waiter sleeps.
                let mut lock = Backoff::ignoring_crowds(Spin::LOCK, None);
                (b.round, b.round >= b.spin.spins, lock.snooze())
            })
            .join()
            .unwrap()
        };
        assert_eq!(
            first_round(true),
            (101, true, false),
            "straight to the yields"
        );
        if !pinned_to_one_cpu() {
            assert_eq!(first_round(false), (1, false, true), "hints first");
        }
    }

    #[test]
    fn a_growing_spin_doubles_its_hints_up_to_64_and_never_yields() {
        let hints: Vec<u32> = (0..9).map(|r| Spin::LOCK.hints(r)).collect();
        assert_eq!(hints, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        assert!((0..100).all(|r| Spin::SHORT.hints(r) == 1));
        // All hint rounds: a lock waiter does not yield (it sleeps on the word instead).
        assert_eq!(Spin::LOCK.spins, Spin::LOCK.rounds);
        let mut b = Backoff::new(Spin::LOCK, None);
        let mut n = 0;
        while b.snooze() {
            n += 1;
        }
        assert_eq!(n, Spin::LOCK.rounds);
    }

    #[test]
    fn a_spin_ends_by_the_clock_even_with_rounds_left() {
        // A million yields would take far longer than the budget on any machine.
        let t0 = Instant::now();
        let mut b = Backoff::ignoring_crowds(Spin::rounds(u32::MAX), None);
        let mut n = 0u64;
        while b.snooze() {
            n += 1;
        }
        let took = t0.elapsed();
        assert!(took >= SPIN_BUDGET, "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(n < u32::MAX as u64);
    }

    #[test]
    fn a_slow_yield_ends_the_spin_with_rounds_and_time_left() {
        // Only yields (no hints), so the clock is read at every round.
        let spin = Spin {
            spins: 0,
            rounds: 1000,
            grow: false,
        };
        static MEMORY: AtomicU64 = AtomicU64::new(0);
        let mut b = Backoff::remembering_in(spin, &MEMORY);
        let t0 = Instant::now();
        assert!(b.snooze(), "a round was spent");
        // As if a CPU hog had run a time slice during that round's yield.
        b.after_yield(b.yield_from.unwrap() + CROWDED * 2);
        assert!(!b.snooze());
        assert!(b.crowded);
        assert!(!b.snooze(), "an ended spin stays ended");
        // Remembered for CROWD_MEMORY from the slow yield on: a new spin does not yield.
        let seen = MEMORY.load(Ordering::Relaxed);
        assert!(seen >= nanos_since_epoch(t0) + CROWD_MEMORY.as_nanos() as u64);
        MEMORY.store(u64::MAX, Ordering::Relaxed); // (however slow this test thread is)
        let mut c = Backoff::remembering_in(Spin { spins: 2, ..spin }, &MEMORY);
        let rounds = std::iter::from_fn(|| c.snooze().then_some(())).count();
        // (A thread on one CPU skips its hints.)
        let hints = if pinned_to_one_cpu() { 0 } else { 2 };
        assert_eq!(rounds, hints, "the hints, then no yield");
        assert!(c.crowded);
    }

    #[test]
    fn a_spin_never_outlasts_the_deadline() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Spin::rounds(u32::MAX), Some(t0));
        let mut n = 0;
        while b.snooze() {
            n += 1;
        }
        // Only the hints before the first clock check.
        assert!(n <= 64, "{n}");
    }

    fn words() -> Arc<[AtomicU32; 2]> {
        Arc::new([AtomicU32::new(0), AtomicU32::new(0)])
    }

    #[test]
    fn a_notify_with_nobody_asleep_changes_nothing() {
        let w = words();
        let ec = EventCount::new(&w[0], &w[1]);
        ec.notify_all();
        assert_eq!(w[0].load(Ordering::SeqCst), 0, "no sleeper: seq untouched");
        let t = ec.prepare_wait();
        assert_eq!(w[1].load(Ordering::SeqCst), 1);
        let flagged = w[0].load(Ordering::SeqCst);
        assert_eq!(flagged, 1, "the sleeper flags the value it sleeps on");
        ec.notify(1);
        assert_ne!(
            w[0].load(Ordering::SeqCst),
            flagged,
            "a sleeper: seq changed"
        );
        // The token predates the bump: this wait returns at once.
        let t0 = Instant::now();
        assert!(ec.wait(t, Some(Instant::now() + Duration::from_secs(10))));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(w[1].load(Ordering::SeqCst), 0, "the waiter withdrew");
    }

    #[test]
    fn a_second_notify_before_the_sleeper_is_back_skips_the_wake() {
        // Beside CPU hogs a woken sleeper may wait a whole time slice to run, still
        // counted in `sleepers`: every notify meanwhile made a `FUTEX_WAKE` that woke
        // nobody (a queue's producer made one per message, 13 per consumer sleep).
        let w = words();
        let ec = EventCount::new(&w[0], &w[1]);
        let t = ec.prepare_wait();
        let before = w[0].load(Ordering::SeqCst);
        ec.notify_all();
        let woken = w[0].load(Ordering::SeqCst);
        assert_ne!(woken, before, "the first notify wakes the sleeper");
        ec.notify_all();
        ec.notify_all_unless(&AtomicU32::new(0));
        assert_eq!(
            w[0].load(Ordering::SeqCst),
            woken,
            "nobody new asleep: no wake"
        );
        assert!(ec.wait(t, None), "the sleeper sees it was notified");
        // Asleep again: the next notify wakes it.
        let t = ec.prepare_wait();
        let again = w[0].load(Ordering::SeqCst);
        ec.notify_all();
        assert_ne!(w[0].load(Ordering::SeqCst), again);
        assert!(ec.wait(t, None));
        assert_eq!(w[1].load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_sleeper_is_woken_by_a_notify_from_another_thread() {
        let w = words();
        let flag = Arc::new(AtomicBool::new(false));
        let (w2, f2) = (w.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            let ec = EventCount::new(&w2[0], &w2[1]);
            // No spin and no slice: only a notify can end this wait in time.
            ec.wait_until(
                Spin::NONE,
                Some(Instant::now() + Duration::from_secs(20)),
                None,
                || f2.load(Ordering::Acquire),
            )
        });
        // Let it fall asleep.
        while w[1].load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        flag.store(true, Ordering::Release);
        EventCount::new(&w[0], &w[1]).notify_all();
        assert!(t.join().unwrap());
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(w[1].load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_wait_times_out_at_its_deadline() {
        let w = words();
        let ec = EventCount::new(&w[0], &w[1]);
        let t0 = Instant::now();
        let ok = ec.wait_until(
            Spin::rounds(2000),
            Some(t0 + Duration::from_millis(50)),
            Some(Duration::from_millis(7)),
            || false,
        );
        assert!(!ok);
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(w[1].load(Ordering::SeqCst), 0);
    }
}

/// Loom models of the event count: every interleaving of a waiter and its notifiers, with
/// the futex modelled as the kernel does it (the value checked and the sleeper queued under
/// one lock, which the waker takes too). No timeouts: a lost wake-up deadlocks the model.
#[cfg(test)]
pub(crate) mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicU32 as LoomU32;
    use loom::sync::{Arc, Condvar, Mutex};

    /// A futex word under loom.
    #[derive(Debug)]
    pub(crate) struct ModelWord {
        v: LoomU32,
        bucket: Mutex<()>,
        queue: Condvar,
        timeouts: bool,
    }

    impl ModelWord {
        /// A word whose waits sleep until woken, timeout or not: a lost wake-up deadlocks.
        pub(crate) fn new(v: u32) -> ModelWord {
            ModelWord {
                v: LoomU32::new(v),
                bucket: Mutex::new(()),
                queue: Condvar::new(),
                timeouts: false,
            }
        }

        /// A word whose timed waits may return at once (their timeout passed): for models
        /// where progress needs a timeout (a holder that died never wakes anyone).
        pub(crate) fn with_timeouts(v: u32) -> ModelWord {
            ModelWord {
                timeouts: true,
                ..ModelWord::new(v)
            }
        }
    }

    impl FutexWord for ModelWord {
        fn load(&self, order: Ordering) -> u32 {
            self.v.load(order)
        }
        fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
            self.v.fetch_add(v, order)
        }
        fn fetch_sub(&self, v: u32, order: Ordering) -> u32 {
            self.v.fetch_sub(v, order)
        }
        fn compare_exchange(
            &self,
            current: u32,
            new: u32,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u32, u32> {
            self.v.compare_exchange(current, new, success, failure)
        }
        fn wait(&self, expected: u32, timeout: Option<Duration>) {
            if self.timeouts && timeout.is_some() {
                loom::thread::yield_now();
                return;
            }
            let g = self.bucket.lock().unwrap();
            // The kernel's read is a full barrier against the waker's (`smp_mb`).
            if self.v.load(Ordering::SeqCst) == expected {
                drop(self.queue.wait(g).unwrap());
            }
        }
        fn wake(&self, n: u32) {
            let _g = self.bucket.lock().unwrap();
            if n == 1 {
                self.queue.notify_one();
            } else {
                self.queue.notify_all();
            }
        }
        fn fence(order: Ordering) {
            loom::sync::atomic::fence(order)
        }
    }

    struct Shared {
        seq: ModelWord,
        sleepers: ModelWord,
        data: LoomU32,
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            seq: ModelWord::new(0),
            sleepers: ModelWord::new(0),
            data: LoomU32::new(0),
        })
    }

    /// Every model at a size that fits CI: at most this many preemptions per execution
    /// (tokio's CI uses 2; the bugs loom finds in protocols this small need fewer).
    pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(f);
    }

    #[test]
    fn loom_a_published_item_always_wakes_the_waiter() {
        model(|| {
            let s = shared();
            let s2 = s.clone();
            let producer = loom::thread::spawn(move || {
                s2.data.store(1, Ordering::Relaxed);
                EventCount::new(&s2.seq, &s2.sleepers).notify_all();
            });
            let ec = EventCount::new(&s.seq, &s.sleepers);
            assert!(ec.sleep_until(None, None, || s.data.load(Ordering::Relaxed) == 1));
            producer.join().unwrap();
            assert_eq!(s.sleepers.load(Ordering::SeqCst), 0);
        });
    }

    /// Two waiters that each take one item; two items published one at a time, each
    /// followed by `notify`. A lost wake-up leaves a waiter asleep: a deadlock.
    fn two_items_for_two_waiters(notify: fn(&EventCount<'_, ModelWord>)) {
        model(move || {
            let s = shared();
            let take = |s: &Shared| {
                let ec = EventCount::new(&s.seq, &s.sleepers);
                ec.sleep_until(None, None, || {
                    let mut c = s.data.load(Ordering::Relaxed);
                    while c > 0 {
                        match s.data.compare_exchange(
                            c,
                            c - 1,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => return true,
                            Err(now) => c = now,
                        }
                    }
                    false
                })
            };
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    loom::thread::spawn(move || assert!(take(&s)))
                })
                .collect();
            for _ in 0..2 {
                s.data.fetch_add(1, Ordering::Release);
                notify(&EventCount::new(&s.seq, &s.sleepers));
            }
            for w in waiters {
                w.join().unwrap();
            }
        });
    }

    #[test]
    fn loom_notify_one_per_permit_wakes_each_of_two_waiters() {
        // The semaphore's use: permits given one at a time with `notify(1)` (a partial
        // wake, which keeps the flag for the waiter it does not wake).
        two_items_for_two_waiters(|ec| ec.notify(1));
    }

    #[test]
    fn loom_a_wake_skipped_for_an_unflagged_value_is_never_lost() {
        // The queue's use: items published with `notify_all`. A notify that finds `seq`
        // unflagged skips its wake (the sleepers it could wake were woken by an earlier
        // one): in no interleaving may that leave a waiter asleep with an item there.
        two_items_for_two_waiters(|ec| ec.notify_all());
    }

    #[test]
    fn loom_a_notify_skipped_for_a_covering_party_is_never_lost() {
        // The process pool's helpers: a worker publishes a result and notifies unless a
        // caller covers (spins, collecting results itself). The caller may collect the
        // result (`took`) or leave before it sees it; the dispatcher sleeps until there is
        // a result, or the caller took it (a model-only notify, so that it may end). A
        // notify skipped and not made up for leaves the dispatcher asleep: a deadlock.
        model(|| {
            let s = shared();
            let (covered, took) = (Arc::new(ModelWord::new(0)), Arc::new(LoomU32::new(0)));
            let (s2, c2) = (s.clone(), covered.clone());
            let worker = loom::thread::spawn(move || {
                s2.data.store(1, Ordering::Relaxed);
                EventCount::new(&s2.seq, &s2.sleepers).notify_all_unless(&*c2);
            });
            let (s3, c3, t3) = (s.clone(), covered.clone(), took.clone());
            let helper = loom::thread::spawn(move || {
                let ec = EventCount::new(&s3.seq, &s3.sleepers);
                EventCount::cover(&*c3);
                // Takes the result if it is there. (A `swap(0)` here, which writes even when
                // it finds nothing, made loom 0.7 let the dispatcher read the value before
                // the worker's store after synchronizing with it: a deadlock of the model,
                // not of the protocol.)
                let take = s3
                    .data
                    .compare_exchange(1, 0, Ordering::Relaxed, Ordering::Relaxed);
                if take.is_ok() {
                    t3.store(1, Ordering::Relaxed);
                }
                ec.uncover(&*c3, || {
                    s3.data.load(Ordering::Relaxed) != 0 || t3.load(Ordering::Relaxed) != 0
                });
            });
            let ec = EventCount::new(&s.seq, &s.sleepers);
            assert!(ec.sleep_until(None, None, || {
                s.data.load(Ordering::Relaxed) != 0 || took.load(Ordering::Relaxed) != 0
            }));
            worker.join().unwrap();
            helper.join().unwrap();
        });
    }
}
