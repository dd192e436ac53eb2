//! The pool's doorbell: the crate's one event count over two words of the pool's mapping
//! (see "Sleeping and waking" in `README.md` beside this file).

use std::sync::Arc;
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
