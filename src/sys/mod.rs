//! The only place with `unsafe` and raw system calls. Every block carries a `SAFETY:` note.
//!
//! Everything above this module is safe Rust built on the small, bounds-checked interfaces
//! here: futex waits, the robust lock word, shared mappings, fork, signals, fd passing and
//! function shipping. `README.md` beside this file explains the lock word and the rules for
//! shared mappings.

pub(crate) mod abort;
pub(crate) mod biased_lock;
pub(crate) mod code;
pub(crate) mod fdpass;
pub(crate) mod futex;
pub(crate) mod lock;
pub(crate) mod mem;
#[cfg(feature = "ndarray")]
pub(crate) mod ndarray_view;
pub(crate) mod process;
pub(crate) mod sched;
pub(crate) mod shm;
pub(crate) mod signal;
mod startup;

pub(crate) use abort::AbortIfPanic;
pub(crate) use futex::timespec;
pub use mem::SharedMapping;
#[cfg(feature = "ndarray")]
pub use ndarray_view::Element;
pub(crate) use wait::{EventCount, Spin};
pub(crate) mod atexit;
pub(crate) mod clock;
pub(crate) mod ring_memory;
pub(crate) mod wait;
