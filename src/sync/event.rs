//! `Event`: a flag that threads and processes wait for (Python's `multiprocessing.Event`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Cell, Kind, cell_serde, deadline};
use crate::error::Result;
use crate::sys::{EventCount, Spin};

// Words: 0 = the flag, 1 and 2 = the event count waiters sleep on (seq, sleepers).
const CLEAR: u32 = 0;
const SET: u32 = 1;

/// A flag, initially clear: [`wait`](Event::wait) blocks until someone [`set`](Event::set)s it.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Event, Process};
/// fn signal(ev: Event) { ev.set(); }
/// let ev = Event::new().unwrap();
/// let p = Process::start(signal, ev.clone()).unwrap();
/// assert!(ev.wait_timeout(std::time::Duration::from_secs(10)));
/// p.join();
/// ```
#[derive(Clone)]
pub struct Event {
    cell: Cell,
}

cell_serde!(Event, super::Kind::Event);

impl Event {
    /// A new, clear event.
    pub fn new() -> Result<Event> {
        Ok(Event {
            cell: Cell::new(Kind::Event)?,
        })
    }

    fn from_cell(cell: Cell) -> Event {
        Event { cell }
    }

    fn word(&self) -> &AtomicU32 {
        self.cell.word(0)
    }

    fn event(&self) -> EventCount<'_> {
        EventCount::new(self.cell.word(1), self.cell.word(2))
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.word().load(Ordering::Acquire) == SET
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        if self.word().swap(SET, Ordering::Release) != SET {
            self.event().notify_all();
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        let _ = self
            .word()
            .compare_exchange(SET, CLEAR, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        self.wait_inner(None);
    }

    /// Blocks until the flag is set or `timeout` passes; returns whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<Duration>) -> bool {
        self.event()
            .wait_until(Spin::NONE, deadline(timeout), None, || self.is_set())
    }
}
