//! The pool's doorbell: the crate's one event count over two words of the pool's mapping
//! (see "Sleeping and waking" in `README.md` beside this file).

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use crate::sys::{EventCount, SharedMapping, Spin};

/// A doorbell: producers `ring` it after publishing; one consumer `wait`s on it.
///
/// The crate's event count ([`EventCount`], see `sys/wait.rs`) over two words of the
/// pool's mapping: a ring with nobody asleep is one fence and one load.
pub(crate) struct Bell {
    map: Arc<SharedMapping>,
    off: usize,
}

impl Bell {
    /// The bell at `off` (8 bytes: seq u32, sleeping u32).
    pub(crate) fn new(map: Arc<SharedMapping>, off: usize) -> Bell {
        Bell { map, off }
    }

    fn event(&self) -> EventCount<'_> {
        EventCount::new(
            self.map.atomic_u32(self.off),
            self.map.atomic_u32(self.off + 4),
        )
    }

    /// Tells the consumer something was published (call after publishing).
    pub(crate) fn ring(&self) {
        self.event().notify_all();
    }

    /// Whether the consumer is asleep on this bell, or about to be (a hint).
    pub(crate) fn has_sleeper(&self) -> bool {
        self.event().has_sleepers()
    }

    /// Rings unless `helpers` is non-zero: then a caller spinning on a future collects what
    /// was published, and rings itself when it stops if anything is left
    /// ([`stop_helping`](Self::stop_helping); "Helpers" in `README.md`).
    pub(crate) fn ring_unless_helped(&self, helpers: &AtomicU32) {
        self.event().notify_all_unless(helpers);
    }

    /// A caller starts collecting what is published itself (counted in `helpers`).
    pub(crate) fn start_helping(helpers: &AtomicU32) {
        EventCount::cover(helpers);
    }

    /// That caller stops, and rings if `left()` says something is still to collect.
    pub(crate) fn stop_helping(&self, helpers: &AtomicU32, left: impl FnOnce() -> bool) {
        self.event().uncover(helpers, left);
    }

    /// Waits until `ready()` is true or `timeout` passes: a bounded spin of `spin` rounds
    /// (the crate's one policy: hints, then yields, at most 2 ms), then futex sleeps.
    /// Returns `ready()`.
    pub(crate) fn wait(
        &self,
        spin: u32,
        timeout: Option<Duration>,
        ready: impl Fn() -> bool,
    ) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.event()
            .wait_until(Spin::rounds(spin), deadline, None, ready)
    }
}
