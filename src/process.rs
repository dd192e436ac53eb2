//! `Process`: run a function in a new process, like `multiprocessing.Process`.

use std::os::fd::OwnedFd;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{self, Child, ChildSpec, StartMethod, TaskCtx};
use crate::error::{Error, Result};

#[derive(Serialize, Deserialize)]
struct Payload {
    thunk: i64,
    arg: Vec<u8>,
}

/// A function running in its own process.
///
/// ```
/// # multiproc::init();
/// use multiproc::Process;
/// fn greet(name: String) { println!("hello, {name}"); }
/// let p = Process::start(greet, "world".to_string()).unwrap();
/// p.join();
/// assert_eq!(p.exitcode(), Some(0));
/// ```
#[derive(Debug)]
pub struct Process {
    child: Child,
}

impl Process {
    /// Starts `target(arg)` in a new process (fork server start method).
    pub fn start<F, A>(target: F, arg: A) -> Result<Process>
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        Self::start_with(StartMethod::default(), target, arg)
    }

    /// Starts `target(arg)` with the given start method.
    pub fn start_with<F, A>(method: StartMethod, target: F, arg: A) -> Result<Process>
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        let arg = postcard::to_stdvec(&arg).map_err(|e| Error::Serialize {
            type_name: std::any::type_name::<A>(),
            message: e.to_string(),
        })?;
        let thunk = crate::sys::code::ship_task(target);
        let payload = postcard::to_stdvec(&Payload { thunk, arg }).expect("payload serializes");
        let child = bootstrap::start_child(method, ChildSpec::new(process_entry, payload))?;
        Ok(Process { child })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Waits for the process to end.
    pub fn join(&self) {
        self.child.wait();
    }

    /// Waits at most `timeout`; returns whether it has ended.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.child.wait_timeout(timeout).is_some()
    }

    /// Whether it is still running.
    pub fn is_alive(&self) -> bool {
        self.child.status().is_none()
    }

    /// Python's `exitcode`: `None` while running, `Some(code)`, or `Some(-signal)`.
    pub fn exitcode(&self) -> Option<i32> {
        self.child.status().and_then(|s| s.exitcode())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> Result<()> {
        self.child.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> Result<()> {
        self.child.signal(libc::SIGKILL)
    }
}

fn process_entry(payload: &[u8], _fds: Vec<OwnedFd>) -> i32 {
    bootstrap::task::capture_panics();
    let Ok(p) = postcard::from_bytes::<Payload>(payload) else {
        return 97;
    };
    let f = crate::sys::code::unship_task(p.thunk);
    let mut out = Vec::new();
    let ctx = TaskCtx {
        pid: std::process::id(),
    };
    if f(&mut &p.arg[..], &mut out, &ctx) {
        0
    } else {
        1
    }
}
