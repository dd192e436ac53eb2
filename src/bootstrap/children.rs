//! Starting and watching child processes.
//!
//! One *manager thread* per program starts every child and watches every child. It lives as
//! long as the program, which matters: `PR_SET_PDEATHSIG` fires when the *thread* that
//! created a child exits, so children must not be started from short-lived threads (a test
//! thread, say). It also owns the connections to fork servers and reaps spawned children.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rustix::event::{PollFd, PollFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::protocol::{INLINE_MAX, Reply, Start};
use crate::error::{Error, ExitStatus, Result};
use crate::sys::code::ChildEntry;
use crate::sys::fdpass::{recv_with_fds, send_with_fds};
use crate::sys::process as sp;

/// How worker processes are started. `StartMethod::default()` is the process-wide choice
/// of [`set_start_method`], else [`ForkServer`](StartMethod::ForkServer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMethod {
    /// Fork each worker from a fork server: a single-threaded process of this same program,
    /// started on first use. Fast (a fork, no exec) and safe (the server has no threads and
    /// no state of the parent). The default on Linux.
    ForkServer,
    /// Re-execute this program for every worker. Slower to start; nothing is shared.
    Spawn,
}

/// The process-wide start method, once [`set_start_method`] chose one.
static CHOSEN: std::sync::Mutex<Option<StartMethod>> = std::sync::Mutex::new(None);

impl Default for StartMethod {
    fn default() -> StartMethod {
        get_start_method()
    }
}

/// Chooses how every `Process` and `ProcessPool` that does not say otherwise starts
/// (Python's `multiprocessing.set_start_method`). As in Python, it is set once: a later
/// call that changes it is an [`Error::InvalidArgument`](crate::Error::InvalidArgument)
/// unless `force`.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{StartMethod, get_start_method, set_start_method};
/// assert_eq!(get_start_method(), StartMethod::ForkServer);
/// set_start_method(StartMethod::Spawn, false).unwrap();
/// assert!(set_start_method(StartMethod::ForkServer, false).is_err());
/// assert_eq!(get_start_method(), StartMethod::Spawn);
/// let p = multiproc::Process::start(|x: u8| assert_eq!(x, 1), 1).unwrap();
/// p.join();
/// assert_eq!(p.exitcode(), Some(0));
/// ```
pub fn set_start_method(method: StartMethod, force: bool) -> crate::Result<()> {
    let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    match *chosen {
        Some(m) if !force && m != method => Err(crate::Error::InvalidArgument(format!(
            "the start method was already set to {m:?}; pass force = true to change it"
        ))),
        _ => {
            *chosen = Some(method);
            Ok(())
        }
    }
}

/// The start method that `Process` and `ProcessPool` use unless told otherwise (Python's
/// `multiprocessing.get_start_method`).
pub fn get_start_method() -> StartMethod {
    CHOSEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(StartMethod::ForkServer)
}

/// Called on the manager thread with the pid and status of an exited child.
pub(crate) type ExitCallback = Box<dyn FnOnce(u32, ExitStatus) + Send>;

/// What to run in a new child.
pub(crate) struct ChildSpec {
    /// Entry point (runs in the child).
    pub entry: ChildEntry,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Fds handed to the entry point, in order.
    pub fds: Vec<OwnedFd>,
    /// The executable, if not this program.
    pub executable: Option<PathBuf>,
    /// Called on the manager thread when the child has exited. Must not block.
    pub on_exit: Option<ExitCallback>,
}

impl ChildSpec {
    pub(crate) fn new(entry: ChildEntry, payload: Vec<u8>) -> ChildSpec {
        ChildSpec {
            entry,
            payload,
            fds: Vec::new(),
            executable: None,
            on_exit: None,
        }
    }
}

#[derive(Default)]
struct ChildState {
    status: Mutex<Option<ExitStatus>>,
    cv: Condvar,
    on_exit: Mutex<Option<ExitCallback>>,
}

impl ChildState {
    fn exited(&self, pid: u32, status: ExitStatus) {
        // A child that did not end cleanly may have left shared-memory segments behind:
        // we are the long-lived owner that removes them (names carry their creator's pid).
        if status.code != Some(0) {
            crate::shm::sweep_dead_owners();
        }
        *self.status.lock().unwrap() = Some(status);
        self.cv.notify_all();
        let cb = self.on_exit.lock().unwrap().take();
        if let Some(cb) = cb {
            cb(pid, status);
        }
    }
}

/// A started child process.
#[derive(Clone)]
pub(crate) struct Child {
    pid: u32,
    pidfd: Option<Arc<OwnedFd>>,
    state: Arc<ChildState>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("status", &self.status())
            .finish()
    }
}

impl Child {
    /// Its pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// How it ended, or `None` while it runs.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        *self.state.status.lock().unwrap()
    }

    /// Waits until it has ended (and has been reaped).
    pub(crate) fn wait(&self) -> ExitStatus {
        let mut s = self.state.status.lock().unwrap();
        loop {
            if let Some(st) = *s {
                return st;
            }
            s = self.state.cv.wait(s).unwrap();
        }
    }

    /// Waits at most `timeout`.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.status.lock().unwrap();
        loop {
            if let Some(st) = *s {
                return Some(st);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            s = self.state.cv.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Sends a signal to its process group, unless it has already ended: every child leads
    /// a group of its own, so the processes it started (a task's `sleep`, a shell pipeline)
    /// get the signal too and a kill leaves none of them running. Falls back to the child
    /// alone if it has no group (yet). A grandchild that made a group or session of its
    /// own (`setsid`) is out of reach, as with any job control.
    pub(crate) fn signal(&self, sig: i32) -> Result<()> {
        if self.status().is_some() {
            return Ok(());
        }
        let r = sp::kill_group(self.pid, sig);
        // The group kill reached the leader too; through the pidfd as well, in case it left
        // its group (the pidfd cannot hit a reused pid).
        let r = match (&self.pidfd, r) {
            (Some(fd), Ok(())) => sp::pidfd_kill(&**fd, sig),
            (_, r) => r,
        };
        r.map_err(|e| Error::io(format!("signal {sig} to process {}", self.pid), e))
    }
}

enum Cmd {
    Start(StartMethod, ChildSpec, Sender<Result<Child>>),
    /// Stop every fork server and reap it (at program exit).
    StopServers(Sender<()>),
}

/// At normal program exit: close the fork servers' sockets so they exit, and reap them, so
/// no fork server outlives the program even for a moment as an orphan.
fn stop_fork_servers() {
    let m = manager();
    let (tx, rx) = crossbeam_channel::bounded(1);
    if m.tx.send(Cmd::StopServers(tx)).is_ok() {
        let _ = rustix::io::write(&m.wake, &1u64.to_ne_bytes());
        let _ = rx.recv_timeout(Duration::from_secs(2));
    }
}

struct Manager {
    tx: Sender<Cmd>,
    wake: OwnedFd,
}

fn manager() -> &'static Manager {
    static M: OnceLock<Manager> = OnceLock::new();
    M.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .expect("eventfd");
        let wake2 = wake.try_clone().expect("dup eventfd");
        std::thread::Builder::new()
            .name("multiproc-manager".into())
            .spawn(move || {
                // Segments left by an earlier run of the program that was killed.
                crate::shm::sweep_dead_owners();
                Loop::default().run(rx, wake2)
            })
            .expect("spawn the multiproc manager thread");
        Manager { tx, wake }
    })
}

/// Starts a child process running `spec.entry(spec.payload, spec.fds)`.
pub(crate) fn start_child(method: StartMethod, spec: ChildSpec) -> Result<Child> {
    super::refuse_if_uninitialized();
    let m = manager();
    let (tx, rx) = crossbeam_channel::bounded(1);
    m.tx.send(Cmd::Start(method, spec, tx))
        .map_err(|_| Error::StartFailed("manager thread gone".into()))?;
    let _ = rustix::io::write(&m.wake, &1u64.to_ne_bytes());
    rx.recv()
        .map_err(|_| Error::StartFailed("manager thread gone".into()))?
}

/// How long a new process has to complete the handshake (20 s; the hidden
/// `MULTIPROC_HANDSHAKE_TIMEOUT_MS` overrides it, for tests).
fn hello_timeout() -> Duration {
    static T: OnceLock<Duration> = OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("MULTIPROC_HANDSHAKE_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(20))
    })
}

/// How long a process that closed its socket without a hello may take to exit before it
/// is killed (its exit status is the most useful thing to report).
const EOF_GRACE: Duration = Duration::from_secs(1);

struct Server {
    sock: OwnedFd,
    pid: u32,
    pending: HashMap<u64, (Option<ExitCallback>, Sender<Result<Child>>)>,
    children: HashMap<u32, Arc<ChildState>>,
}

/// A start request waiting for its fork server's handshake.
type Queued = (u64, ChildSpec, Sender<Result<Child>>);

/// What a process under handshake was started for.
enum LaunchFor {
    /// A fork server; the requests waiting for it are in `Loop::queued`.
    Server,
    /// A spawned child, with its job.
    Child(u64, Box<ChildSpec>, Sender<Result<Child>>),
}

/// A process started that has not said hello yet. The manager watches it like any other
/// child and never waits for it: at `deadline` it is killed.
struct Launching {
    exe: PathBuf,
    sock: OwnedFd,
    pid: u32,
    pidfd: OwnedFd,
    deadline: Instant,
    /// Its socket reached EOF without a hello: now waiting (until `deadline`) for it to exit.
    eof: bool,
    what: LaunchFor,
}

#[derive(Default)]
struct Loop {
    servers: HashMap<PathBuf, Server>,
    queued: HashMap<PathBuf, Vec<Queued>>,
    launching: Vec<Launching>,
    spawned: Vec<(u32, Arc<OwnedFd>, Arc<ChildState>)>,
    /// Children of a fork server that died: killed, reported once gone.
    orphans: Vec<(u32, OwnedFd, Arc<ChildState>)>,
    /// Killed processes not reaped yet (reaped when their pidfd turns readable).
    reaping: Vec<(u32, OwnedFd)>,
    next_id: u64,
}

fn exe_of(spec: &ChildSpec) -> PathBuf {
    spec.executable
        .clone()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socketpair", e))
}

/// Starts `exe` in `role`; its hello is awaited by the manager loop, not here.
fn launch(
    exe: &Path,
    role: &str,
    what: LaunchFor,
) -> std::result::Result<Launching, (Error, LaunchFor)> {
    let (mine, theirs) = match seqpacket_pair() {
        Ok(x) => x,
        Err(e) => return Err((e, what)),
    };
    let envs = [
        (super::ROLE_ENV, role.to_string()),
        (super::FD_ENV, theirs.as_raw_fd().to_string()),
    ];
    let proc = match sp::spawn_exec(exe, theirs.as_raw_fd(), &envs) {
        Ok(p) => p,
        Err(e) => {
            let e = Error::StartFailed(format!("cannot execute {}: {e}", exe.display()));
            return Err((e, what));
        }
    };
    drop(theirs);
    let pid = proc.id();
    drop(proc); // std's Child neither kills nor reaps on drop: the manager reaps it.
    // Nobody else reaps our children, so the pid stays ours (a zombie at worst) until then.
    let pidfd = match sp::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = sp::kill_group(pid, libc::SIGKILL);
            let _ = sp::wait(pid);
            return Err((Error::io("pidfd_open", e), what));
        }
    };
    Ok(Launching {
        exe: exe.to_path_buf(),
        sock: mine,
        pid,
        pidfd,
        deadline: Instant::now() + hello_timeout(),
        eof: false,
        what,
    })
}

/// How a child of a dead fork server ended: killed by its death signal.
const ORPHAN_STATUS: ExitStatus = ExitStatus {
    code: None,
    signal: Some(libc::SIGKILL),
};

/// Why a handshake failed, to build one error per waiting request.
enum Refusal {
    Mismatch(String),
    NotInitialized,
    Exited(ExitStatus),
    SilentEof,
    Timeout,
}

impl Refusal {
    fn error(&self, exe: &Path, pid: u32) -> Error {
        let exe = exe.display();
        match self {
            Refusal::Mismatch(found) => Error::BinaryMismatch {
                path: exe.to_string(),
                expected: super::build_id::build_id().to_string(),
                found: found.clone(),
            },
            Refusal::NotInitialized => Error::StartFailed(format!(
                "{exe} (pid {pid}) was started as a worker but ran the program's own code \
                 instead, which tried to start another process; it was stopped. \
                 multiproc::init() did not run before that code: call multiproc::init() as \
                 the first line of main (before anything that starts processes)"
            )),
            Refusal::Exited(st) => Error::StartFailed(format!(
                "{exe} (pid {pid}) {st} before the multiproc handshake; is it this program, \
                 and does multiproc::init() run before its own code?"
            )),
            Refusal::SilentEof => Error::StartFailed(format!(
                "{exe} (pid {pid}) closed its multiproc control socket without a handshake \
                 and was killed; is it this program?"
            )),
            Refusal::Timeout => Error::StartFailed(format!(
                "{exe} (pid {pid}) did not answer the multiproc handshake within {:?} and was \
                 killed; is it this program, and does multiproc::init() run before its own \
                 code?",
                hello_timeout()
            )),
        }
    }
}

/// Encodes a Start message; a large payload goes in a memfd appended to `fds`.
fn encode_start(id: u64, spec: &mut ChildSpec) -> Result<Vec<u8>> {
    let entry = crate::sys::code::ship_entry(spec.entry);
    let payload_len = spec.payload.len() as u64;
    let payload = if spec.payload.len() <= INLINE_MAX {
        Some(std::mem::take(&mut spec.payload))
    } else {
        let fd = crate::sys::mem::memfd("multiproc-payload", 0)?;
        let mut f = std::fs::File::from(fd);
        f.write_all(&spec.payload)
            .map_err(|e| Error::io("write payload memfd", e))?;
        rustix::fs::seek(&f, rustix::fs::SeekFrom::Start(0))
            .map_err(|e| Error::io("seek memfd", e))?;
        spec.fds.push(OwnedFd::from(f));
        None
    };
    Ok(postcard::to_stdvec(&Start {
        id,
        entry,
        payload,
        payload_len,
    })
    .expect("Start serializes"))
}

fn send_start(sock: &OwnedFd, msg: &[u8], fds: &[OwnedFd]) -> Result<()> {
    let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    send_with_fds(sock, msg, &b).map_err(|e| Error::io("send start request", e))
}

impl Loop {
    fn run(mut self, rx: Receiver<Cmd>, wake: OwnedFd) {
        loop {
            self.poll_once(&wake);
            let mut drain = [0u8; 8];
            let _ = rustix::io::read(&wake, &mut drain);
            while let Ok(cmd) = rx.try_recv() {
                match cmd {
                    Cmd::Start(method, spec, reply) => self.start(method, spec, reply),
                    Cmd::StopServers(reply) => {
                        self.stop_servers();
                        let _ = reply.send(());
                    }
                }
            }
            self.expire_handshakes();
        }
    }

    /// Waits for anything: a command, a fork server's message, a child's exit, a hello, a
    /// handshake deadline. Handles what is ready; never blocks on one child.
    fn poll_once(&mut self, wake: &OwnedFd) {
        let servers: Vec<PathBuf> = self.servers.keys().cloned().collect();
        let timeout = self
            .launching
            .iter()
            .map(|l| l.deadline.saturating_duration_since(Instant::now()))
            .min()
            .map(crate::sys::timespec);
        let (server_ready, spawned_ready, launch_ready, reap_ready, orphan_ready) = {
            let mut polls = vec![PollFd::new(wake, PollFlags::IN)];
            polls.extend(
                servers
                    .iter()
                    .map(|k| PollFd::new(&self.servers[k].sock, PollFlags::IN)),
            );
            polls.extend(
                self.spawned
                    .iter()
                    .map(|(_, fd, _)| PollFd::new(&**fd, PollFlags::IN)),
            );
            polls.extend(self.launching.iter().map(|l| {
                if l.eof {
                    PollFd::new(&l.pidfd, PollFlags::IN)
                } else {
                    PollFd::new(&l.sock, PollFlags::IN)
                }
            }));
            polls.extend(
                self.reaping
                    .iter()
                    .map(|(_, fd)| PollFd::new(fd, PollFlags::IN)),
            );
            polls.extend(
                self.orphans
                    .iter()
                    .map(|(_, fd, _)| PollFd::new(fd, PollFlags::IN)),
            );
            if let Err(e) = rustix::event::poll(&mut polls, timeout.as_ref()) {
                if e != rustix::io::Errno::INTR {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return;
            }
            let ready = |i: usize| !polls[i].revents().is_empty();
            let mut at = 1;
            let mut take = |n: usize| {
                let v: Vec<bool> = (at..at + n).map(ready).collect();
                at += n;
                v
            };
            (
                take(servers.len()),
                take(self.spawned.len()),
                take(self.launching.len()),
                take(self.reaping.len()),
                take(self.orphans.len()),
            )
        };
        for (k, ready) in servers.iter().zip(server_ready) {
            if ready {
                self.server_readable(k);
            }
        }
        for i in (0..spawned_ready.len()).rev() {
            if spawned_ready[i] {
                let (pid, _fd, state) = self.spawned.swap_remove(i);
                let status = sp::wait(pid).unwrap_or_default();
                state.exited(pid, status);
            }
        }
        for i in (0..reap_ready.len()).rev() {
            if reap_ready[i] {
                let (pid, _fd) = self.reaping.swap_remove(i);
                let _ = sp::wait(pid);
            }
        }
        for i in (0..orphan_ready.len()).rev() {
            if orphan_ready[i] {
                let (pid, _fd, state) = self.orphans.swap_remove(i);
                state.exited(pid, ORPHAN_STATUS);
            }
        }
        for i in (0..launch_ready.len()).rev() {
            if launch_ready[i] {
                let l = self.launching.swap_remove(i);
                self.launch_readable(l);
            }
        }
    }

    /// A hello (or a refusal, or EOF, or an exit) from a process under handshake.
    fn launch_readable(&mut self, mut l: Launching) {
        if l.eof {
            // It exited after closing its socket: report how.
            let status = sp::wait(l.pid).unwrap_or_default();
            return self.fail_launch(l, Refusal::Exited(status), false);
        }
        let mut buf = [0u8; 512];
        let n = recv_with_fds(&l.sock, &mut buf)
            .map(|(n, _)| n)
            .unwrap_or(0);
        let reply = if n == 0 {
            None
        } else {
            postcard::from_bytes::<Reply>(&buf[..n]).ok()
        };
        match reply {
            Some(Reply::Hello { build_id, .. }) if build_id == super::build_id::build_id() => {
                self.launched(l)
            }
            Some(Reply::Hello { build_id, .. }) => {
                self.fail_launch(l, Refusal::Mismatch(build_id), true)
            }
            Some(Reply::NotInitialized { .. }) => {
                self.fail_launch(l, Refusal::NotInitialized, true)
            }
            _ => {
                // Not a hello: give it a moment to exit so its status can be reported.
                l.eof = true;
                l.deadline = Instant::now() + EOF_GRACE;
                self.launching.push(l);
            }
        }
    }

    /// Kills every process whose handshake deadline has passed.
    fn expire_handshakes(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.launching.len() {
            if self.launching[i].deadline <= now {
                let l = self.launching.swap_remove(i);
                let why = if l.eof {
                    Refusal::SilentEof
                } else {
                    Refusal::Timeout
                };
                self.fail_launch(l, why, true);
            } else {
                i += 1;
            }
        }
    }

    /// SIGKILLs `pid`'s group and reaps it once it is gone, without waiting for it here.
    fn kill_and_reap(&mut self, pid: u32, pidfd: Option<OwnedFd>) {
        let _ = sp::kill_group(pid, libc::SIGKILL);
        match pidfd.map(Ok).unwrap_or_else(|| sp::pidfd_open(pid)) {
            Ok(fd) => self.reaping.push((pid, fd)),
            Err(_) => {
                let _ = sp::wait(pid); // already killed: this returns at once
            }
        }
    }

    /// Fails every request that waited for this handshake; kills and reaps the process
    /// (`kill`), or it has already been reaped.
    fn fail_launch(&mut self, l: Launching, why: Refusal, kill: bool) {
        let Launching {
            exe,
            pid,
            pidfd,
            what,
            ..
        } = l;
        if kill {
            self.kill_and_reap(pid, Some(pidfd));
        }
        match what {
            LaunchFor::Server => {
                for (_, _, reply) in self.queued.remove(&exe).unwrap_or_default() {
                    let _ = reply.send(Err(why.error(&exe, pid)));
                }
            }
            LaunchFor::Child(_, _, reply) => {
                let _ = reply.send(Err(why.error(&exe, pid)));
            }
        }
    }

    /// The handshake succeeded: a fork server takes its waiting requests, a spawned child
    /// gets its job.
    fn launched(&mut self, l: Launching) {
        let Launching {
            exe,
            sock,
            pid,
            pidfd,
            what,
            ..
        } = l;
        match what {
            LaunchFor::Server => {
                self.servers.insert(
                    exe.clone(),
                    Server {
                        sock,
                        pid,
                        pending: HashMap::new(),
                        children: HashMap::new(),
                    },
                );
                // The server is reaped at exit (`stop_servers`) or when it dies.
                drop(pidfd);
                crate::sys::atexit::at_exit_last(stop_fork_servers);
                for (id, spec, reply) in self.queued.remove(&exe).unwrap_or_default() {
                    self.send_to_server(&exe, id, spec, reply);
                }
            }
            LaunchFor::Child(id, mut spec, reply) => {
                let sent = encode_start(id, &mut spec).and_then(|msg| {
                    send_start(&sock, &msg, &spec.fds)?;
                    Ok(())
                });
                drop(sock);
                if let Err(e) = sent {
                    self.kill_and_reap(pid, Some(pidfd));
                    let _ = reply.send(Err(e));
                    return;
                }
                let pidfd = Arc::new(pidfd);
                let state = Arc::new(ChildState::default());
                *state.on_exit.lock().unwrap() = spec.on_exit.take();
                self.spawned.push((pid, pidfd.clone(), state.clone()));
                let _ = reply.send(Ok(Child {
                    pid,
                    pidfd: Some(pidfd),
                    state,
                }));
            }
        }
    }

    /// Asks the (ready) fork server for `exe`; the reply arrives later as `Started`.
    fn send_to_server(
        &mut self,
        exe: &Path,
        id: u64,
        mut spec: ChildSpec,
        reply: Sender<Result<Child>>,
    ) {
        let server = self.servers.get_mut(exe).expect("server exists");
        let sent =
            encode_start(id, &mut spec).and_then(|msg| send_start(&server.sock, &msg, &spec.fds));
        match sent {
            Ok(()) => {
                server.pending.insert(id, (spec.on_exit.take(), reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn server_readable(&mut self, key: &Path) {
        let mut buf = [0u8; 1024];
        let server = self.servers.get_mut(key).expect("server exists");
        let n = recv_with_fds(&server.sock, &mut buf)
            .map(|(n, _)| n)
            .unwrap_or(0);
        let reply = if n == 0 {
            None
        } else {
            postcard::from_bytes::<Reply>(&buf[..n]).ok()
        };
        match reply {
            Some(Reply::Started { id, pid }) => {
                if let Some((on_exit, tx)) = server.pending.remove(&id) {
                    let state = Arc::new(ChildState::default());
                    *state.on_exit.lock().unwrap() = on_exit;
                    server.children.insert(pid, state.clone());
                    let pidfd = sp::pidfd_open(pid).ok().map(Arc::new);
                    let _ = tx.send(Ok(Child { pid, pidfd, state }));
                }
            }
            Some(Reply::StartFailed { id, error }) => {
                if let Some((_, tx)) = server.pending.remove(&id) {
                    let _ = tx.send(Err(Error::StartFailed(error)));
                }
            }
            Some(Reply::Exited { pid, status }) => {
                if let Some(state) = server.children.remove(&pid) {
                    state.exited(pid, status);
                }
            }
            Some(Reply::Hello { .. }) | Some(Reply::NotInitialized { .. }) => {}
            None => {
                // The fork server died; its children die with it (PR_SET_PDEATHSIG).
                let mut server = self.servers.remove(key).expect("server exists");
                self.kill_and_reap(server.pid, None);
                for (_, (_, tx)) in server.pending.drain() {
                    let _ = tx.send(Err(Error::StartFailed(format!(
                        "fork server {} died",
                        server.pid
                    ))));
                }
                for (pid, state) in server.children.drain() {
                    // The death signal kills the worker, not what its task started.
                    let _ = sp::kill_group(pid, libc::SIGKILL);
                    // Report once the kernel has delivered the death (init reaps it).
                    match sp::pidfd_open(pid) {
                        Ok(fd) => self.orphans.push((pid, fd, state)),
                        Err(_) => state.exited(pid, ORPHAN_STATUS),
                    }
                }
            }
        }
    }

    fn start(&mut self, method: StartMethod, spec: ChildSpec, reply: Sender<Result<Child>>) {
        self.next_id += 1;
        let id = self.next_id;
        let exe = exe_of(&spec);
        match method {
            StartMethod::ForkServer => {
                if self.servers.contains_key(&exe) {
                    return self.send_to_server(&exe, id, spec, reply);
                }
                let first = !self.queued.contains_key(&exe);
                self.queued
                    .entry(exe.clone())
                    .or_default()
                    .push((id, spec, reply));
                if first {
                    match launch(&exe, "forkserver", LaunchFor::Server) {
                        Ok(l) => self.launching.push(l),
                        Err((e, _)) => {
                            let msg = e.to_string();
                            for (_, _, reply) in self.queued.remove(&exe).unwrap_or_default() {
                                let _ = reply.send(Err(Error::StartFailed(msg.clone())));
                            }
                        }
                    }
                }
            }
            StartMethod::Spawn => {
                match launch(&exe, "child", LaunchFor::Child(id, Box::new(spec), reply)) {
                    Ok(l) => self.launching.push(l),
                    Err((e, LaunchFor::Child(_, _, reply))) => {
                        let _ = reply.send(Err(e));
                    }
                    Err((_, LaunchFor::Server)) => unreachable!("launched for a child"),
                }
            }
        }
    }

    fn stop_servers(&mut self) {
        for (_, mut server) in self.servers.drain() {
            drop(server.sock); // the server exits on EOF; its children die with it
            let end = Instant::now() + Duration::from_millis(500);
            let mut reaped = false;
            while Instant::now() < end {
                if sp::try_wait(server.pid as i32).is_some() {
                    reaped = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if !reaped {
                let _ = sp::kill_group(server.pid, libc::SIGKILL);
                let _ = sp::wait(server.pid);
            }
            for (_, (_, tx)) in server.pending.drain() {
                let _ = tx.send(Err(Error::StartFailed("the program is exiting".into())));
            }
        }
    }
}
