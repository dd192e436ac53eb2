//! A guard that turns a panic in the library's own machinery into a loud abort.
//!
//! User code is always called inside `catch_unwind`, so a panic that unwinds through a
//! pool's own loop is a bug in multiproc. Unwinding on would leave a poisoned lock and a
//! dead dispatcher, and every caller would hang; aborting with a message tells the truth.

/// Aborts the process if dropped during a panic. Create it before library code that must
/// not unwind, and [`disarm`](AbortIfPanic::disarm) or drop it after.
pub(crate) struct AbortIfPanic(pub(crate) &'static str);

impl AbortIfPanic {
    /// The guarded code finished normally.
    #[inline]
    pub(crate) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for AbortIfPanic {
    fn drop(&mut self) {
        eprintln!(
            "multiproc: internal error: a panic unwound through {}; aborting rather than \
             leaving a pool that hangs (please report this bug)",
            self.0
        );
        std::process::abort();
    }
}
