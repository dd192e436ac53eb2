//! # multiproc
//!
//! Python's `threading`, `multiprocessing` and `concurrent.futures`, done right for Rust.
//!
//! ## Threads or processes?
//!
//! Python needs processes for CPU-bound work because the GIL lets one thread run Python
//! code at a time. Rust has no GIL: a [`ThreadPool`] already runs CPU work on every core.
//! Reach for a [`ProcessPool`] for what threads cannot give: a task that panics, aborts,
//! segfaults, exits, runs out of memory or never ends costs one worker process, never your
//! program; tasks can be killed at a timeout and capped in memory; thread-unsafe native
//! code runs in parallel.
//!
//! Both pools implement one [`Executor`] API, so switching is one constructor:
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Executor, ProcessPool, ThreadPool};
//!
//! fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
//!
//! fn total(pool: &impl Executor) -> u64 {
//!     pool.map(fib, 0..20).unwrap().into_iter().sum()
//! }
//! assert_eq!(total(&ThreadPool::new(2).unwrap()), total(&ProcessPool::new(2).unwrap()));
//! ```
//!
//! ## Coming from Python
//!
//! [`from_python`] puts each idiom of the Python tutorials (`with Pool()`, `close`/`join`,
//! `starmap`, `threading.Thread`, daemon threads, `Value`/`RawValue`, a `Queue` through
//! an initializer, `conn.send(obj)`) beside its multiproc form. [`Thread`], [`Timer`] and
//! [`enumerate`] are Python's `threading`.
//!
//! ## Starting worker processes
//!
//! Workers are processes of *your own program*. multiproc turns a process it started into
//! a worker before `main` (or a test harness, or a doctest) runs, so there is nothing to
//! add: no `freeze_support()` line, no test attribute. [`init()`] and
//! [`test_support!()`](test_support) remain from earlier versions and are harmless. Each
//! worker and each [`Process`] leads a process group of its own: killing it (timeout,
//! cancel, [`Process::kill`]) kills what it started too, and a terminal's Ctrl-C reaches
//! only your program, which manages its children.
//!
//! When your program dies, so does everything it started, within moments, even on SIGKILL:
//! workers, processes, the fork server, a [`Manager`]'s server, and (under the default
//! fork-server start method) what their tasks started. multiproc installs no SIGINT
//! handler: Ctrl-C inside [`map`](Executor::map) ends the program at once, as Rust's default
//! does, with no hang (Python's `Pool` can hang there) and no `KeyboardInterrupt` to catch;
//! run cleanup in `Drop`, or install a handler yourself. Shared memory segments and manager
//! sockets that a killed program could not remove are removed by the next multiproc program
//! that creates one.
//!
//! Functions sent to a process pool are `fn` items or closures that capture nothing;
//! arguments and results are serializable (serde). Pass data as the argument.
//!
//! ## Failures are values
//!
//! Every task ends in a `Result<R, TaskError>`: [`TaskError`] says which task failed and
//! how (panic message and location, the worker's pid and signal or exit code, timeout,
//! cancellation, memory limit, serialization). The pool replaces a dead worker and goes on.
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Chunksize, Executor, ProcessPool, TaskError};
//! use std::time::Duration;
//!
//! fn risky(x: u32) -> u32 {
//!     if x == 2 { std::process::abort() }
//!     x * 10
//! }
//! let pool = ProcessPool::builder().workers(2).task_timeout(Duration::from_secs(10)).build().unwrap();
//! let out: Vec<_> = pool.imap_chunked(risky, 0..4, Chunksize::Fixed(1)).collect();
//! assert!(matches!(out[2], Err(TaskError::WorkerDied { index: Some(2), .. })));
//! assert_eq!(out[3].as_ref().unwrap(), &30);
//! ```
//!
//! ## Sharing memory and locks
//!
//! [`SharedMemory`] segments (names compatible with Python's
//! `multiprocessing.shared_memory`), [`Value`] and [`Array`] hold data that processes see
//! without copying; [`Lock`], [`RLock`], [`Semaphore`], [`Event`], [`Condition`] and
//! [`Barrier`] coordinate threads and processes alike. Pass them to a process as task
//! arguments. A lock whose holder died is never a silent deadlock: the next acquirer gets
//! [`AcquireError::OwnerDied`] with a guard to repair the data.
//!
//! ```standalone_crate
//! # multiproc::init();
//! use multiproc::{Executor, ProcessPool, Value};
//!
//! fn add_one(v: Value<u64>) {
//!     *v.lock().unwrap() += 1;
//! }
//! let counter = Value::new(0u64).unwrap();
//! let pool = ProcessPool::new(2).unwrap();
//! pool.map(add_one, vec![counter.clone(); 10]).unwrap();
//! assert_eq!(counter.get().unwrap(), 10);
//! ```
// The other lints are in Cargo.toml's `[lints]`; this one is the library's alone (tests may
// fault on purpose), and `sys` is the one module that may use `unsafe`.
#![deny(unsafe_code)]

mod bootstrap;
mod error;
#[allow(unsafe_code)]
mod sys;

pub use bootstrap::{StartMethod, freeze_support, get_start_method, init, set_start_method};
pub use error::{Error, ExitStatus, Result, TaskError, signal_name};
mod process;
mod ring;
mod shm;
mod sync;
mod wire;

pub use process::{
    CurrentProcess, ParentProcess, Process, ProcessBuilder, active_children, current_process,
    parent_process,
};
mod ipc;

pub use ipc::connection;
pub use ipc::{Connection, JoinableQueue, Pipe, Queue, QueueBuilder, SimpleQueue};
mod executor;
mod future;
mod insights;
mod progress;
mod thread_pool;

pub use executor::{Chunksize, Executor, Imap, Payload, PoolFn, StarFn};
pub use future::{AsCompleted, Return, TaskFuture, Waited, as_completed, wait};
pub use insights::{Insights, Restart, RestartCause, SlowTask, WorkerInsights};
pub use thread_pool::{ThreadPool, ThreadPoolBuilder};
pub mod threading;

pub mod from_python;

pub use threading::{
    Thread, ThreadBuilder, Timer, active_count, current_thread, enumerate, get_ident, main_thread,
};

/// The serde that multiproc's [`Payload`] bound is about, for programs that do not depend
/// on it themselves: `#[derive(multiproc::serde::Serialize, multiproc::serde::Deserialize)]`
/// with `#[serde(crate = "multiproc::serde")]`. (Adding `serde` with its `derive` feature to
/// your own Cargo.toml is simpler.)
///
/// ```
/// #[derive(multiproc::serde::Serialize, multiproc::serde::Deserialize)]
/// #[serde(crate = "multiproc::serde")]
/// struct Job { id: u32 }
/// fn needs_payload<T: multiproc::Payload>() {}
/// needs_payload::<Job>();
/// ```
pub use serde;

/// Number of CPUs this process may run on (Python's `os.cpu_count()`, affinity-aware).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
mod process_pool;

pub use process_pool::{ProcessPool, ProcessPoolBuilder};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "mpi")]
pub use mpi::{MpiPool, MpiPoolBuilder, RankInfo};

/// Python's `multiprocessing.Pool`: a [`ProcessPool`].
pub type Pool = ProcessPool;
/// Python's `concurrent.futures.ProcessPoolExecutor`: a [`ProcessPool`].
pub type ProcessPoolExecutor = ProcessPool;
/// Python's `concurrent.futures.ThreadPoolExecutor`: a [`ThreadPool`].
pub type ThreadPoolExecutor = ThreadPool;

pub mod manager;
pub use manager::{Manager, ManagerBuilder};

/// Inside a pool task: breaks the worker's frame protocol (0 oversized header, 1 unknown
/// frame kind, 2 absurd out-of-band size). For fault-injection tests.
#[doc(hidden)]
pub fn __test_corrupt_result_ring(how: u32) {
    process_pool::test_corrupt_result_ring(how)
}

mod sharedctypes;
/// The ndarray that [`SharedMapping::as_array`]'s views come from (feature `ndarray`), so
/// a program uses the very version multiproc was built with.
///
/// ```
/// let a = multiproc::ndarray::arr1(&[1.0, 2.0]);
/// assert_eq!(a.sum(), 3.0);
/// ```
#[cfg(feature = "ndarray")]
pub use ndarray;
pub use sharedctypes::{Array, ArrayGuard, Value, ValueGuard};
pub use shm::{SharedMapping, SharedMemory};
pub use sync::{
    AcquireError, Barrier, BoundedSemaphore, Condition, Event, Lock, LockGuard, RLock, RLockGuard,
    Semaphore, SemaphoreGuard,
};
/// numpy's element types, for [`SharedMapping::as_array`] (feature `ndarray`).
#[cfg(feature = "ndarray")]
pub use sys::Element;
