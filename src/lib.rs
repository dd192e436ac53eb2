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

pub use process::{
    CurrentProcess, Process, ProcessBuilder, active_children, cpu_count, current_process,
};
mod ipc;

pub use ipc::connection;
pub use ipc::{Connection, JoinableQueue, Pipe, Queue, QueueBuilder, SimpleQueue};
