//! Every failure a caller can see.
//!
//! Two kinds: [`Error`] is about the pool or primitive itself (start-up failed, wrong
//! binary, pool shut down, I/O, a blocking call that timed out); [`TaskError`] is about one
//! task and is what a [`TaskFuture`](crate::TaskFuture) or an `imap` item returns.

use std::fmt;
use std::time::Duration;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of a pool, a process or a primitive (not of a single task).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What multiproc was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A worker or server process could not be started.
    #[error("could not start a worker process: {0}")]
    StartFailed(String),
    /// The child process is not the same build as the parent.
    #[error(
        "the worker binary {path} is not the same build as this program \
         (build id {found} instead of {expected}); rebuild, or point the pool at this program"
    )]
    BinaryMismatch {
        /// The executable that was started.
        path: String,
        /// The parent's build id.
        expected: String,
        /// The child's build id.
        found: String,
    },
    /// The initializer of a worker failed.
    #[error("the worker initializer failed: {0}")]
    InitializerFailed(Box<TaskError>),
    /// The pool was shut down; nothing more can be submitted.
    #[error("the pool is shut down")]
    ShutDown,
    /// A task failed (returned by `map`, which reports the first failure in input order).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A blocking call did not finish within its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A value could not be serialized.
    #[error("could not serialize a value of type {type_name}: {message}")]
    Serialize {
        /// The Rust type.
        type_name: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Received bytes could not be deserialized as the expected type.
    #[error("could not deserialize a value of type {type_name}: {message}")]
    Deserialize {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A received message (or queue item) is not a value of the type it was read as: its
    /// bytes do not decode as one, hold more than one, or are a pickled Python object.
    /// The message is consumed; the next one is read normally.
    #[error("expected a message of type {expected}, but {found}")]
    WrongType {
        /// The Rust type the message was read as.
        expected: &'static str,
        /// What the message is instead.
        found: String,
    },
    /// The peer closed the connection or the object was closed.
    #[error("closed: {0}")]
    Closed(String),
    /// A message or frame was malformed or too large.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer's authentication failed.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// An argument was invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A lock's previous holder died while holding it.
    #[error("the previous owner of the lock died while holding it")]
    OwnerDied,
    /// A lock's holder died, and the lock was then released without repairing the data it
    /// protects (without `mark_consistent`): the lock cannot be used any more.
    #[error("the lock is not recoverable: a holder died and the data was not marked consistent")]
    NotRecoverable,
    /// A [`Barrier`](crate::Barrier) was aborted, reset or timed out while waiting.
    #[error("the barrier is broken (aborted, reset, or a waiter timed out)")]
    BrokenBarrier,
    /// A shared-memory segment or other named object already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A shared-memory segment or other named object does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A non-blocking `try_put` found the queue full (Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// A non-blocking `try_get` found the queue empty (Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// The server (a [`Manager`](crate::Manager)'s) is gone: stopped, killed or unreachable.
    #[error("disconnected from the manager: {0}")]
    Disconnected(String),
    /// A named object exists with another kind or element type than the one asked for.
    #[error("the manager object {name:?} is a {found}, not a {expected}")]
    TypeMismatch {
        /// The object's name.
        name: String,
        /// What the caller asked for.
        expected: String,
        /// What the object was created as.
        found: String,
    },
}

impl Error {
    /// Wraps an I/O error with what multiproc was doing when it happened.
    pub fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> Error {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// How a worker process ended, as reported in [`TaskError::WorkerDied`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitStatus {
    /// The exit code if the process exited.
    pub code: Option<i32>,
    /// The signal number if a signal killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Python's `exitcode` convention: the exit code, or `-signal`.
    pub fn exitcode(&self) -> Option<i32> {
        self.code.or(self.signal.map(|s| -s))
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (_, Some(sig)) => write!(f, "killed by signal {sig} ({})", signal_name(sig)),
            (Some(code), None) => write!(f, "exited with code {code}"),
            (None, None) => write!(f, "ended for an unknown reason"),
        }
    }
}

/// A short name for a signal number (`SIGSEGV`), for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "signal",
    }
}

/// Why one task failed. Carries the task's index in its `map`/`imap` input where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked.
    #[error("task{} panicked at {}: {message}", fmt_index(*index), location.as_deref().unwrap_or("<unknown>"))]
    Panicked {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic.
        location: Option<String>,
        /// The pid of the worker (0 for a thread pool).
        pid: u32,
    },
    /// The worker process running the task died.
    #[error("task{}: worker process {pid} {status} while running it", fmt_index(*index))]
    WorkerDied {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// Pid of the worker.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The task ran past the pool's task timeout and its worker was killed.
    #[error("task{} timed out after {timeout:?}; worker {pid} was killed", fmt_index(*index))]
    TimedOut {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// The timeout that was exceeded.
        timeout: Duration,
        /// Pid of the killed worker (0 for a thread pool).
        pid: u32,
    },
    /// The task was cancelled before it finished.
    #[error("task{} was cancelled", fmt_index(*index))]
    Cancelled {
        /// Index of the task in its input, if any.
        index: Option<usize>,
    },
    /// The worker ran out of memory under the pool's memory limit.
    #[error("task{}: worker {pid} exceeded the memory limit of {limit} bytes", fmt_index(*index))]
    MemoryLimit {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// The limit in bytes.
        limit: u64,
        /// Pid of the worker.
        pid: u32,
    },
    /// The argument or the result could not be serialized.
    #[error("task{}: could not serialize {type_name}: {message}", fmt_index(*index))]
    Serialize {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// The type that failed.
        type_name: String,
        /// What went wrong.
        message: String,
    },
    /// The argument or the result could not be deserialized.
    #[error("task{}: could not deserialize {type_name}: {message}", fmt_index(*index))]
    Deserialize {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// The type that failed.
        type_name: String,
        /// What went wrong.
        message: String,
    },
    /// The pool was shut down or broke before the task could run.
    #[error("task{} was not run: {reason}", fmt_index(*index))]
    PoolClosed {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// Why.
        reason: String,
    },
    /// The worker broke the pool's protocol (a malformed frame: its memory was probably
    /// corrupted by the task); it was killed and replaced.
    #[error("task{}: protocol error from worker pid {pid}: {message}; the worker was replaced", fmt_index(*index))]
    Protocol {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// Pid of the worker.
        pid: u32,
        /// What was wrong.
        message: String,
    },
    /// A task that ran on an MPI rank failed: `error` says how, `rank` and `host` say where.
    #[error("{error} (on MPI rank {rank}, host {host})")]
    OnRank {
        /// The rank the task ran on.
        rank: i32,
        /// That rank's host (`MPI_Get_processor_name`).
        host: String,
        /// How the task failed there.
        error: Box<TaskError>,
    },
    /// A `Manager` server reported a task error it could not describe as one of the
    /// variants above (an update function's failure that did not decode).
    #[error("task{}: remote error: {message}", fmt_index(*index))]
    Remote {
        /// Index of the task in its input, if any.
        index: Option<usize>,
        /// The remote message.
        message: String,
    },
}

fn fmt_index(index: Option<usize>) -> String {
    match index {
        Some(i) => format!(" #{i}"),
        None => String::new(),
    }
}

impl TaskError {
    /// The index of the task in its `map`/`imap` input, if it has one.
    pub fn index(&self) -> Option<usize> {
        match self {
            TaskError::Panicked { index, .. }
            | TaskError::WorkerDied { index, .. }
            | TaskError::TimedOut { index, .. }
            | TaskError::Cancelled { index }
            | TaskError::MemoryLimit { index, .. }
            | TaskError::Serialize { index, .. }
            | TaskError::Deserialize { index, .. }
            | TaskError::PoolClosed { index, .. }
            | TaskError::Protocol { index, .. }
            | TaskError::Remote { index, .. } => *index,
            TaskError::OnRank { error, .. } => error.index(),
        }
    }

    /// Returns the same error with its task index set.
    pub fn with_index(mut self, i: usize) -> TaskError {
        match &mut self {
            TaskError::Panicked { index, .. }
            | TaskError::WorkerDied { index, .. }
            | TaskError::TimedOut { index, .. }
            | TaskError::Cancelled { index }
            | TaskError::MemoryLimit { index, .. }
            | TaskError::Serialize { index, .. }
            | TaskError::Deserialize { index, .. }
            | TaskError::PoolClosed { index, .. }
            | TaskError::Protocol { index, .. }
            | TaskError::Remote { index, .. } => *index = Some(i),
            TaskError::OnRank { error, .. } => {
                let inner = std::mem::replace(&mut **error, TaskError::Cancelled { index: None });
                **error = inner.with_index(i);
            }
        }
        self
    }
}
