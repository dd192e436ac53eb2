//! `Event`: a flag that threads and processes wait for (Python's `multiprocessing.Event`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Cell, Kind, cell_serde, deadline, sleep_for};
use crate::error::Result;
use crate::sys::{futex_wait, futex_wake};

const CLEAR: u32 = 0;
const SET: u32 = 1;
/// Clear, and someone may be sleeping (so `set` must wake).
const CLEAR_WAITED: u32 = 2;

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

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.word().load(Ordering::Acquire) == SET
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        if self.word().swap(SET, Ordering::Release) == CLEAR_WAITED {
            futex_wake(self.word(), i32::MAX as u32);
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
        let deadline = deadline(timeout);
        loop {
            let v = self.word().load(Ordering::Acquire);
            if v == SET {
                return true;
            }
            if v == CLEAR
                && self
                    .word()
                    .compare_exchange(CLEAR, CLEAR_WAITED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let Some(sleep) = sleep_for(deadline, None) else {
                return false;
            };
            futex_wait(self.word(), CLEAR_WAITED, sleep);
        }
    }
}
