//! Futex wait and wake on words that may live in memory shared between processes.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// A relative timeout for `poll` or `futex`, rounded up to whole microseconds so a wait
/// never ends before the time asked for.
pub(crate) fn timespec(d: Duration) -> rustix::fs::Timespec {
    let us = d.as_nanos().div_ceil(1000);
    rustix::fs::Timespec {
        tv_sec: (us / 1_000_000).min(i64::MAX as u128) as i64,
        tv_nsec: (us % 1_000_000) as i64 * 1000,
    }
}

/// Sleeps while `*word == expected`, for at most `timeout`. Returns on a wake-up, a
/// spurious wake-up, a value change or the timeout: callers re-check their condition.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(timespec);
    // Not FUTEX_PRIVATE: the word may be in a MAP_SHARED mapping used by other processes.
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes up to `n` waiters sleeping on `word`. Returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    // The kernel reads the count as an int: cap it so "all" does not become -1.
    futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32)).unwrap_or(0)
}
