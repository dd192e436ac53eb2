//! Futex wait and wake on words that may live in memory shared between processes.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// Sleeps while `*word == expected`, for at most `timeout`. Returns on a wake-up, a
/// spurious wake-up, a value change or the timeout: callers re-check their condition.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| rustix::fs::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    // Not FUTEX_PRIVATE: the word may be in a MAP_SHARED mapping used by other processes.
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes up to `n` waiters sleeping on `word`. Returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    // The kernel reads the count as an int: cap it so "all" does not become -1.
    futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32)).unwrap_or(0)
}
