//! The manager server: accepts connections, authenticates them, and serves each one on its
//! own thread. Bad input from one client closes that client's connection (with a log
//! line) and nothing else.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::objects::{Cx, Object};
use super::protocol::{Hello, MAGIC, Op, Request, Response, VERSION, Welcome, WireError};
use super::updates::{Entry, Table};
use crate::connection::{Address, Connection, Listener};
use crate::error::{Error, Result};

/// Receives one line per closed-for-cause connection and per start-up/shutdown event.
pub(crate) type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// The server's limits (they travel to a server child process, hence serde).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Limits {
    pub max_message: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    /// CPUs the server's threads may run on (`None`: wherever).
    pub cpus: Option<Vec<usize>>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(120)),
            cpus: None,
        }
    }
}

pub(crate) fn stderr_logger() -> Logger {
    Arc::new(|line: &str| eprintln!("multiproc manager [{}]: {line}", std::process::id()))
}

struct Shared {
    limits: Limits,
    authkey: Option<Vec<u8>>,
    log: Logger,
    updates: Table,
    instance: u64,
    names: Mutex<HashMap<String, Arc<Object>>>,
    by_id: RwLock<Vec<Arc<Object>>>,
    stopping: AtomicBool,
    conns: Mutex<HashMap<u64, Arc<Connection>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_conn: AtomicU64,
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
}

/// A running server (in this process).
pub(crate) struct Server {
    shared: Arc<Shared>,
    address: Address,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    /// Listens on `address` and starts serving on background threads.
    pub(crate) fn start(
        address: Address,
        authkey: Option<Vec<u8>>,
        limits: Limits,
        updates: Vec<Entry>,
        log: Logger,
    ) -> Result<Server> {
        if matches!(address, Address::Tcp(_)) && authkey.as_ref().is_none_or(|k| k.is_empty()) {
            return Err(Error::InvalidArgument(format!(
                "refusing to serve a manager on TCP ({address}) without an auth key: anyone \
                 who can reach the port could read and change its objects"
            )));
        }
        // Authentication runs on each connection's own thread, so a slow or silent peer
        // cannot hold up `accept` for the others.
        let mut listener = Listener::bind(address, None)?;
        listener.set_max_message_size(limits.max_message);
        let address = listener.address().clone();
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| Error::io("getrandom", std::io::Error::other(e)))?;
        let shared = Arc::new(Shared {
            limits,
            authkey,
            log,
            updates: Table::new(updates),
            instance: u64::from_ne_bytes(seed) | 1,
            names: Mutex::new(HashMap::new()),
            by_id: RwLock::new(Vec::new()),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
            stopped: Mutex::new(false),
            stopped_cv: Condvar::new(),
        });
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("multiproc-manager-accept".into())
            .spawn(move || accept_loop(sh, listener))
            .map_err(|e| Error::io("spawn the manager's accept thread", e))?;
        Ok(Server {
            shared,
            address,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// Where it listens.
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    /// Stops serving: every client is disconnected, every waiting call ends.
    pub(crate) fn stop(&self) {
        begin_stop(&self.shared);
        self.wait();
    }

    /// Waits until the server has stopped (a `Shutdown` request, or [`stop`](Self::stop)).
    pub(crate) fn wait(&self) {
        let mut s = lock(&self.shared.stopped);
        while !*s {
            s = self
                .shared
                .stopped_cv
                .wait(s)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(s);
        if let Some(h) = lock(&self.accept).take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn begin_stop(sh: &Shared) {
    if sh.stopping.swap(true, Ordering::SeqCst) {
        return;
    }
    // Wake every connection thread: blocked reads see end of stream, waits see the flag.
    for c in lock(&sh.conns).values() {
        let _ = rustix::net::shutdown(c.as_fd(), rustix::net::Shutdown::Both);
    }
    for o in sh.by_id.read().unwrap_or_else(|e| e.into_inner()).iter() {
        o.wake_all();
    }
}

fn accept_loop(sh: Arc<Shared>, listener: Listener) {
    if let Some(cpus) = &sh.limits.cpus {
        // Connection threads are started from this one and inherit its affinity.
        let mut set = rustix::thread::CpuSet::new();
        cpus.iter().for_each(|&c| set.set(c));
        if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
            (sh.log)(&format!("could not pin the server to CPUs {cpus:?}: {e}"));
        }
    }
    while !sh.stopping.load(Ordering::SeqCst) {
        match listener.accept_timeout(Duration::from_millis(50)) {
            Ok(conn) => {
                let id = sh.next_conn.fetch_add(1, Ordering::Relaxed);
                let conn = Arc::new(conn);
                lock(&sh.conns).insert(id, conn.clone());
                if sh.stopping.load(Ordering::SeqCst) {
                    let _ = rustix::net::shutdown(conn.as_fd(), rustix::net::Shutdown::Both);
                }
                let sh2 = sh.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("multiproc-manager-conn-{id}"))
                    .spawn(move || {
                        serve_conn(&sh2, &conn, id);
                        lock(&sh2.conns).remove(&id);
                    });
                match spawned {
                    Ok(h) => {
                        let mut t = lock(&sh.threads);
                        t.retain(|h| !h.is_finished());
                        t.push(h);
                    }
                    Err(e) => {
                        lock(&sh.conns).remove(&id);
                        (sh.log)(&format!("connection #{id}: no thread to serve it: {e}"));
                    }
                }
            }
            Err(Error::Timeout(_)) => {}
            Err(e) => {
                (sh.log)(&format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    drop(listener); // removes a Unix socket file
    let threads = std::mem::take(&mut *lock(&sh.threads));
    for h in threads {
        let _ = h.join();
    }
    *lock(&sh.stopped) = true;
    sh.stopped_cv.notify_all();
}

/// Why a connection ended, for the log (`None`: an orderly goodbye).
fn serve_conn(sh: &Arc<Shared>, conn: &Connection, id: u64) {
    crate::bootstrap::task::set_quiet(true);
    let mut held: Vec<Arc<Object>> = Vec::new();
    let why = run_conn(sh, conn, id, &mut held);
    for o in held {
        o.release_dead(id);
    }
    if let Some(why) = why
        && !sh.stopping.load(Ordering::SeqCst)
    {
        (sh.log)(&format!("connection #{id} closed: {why}"));
    }
}

fn run_conn(
    sh: &Arc<Shared>,
    conn: &Connection,
    id: u64,
    held: &mut Vec<Arc<Object>>,
) -> Option<String> {
    let deadline = Instant::now() + sh.limits.handshake_timeout;
    if let Some(key) = &sh.authkey {
        let r = crate::ipc::auth::deliver_challenge(conn, key, deadline)
            .and_then(|()| crate::ipc::auth::answer_challenge(conn, key, deadline));
        if let Err(e) = r {
            return Some(format!("{e}"));
        }
    }
    let hello = match conn.recv_bytes_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(b) => b,
        Err(Error::Timeout(_)) => {
            return Some(format!(
                "the client sent no hello within {:?} (idle)",
                sh.limits.handshake_timeout
            ));
        }
        Err(e) => return Some(format!("before its hello: {e}")),
    };
    match postcard::from_bytes::<Hello>(&hello) {
        Ok(h) if h.magic == MAGIC && h.version == VERSION => {}
        Ok(h) if h.magic == MAGIC => {
            return Some(format!(
                "protocol version {} (this server speaks {VERSION})",
                h.version
            ));
        }
        _ => return Some("garbage instead of a hello (not a multiproc manager client)".into()),
    }
    let welcome = Welcome {
        version: VERSION,
        instance: sh.instance,
        idle_timeout_us: sh.limits.idle_timeout.map(|d| d.as_micros() as u64),
    };
    if let Err(e) = conn.send(&welcome) {
        return Some(format!("sending the welcome: {e}"));
    }
    loop {
        let frame = match sh.limits.idle_timeout {
            Some(t) => conn.recv_bytes_timeout(t),
            None => conn.recv_bytes(),
        };
        let frame = match frame {
            Ok(f) => f,
            // A client holding a lock may think as long as it likes: closing its
            // connection would release the lock under it.
            Err(Error::Timeout(_)) if !held.is_empty() => continue,
            Err(Error::Timeout(t)) => return Some(format!("idle for {t:?}")),
            Err(Error::Closed(m)) if m.contains("middle") => {
                return Some("the client disappeared in the middle of a request".into());
            }
            Err(Error::Closed(_)) => return None,
            Err(e) => return Some(format!("{e}")),
        };
        let req = match postcard::from_bytes::<Request<'_>>(&frame) {
            Ok(r) => r,
            Err(e) => {
                return Some(format!(
                    "malformed request of {} bytes (garbage or an unknown operation): {e}",
                    frame.len()
                ));
            }
        };
        let shutdown = matches!(req.op, Op::Shutdown);
        let resp = if req.obj == 0 {
            server_op(sh, req.op)
        } else {
            let obj = sh
                .by_id
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get((req.obj - 1) as usize)
                .cloned();
            match obj {
                None => Some(Response::Err(WireError::InvalidArgument(format!(
                    "no object #{} on this manager",
                    req.obj
                )))),
                Some(o) => {
                    let mut cx = Cx {
                        conn_id: id,
                        conn,
                        updates: &sh.updates,
                        stopping: &sh.stopping,
                        held,
                    };
                    o.apply(req.op, &mut cx)
                }
            }
        };
        let Some(resp) = resp else {
            return if sh.stopping.load(Ordering::SeqCst) {
                None
            } else {
                Some("the client went away while its request waited".into())
            };
        };
        if let Err(e) = conn.send(&resp) {
            return Some(format!("sending a reply: {e}"));
        }
        if shutdown {
            begin_stop(sh);
            return None;
        }
    }
}

fn server_op(sh: &Shared, op: Op<'_>) -> Option<Response<'static>> {
    Some(match op {
        Op::Ping | Op::Shutdown => Response::Ok,
        Op::Open {
            name,
            kind,
            tag,
            param,
            init,
        } => {
            let mut names = lock(&sh.names);
            if let Some(o) = names.get(&*name) {
                if o.kind != kind || o.tag != tag {
                    return Some(Response::Err(WireError::TypeMismatch {
                        name: name.into_owned(),
                        expected: tag.into_owned(),
                        found: o.tag.clone(),
                    }));
                }
                return Some(Response::Id(o.id));
            }
            let mut by_id = sh.by_id.write().unwrap_or_else(|e| e.into_inner());
            let id = by_id.len() as u64 + 1;
            match Object::new(
                id,
                name.to_string(),
                kind,
                tag.into_owned(),
                param,
                init.map(|b| b.into_vec()),
            ) {
                Ok(o) => {
                    let o = Arc::new(o);
                    by_id.push(o.clone());
                    names.insert(name.into_owned(), o);
                    Response::Id(id)
                }
                Err(e) => Response::Err(e),
            }
        }
        other => Response::Err(WireError::InvalidArgument(format!(
            "operation {other:?} needs an object"
        ))),
    })
}
