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
mod executor;
mod future;
mod thread_pool;

pub use executor::{Chunksize, Executor, Imap, StarFn};
pub use future::{AsCompleted, Return, TaskFuture, Waited, as_completed, wait};
pub use thread_pool::{ThreadPool, ThreadPoolBuilder};

/// Number of CPUs this process may run on (Python's `os.cpu_count()`, affinity-aware).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
mod process_pool;

pub use process_pool::{ProcessPool, ProcessPoolBuilder};

/// Crashes the calling process with a segfault (a null write). For fault-injection tests.
#[doc(hidden)]
pub fn __test_segfault() -> ! {
    sys::process::segfault()
}

pub use shm::{Array, ArrayGuard, SharedMemory, Value, ValueGuard};
pub use sync::{
    AcquireError, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, RLockGuard,
    Semaphore, SemaphoreGuard,
};
