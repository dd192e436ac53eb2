//! `Process`: run a function in a new process, like `multiprocessing.Process`.

use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{self, Child, ChildSpec, StartMethod, TaskCtx};
use crate::error::{Error, Result};
use crate::wire::fdctx;

#[derive(Serialize, Deserialize)]
struct Payload {
    thunk: i64,
    arg: Vec<u8>,
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    parent_name: String,
    parent_pid: u32,
}

/// What this process knows about itself (see [`current_process`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    daemon: bool,
    identity: Vec<u32>,
}

impl CurrentProcess {
    /// Its name: `"MainProcess"` in the program's first process, the [`Process`]'s name
    /// (default `Process-N`, `Process-N:M` for a grandchild) in a child.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it was started as a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

struct Me {
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    parent: ParentProcess,
}

/// The process that started this one, as [`parent_process`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProcess {
    name: String,
    pid: u32,
}

impl ParentProcess {
    /// Its name (`"MainProcess"` for the program's first process).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it still runs. (A child dies with its parent, so this is `true` in all but
    /// the last moments of a child whose parent was killed.)
    pub fn is_alive(&self) -> bool {
        rustix::process::Pid::from_raw(self.pid as i32).is_some_and(|p| {
            !matches!(
                rustix::process::test_kill_process(p),
                Err(rustix::io::Errno::SRCH)
            )
        })
    }
}

/// The process that started this one with [`Process`] (Python's
/// `multiprocessing.parent_process()`); `None` in the program's first process.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Process, parent_process};
/// assert!(parent_process().is_none());
/// fn child(parent_pid: u32) {
///     let parent = parent_process().unwrap();
///     assert_eq!((parent.name(), parent.pid()), ("MainProcess", parent_pid));
///     assert!(parent.is_alive());
/// }
/// let p = Process::start(child, std::process::id()).unwrap();
/// p.join();
/// assert_eq!(p.exitcode(), Some(0));
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    ME.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|m| m.parent.clone())
}

static ME: Mutex<Option<Me>> = Mutex::new(None);
/// Number of children this process has started (for `Process-N` names).
static COUNTER: AtomicU32 = AtomicU32::new(0);
/// Children started by this process that may still run (pruned as they end).
static CHILDREN: Mutex<Vec<Process>> = Mutex::new(Vec::new());

/// The process this code runs in: its name and pid (`multiprocessing.current_process()`).
///
/// ```
/// assert_eq!(multiproc::current_process().name(), "MainProcess");
/// assert_eq!(multiproc::current_process().pid(), std::process::id());
/// ```
pub fn current_process() -> CurrentProcess {
    let me = ME.lock().unwrap_or_else(|e| e.into_inner());
    match &*me {
        Some(m) => CurrentProcess {
            name: m.name.clone(),
            pid: std::process::id(),
            daemon: m.daemon,
            identity: m.identity.clone(),
        },
        None => CurrentProcess {
            name: "MainProcess".into(),
            pid: std::process::id(),
            daemon: false,
            identity: Vec::new(),
        },
    }
}

/// The children started by this process that are still running
/// (`multiprocessing.active_children()`).
pub fn active_children() -> Vec<Process> {
    let mut c = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    c.retain(Process::is_alive);
    c.clone()
}

/// Drops the registry's copies of children that have ended, so a joined and dropped
/// `Process` holds nothing (its pidfd) any more; without this they lived until the next
/// start.
fn forget_ended_children() {
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(Process::is_alive);
}

/// How long a daemonic child has, after the SIGTERM its parent's exit sends it, before a
/// SIGKILL: time to run a handler, not enough to hold the exit.
const DAEMON_GRACE: Duration = Duration::from_secs(1);

/// At exit (of the main program, or of a child's function): terminate daemonic children,
/// then wait for every child, as Python does, except that a daemon still running
/// [`DAEMON_GRACE`] after its SIGTERM is killed (Python would wait for it forever).
fn join_children_at_exit() {
    let children = std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(|e| e.into_inner()));
    let daemons: Vec<&Process> = children.iter().filter(|p| p.daemon).collect();
    for p in daemons.iter().filter(|p| p.is_alive()) {
        let _ = p.terminate();
    }
    let grace_ends = std::time::Instant::now() + DAEMON_GRACE;
    for p in daemons {
        let left = grace_ends.saturating_duration_since(std::time::Instant::now());
        if !p.join_timeout(left) {
            let _ = p.kill();
        }
    }
    for p in &children {
        p.join();
    }
}

/// Options for a new [`Process`]: name, daemon flag, start method.
#[derive(Debug, Clone, Default)]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: bool,
    method: StartMethod,
}

impl ProcessBuilder {
    /// Its name (default `Process-N`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon process is terminated, not waited for, when its parent exits (default:
    /// not a daemon; the parent waits for it at exit): it gets SIGTERM, and SIGKILL if it
    /// is still running a second later. Either way a child dies with its parent if the
    /// parent is killed.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// How to start it (default: fork server).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// Starts `target(a, b, ...)` for a function of several arguments, given as a tuple
    /// (Python's `Process(target=f, args=(a, b))`).
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// fn check_sum(a: i32, b: i32, sum: i32) { assert_eq!(a + b, sum) }
    /// let p = multiproc::Process::builder().start_star(check_sum, (1, 2, 3)).unwrap();
    /// p.join();
    /// assert_eq!(p.exitcode(), Some(0));
    /// ```
    pub fn start_star<F, Args>(self, target: F, args: Args) -> Result<Process>
    where
        F: crate::StarFn<Args, Output = ()>,
        Args: Serialize + DeserializeOwned + 'static,
    {
        self.start(move |args: Args| target.call_star(args), args)
    }

    /// Starts `target(arg)` in a new process.
    ///
    /// `arg` may contain [`Connection`](crate::Connection)s and [`Queue`](crate::Queue)s:
    /// their file descriptors travel with it.
    pub fn start<F, A>(self, target: F, arg: A) -> Result<Process>
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        crate::sys::code::assert_shippable!(F);
        // Framed as the shipped thunk reads it (`bootstrap::task::run_task`); a panic in the
        // user's `Serialize` becomes this error.
        let (arg, fds) = fdctx::collect_fds(|| {
            let mut v = Vec::new();
            bootstrap::task::encode_framed(&arg, &mut v).map(|_| v)
        });
        let arg = arg.map_err(|message| Error::Serialize {
            type_name: std::any::type_name::<A>(),
            message,
        })?;
        if fds.len() > fdctx::MAX_CHILD_FDS {
            return Err(Error::InvalidArgument(format!(
                "a Process argument can carry at most {} connections or queues, not {}",
                fdctx::MAX_CHILD_FDS,
                fds.len()
            )));
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
        let mut identity = current_process().identity;
        identity.push(n);
        let name = self.name.unwrap_or_else(|| {
            let ids: Vec<String> = identity.iter().map(u32::to_string).collect();
            format!("Process-{}", ids.join(":"))
        });
        let thunk = crate::bootstrap::ship_task(target);
        let payload = Payload {
            thunk,
            arg,
            name: name.clone(),
            identity,
            daemon: self.daemon,
            parent_name: current_process().name,
            parent_pid: std::process::id(),
        };
        let payload = postcard::to_stdvec(&payload).expect("payload serializes");
        let mut spec = ChildSpec::new(process_entry, payload);
        spec.fds = fds;
        let child = bootstrap::start_child(self.method, spec)?;
        let p = Process {
            child,
            name,
            daemon: self.daemon,
        };
        crate::sys::atexit::at_exit(join_children_at_exit);
        let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        children.retain(Process::is_alive);
        children.push(p.clone());
        Ok(p)
    }
}

/// A function running in its own process (`multiprocessing.Process`).
///
/// The function is a `fn` item or a non-capturing closure taking one serializable
/// argument (use a tuple for several). A panic in it prints its message on the child's
/// stderr and ends the child with exit code 1. Dropping a `Process` neither waits for nor
/// stops it; a program that returns from `main` waits for its non-daemon children first.
/// As in Python, the child's stdin is `/dev/null`; stdout and stderr are the parent's.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::Process;
/// fn greet(name: String) { println!("hello, {name}"); }
/// let p = Process::start(greet, "world".to_string()).unwrap();
/// p.join();
/// assert_eq!(p.exitcode(), Some(0));
/// ```
#[derive(Debug, Clone)]
pub struct Process {
    child: Child,
    name: String,
    daemon: bool,
}

impl Process {
    /// Options: name, daemon, start method.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let p = multiproc::Process::builder().name("worker").daemon(true)
    ///     .start(|x: u32| assert_eq!(x, 7), 7).unwrap();
    /// assert_eq!(p.name(), "worker");
    /// p.join();
    /// assert_eq!(p.exitcode(), Some(0));
    /// ```
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::default()
    }

    /// Starts `target(arg)` in a new process (fork server start method).
    pub fn start<F, A>(target: F, arg: A) -> Result<Process>
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        crate::sys::code::assert_shippable!(F);
        ProcessBuilder::default().start(target, arg)
    }

    /// Starts `target(a, b, ...)` for a function of several arguments, given as a tuple.
    pub fn start_star<F, Args>(target: F, args: Args) -> Result<Process>
    where
        F: crate::StarFn<Args, Output = ()>,
        Args: Serialize + DeserializeOwned + 'static,
    {
        ProcessBuilder::default().start_star(target, args)
    }

    /// Starts `target(arg)` with the given start method.
    pub fn start_with<F, A>(method: StartMethod, target: F, arg: A) -> Result<Process>
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        ProcessBuilder::default()
            .start_method(method)
            .start(target, arg)
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Waits for the process to end.
    pub fn join(&self) {
        self.child.wait();
        forget_ended_children();
    }

    /// Waits at most `timeout`; returns whether it has ended.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let ended = self.child.wait_timeout(timeout).is_some();
        if ended {
            forget_ended_children();
        }
        ended
    }

    /// Whether it is still running.
    pub fn is_alive(&self) -> bool {
        self.child.status().is_none()
    }

    /// Python's `exitcode`: `None` while running, `Some(code)`, or `Some(-signal)`.
    pub fn exitcode(&self) -> Option<i32> {
        self.child.status().and_then(|s| s.exitcode())
    }

    /// Sends SIGTERM to the process *and every process it started* (its process group).
    ///
    /// Unlike Python, which signals the child alone: each `Process` leads a process group
    /// of its own, so the programs its function ran (a `sleep`, a shell pipeline) do not
    /// outlive it. Processes it started through multiproc lead groups of their own and die
    /// with it through their death signal. A process that made its own session (`setsid`)
    /// is out of reach.
    ///
    /// Being its own group also means a terminal's Ctrl-C reaches only the parent, which
    /// decides what happens to its children (if the parent dies of it, they die with it).
    pub fn terminate(&self) -> Result<()> {
        self.child.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL to the process and every process it started (its process group; see
    /// [`terminate`](Process::terminate)).
    pub fn kill(&self) -> Result<()> {
        self.child.signal(libc::SIGKILL)
    }
}

fn process_entry(payload: &[u8], fds: Vec<OwnedFd>) -> i32 {
    bootstrap::task::capture_panics();
    let Ok(p) = postcard::from_bytes::<Payload>(payload) else {
        return 97;
    };
    *ME.lock().unwrap_or_else(|e| e.into_inner()) = Some(Me {
        name: p.name,
        identity: p.identity,
        daemon: p.daemon,
        parent: ParentProcess {
            name: p.parent_name,
            pid: p.parent_pid,
        },
    });
    let f = crate::bootstrap::unship_task(p.thunk);
    let mut out = Vec::new();
    let ctx = TaskCtx {
        pid: std::process::id(),
    };
    let ok = fdctx::with_fds(fds, || f(&mut &p.arg[..], &mut out, &ctx));
    if !ok
        && let Ok(crate::error::TaskError::Deserialize {
            message, type_name, ..
        }) = postcard::from_bytes::<crate::error::TaskError>(&out)
    {
        eprintln!("multiproc: the Process argument could not be decoded as {type_name}: {message}");
    }
    // A child leaves through `_exit`, so run what `exit` would: wait for our non-daemon
    // threads, then our own children.
    crate::threading::join_threads_at_exit();
    join_children_at_exit();
    if ok { 0 } else { 1 }
}
