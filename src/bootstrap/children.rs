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

    /// Sends a signal, unless it has already ended.
    pub(crate) fn signal(&self, sig: i32) -> Result<()> {
        if self.status().is_some() {
            return Ok(());
        }
        match &self.pidfd {
            Some(fd) => sp::pidfd_kill(&**fd, sig),
            None => sp::kill(self.pid, sig),
        }
        .map_err(|e| Error::io(format!("signal {sig} to process {}", self.pid), e))
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
    let m = manager();
    let (tx, rx) = crossbeam_channel::bounded(1);
    m.tx.send(Cmd::Start(method, spec, tx))
        .map_err(|_| Error::StartFailed("manager thread gone".into()))?;
    let _ = rustix::io::write(&m.wake, &1u64.to_ne_bytes());
    rx.recv()
        .map_err(|_| Error::StartFailed("manager thread gone".into()))?
}

/// How long a new process has to complete the handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);

struct Server {
    sock: OwnedFd,
    pid: u32,
    proc: std::process::Child,
    pending: HashMap<u64, (Option<ExitCallback>, Sender<Result<Child>>)>,
    children: HashMap<u32, Arc<ChildState>>,
}

#[derive(Default)]
struct Loop {
    servers: HashMap<PathBuf, Server>,
    spawned: Vec<(u32, Arc<OwnedFd>, Arc<ChildState>)>,
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

/// Starts `exe` in `role` and waits for its hello; checks it is the same build.
fn launch(exe: &Path, role: &str) -> Result<(OwnedFd, std::process::Child, u32)> {
    let (mine, theirs) = seqpacket_pair()?;
    let envs = [
        (super::ROLE_ENV, role.to_string()),
        (super::FD_ENV, theirs.as_raw_fd().to_string()),
    ];
    let mut proc = sp::spawn_exec(exe, theirs.as_raw_fd(), &envs)
        .map_err(|e| Error::StartFailed(format!("cannot execute {}: {e}", exe.display())))?;
    drop(theirs);
    let pid = proc.id();
    let fail = |proc: &mut std::process::Child, why: String| {
        let _ = proc.kill();
        let _ = proc.wait();
        Err(Error::StartFailed(why))
    };
    let mut pfd = [PollFd::new(&mine, PollFlags::IN)];
    let ts = crate::sys::timespec(HELLO_TIMEOUT);
    let ready = loop {
        match rustix::event::poll(&mut pfd, Some(&ts)) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r.unwrap_or(0),
        }
    };
    if ready == 0 {
        return fail(
            &mut proc,
            format!(
                "{} did not answer the multiproc handshake within {HELLO_TIMEOUT:?}",
                exe.display()
            ),
        );
    }
    let mut buf = [0u8; 512];
    let n = recv_with_fds(&mine, &mut buf).map(|(n, _)| n).unwrap_or(0);
    let hello = if n == 0 {
        None
    } else {
        postcard::from_bytes::<Reply>(&buf[..n]).ok()
    };
    match hello {
        Some(Reply::Hello { build_id, .. }) if build_id == super::build_id::build_id() => {
            Ok((mine, proc, pid))
        }
        Some(Reply::Hello { build_id, .. }) => {
            let _ = proc.kill();
            let _ = proc.wait();
            Err(Error::BinaryMismatch {
                path: exe.display().to_string(),
                expected: super::build_id::build_id().to_string(),
                found: build_id,
            })
        }
        _ => {
            let status = proc.wait().ok();
            Err(Error::StartFailed(format!(
                "{} exited ({}) before the multiproc handshake; does its main call \
                 multiproc::init() first (or its test file use multiproc::test_support!())?",
                exe.display(),
                status.map(|s| s.to_string()).unwrap_or_default()
            )))
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
        }
    }

    fn poll_once(&mut self, wake: &OwnedFd) {
        let servers: Vec<PathBuf> = self.servers.keys().cloned().collect();
        let (server_ready, spawned_ready) = {
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
            if let Err(e) = rustix::event::poll(&mut polls, None) {
                if e != rustix::io::Errno::INTR {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return;
            }
            let ready = |i: usize| !polls[i].revents().is_empty();
            let s: Vec<bool> = (0..servers.len()).map(|i| ready(1 + i)).collect();
            let c: Vec<bool> = (0..self.spawned.len())
                .map(|i| ready(1 + servers.len() + i))
                .collect();
            (s, c)
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
            Some(Reply::Hello { .. }) => {}
            None => {
                // The fork server died; its children die with it (PR_SET_PDEATHSIG).
                let mut server = self.servers.remove(key).expect("server exists");
                let _ = server.proc.kill();
                let _ = server.proc.wait();
                for (_, (_, tx)) in server.pending.drain() {
                    let _ = tx.send(Err(Error::StartFailed(format!(
                        "fork server {} died",
                        server.pid
                    ))));
                }
                for (pid, state) in server.children.drain() {
                    // Wait for the kernel to deliver the death signal before reporting.
                    let _ = sp::pidfd_open(pid).map(|fd| {
                        let mut p = [PollFd::new(&fd, PollFlags::IN)];
                        let ts = crate::sys::timespec(Duration::from_secs(1));
                        let _ = rustix::event::poll(&mut p, Some(&ts));
                    });
                    state.exited(
                        pid,
                        ExitStatus {
                            code: None,
                            signal: Some(libc::SIGKILL),
                        },
                    );
                }
            }
        }
    }

    fn start(&mut self, method: StartMethod, mut spec: ChildSpec, reply: Sender<Result<Child>>) {
        self.next_id += 1;
        let id = self.next_id;
        let exe = exe_of(&spec);
        let r = match method {
            StartMethod::ForkServer => self.start_forked(id, exe, &mut spec),
            StartMethod::Spawn => self.start_spawned(id, &exe, &mut spec),
        };
        match r {
            Ok(Some(child)) => {
                let _ = reply.send(Ok(child));
            }
            Ok(None) => {
                let server = self.servers.get_mut(&exe_of(&spec)).expect("server exists");
                server.pending.insert(id, (spec.on_exit.take(), reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn stop_servers(&mut self) {
        for (_, mut server) in self.servers.drain() {
            drop(server.sock); // the server exits on EOF; its children die with it
            let end = Instant::now() + Duration::from_millis(500);
            while matches!(server.proc.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = server.proc.kill();
            let _ = server.proc.wait();
            for (_, (_, tx)) in server.pending.drain() {
                let _ = tx.send(Err(Error::StartFailed("the program is exiting".into())));
            }
        }
    }

    /// Asks the fork server; the reply arrives later as `Started`.
    fn start_forked(
        &mut self,
        id: u64,
        exe: PathBuf,
        spec: &mut ChildSpec,
    ) -> Result<Option<Child>> {
        if !self.servers.contains_key(&exe) {
            let (sock, proc, pid) = launch(&exe, "forkserver")?;
            let server = Server {
                sock,
                pid,
                proc,
                pending: HashMap::new(),
                children: HashMap::new(),
            };
            self.servers.insert(exe.clone(), server);
            crate::sys::atexit::at_exit_last(stop_fork_servers);
        }
        let msg = encode_start(id, spec)?;
        send_start(&self.servers[&exe].sock, &msg, &spec.fds)?;
        spec.fds.clear();
        Ok(None)
    }

    fn start_spawned(
        &mut self,
        id: u64,
        exe: &Path,
        spec: &mut ChildSpec,
    ) -> Result<Option<Child>> {
        let (sock, proc, pid) = launch(exe, "child")?;
        let msg = encode_start(id, spec)?;
        send_start(&sock, &msg, &spec.fds)?;
        spec.fds.clear();
        drop(sock);
        drop(proc); // std's Child does not kill or reap on drop; we reap through the pidfd.
        let pidfd = Arc::new(sp::pidfd_open(pid).map_err(|e| Error::io("pidfd_open", e))?);
        let state = Arc::new(ChildState::default());
        *state.on_exit.lock().unwrap() = spec.on_exit.take();
        self.spawned.push((pid, pidfd.clone(), state.clone()));
        Ok(Some(Child {
            pid,
            pidfd: Some(pidfd),
            state,
        }))
    }
}
