//! Telling an allocation failure from any other `abort()` (for a pool's memory limit).
//!
//! Stable Rust has no allocation-error hook, and std's handler prints a line and calls
//! `abort()`. What survives into the SIGABRT handler is `errno`: the failed `malloc`/`mmap`
//! set it to `ENOMEM`, and nothing between (a successful `write` of the message, glibc's
//! `abort` unblocking and raising the signal) changes it. So a SIGABRT that finds
//! `errno == ENOMEM` on the aborting thread is taken as an allocation failure.
//!
//! Limits: an `abort()` right after some other call failed with `ENOMEM` (a handled
//! `try_reserve`, say) is mistaken for one; the worker clears `errno` before every item so at
//! least a stale value from an earlier item does not count. If printing the message failed
//! (stderr closed), `errno` is no longer `ENOMEM` and a real allocation failure is reported as
//! a plain SIGABRT death: the heuristic errs towards `WorkerDied`.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use super::SharedMapping;

/// The mapping and offset of the word to mark (kept alive for the life of the process).
static MARK: OnceLock<(Arc<SharedMapping>, usize, u32)> = OnceLock::new();

extern "C" fn on_abort(_sig: libc::c_int) {
    // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    if errno == libc::ENOMEM
        && let Some((map, off, value)) = MARK.get()
    {
        // An atomic store is async-signal-safe; the mapping is never unmapped (held here).
        map.atomic_u32(*off).store(*value, Ordering::SeqCst);
    }
    // SA_RESETHAND restored the default action and SA_NODEFER left SIGABRT unblocked: this
    // raise kills the process with SIGABRT, as the abort meant.
    // SAFETY: raise has no memory effects.
    unsafe { libc::raise(libc::SIGABRT) };
}

/// In this process, a SIGABRT while `errno == ENOMEM` first stores `value` in the `u32` at
/// `off` of `map`, then the process dies of SIGABRT as usual. Call once, before user code.
pub(crate) fn mark_enomem_aborts(map: Arc<SharedMapping>, off: usize, value: u32) {
    let _ = map.atomic_u32(off); // bounds and alignment are checked now, not in the handler
    if MARK.set((map, off, value)).is_err() {
        return;
    }
    // SAFETY: a zeroed sigaction is a valid starting point; the handler only reads errno,
    // does an atomic store into memory kept alive by `MARK`, and calls raise, all
    // async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_abort as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESETHAND | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGABRT, &sa, std::ptr::null_mut());
    }
}

/// Sets this thread's `errno` to 0 (so a stale `ENOMEM` is not mistaken for a fresh one).
pub(crate) fn clear_errno() {
    // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
    unsafe { *libc::__errno_location() = 0 };
}
