//! # multiproc
//!
//! Python's `threading`, `multiprocessing` and `concurrent.futures`, done right for Rust.
#![warn(missing_docs)]

mod bootstrap;
mod error;
mod sys;

pub use bootstrap::{StartMethod, freeze_support, init};
pub use error::{Error, ExitStatus, Result, TaskError, signal_name};
mod process;
mod shm;
mod sync;

pub use process::Process;
pub use shm::{Array, ArrayGuard, SharedMemory, Value, ValueGuard};
pub use sync::{
    AcquireError, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, RLockGuard,
    Semaphore, SemaphoreGuard,
};
