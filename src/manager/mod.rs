//! `Manager`: shared dicts, lists, queues, namespaces, values and synchronization objects,
//! held by a server and used through typed proxies from any process, on this machine or
//! another (Python's `multiprocessing.Manager()`). See `README.md` beside this file for
//! the protocol, authentication, atomicity and limits.

pub(crate) mod client;
mod dict;
mod list;
mod namespace;
mod objects;
pub(crate) mod protocol;
mod queue;
mod server;
mod sync;
mod updates;
mod value;

pub use dict::Dict;
pub use list::List;
pub use namespace::Namespace;
pub use queue::Queue;
pub use sync::{Barrier, Condition, Event, Lock, LockGuard, RLock, Semaphore};
pub use updates::{TakesOption, TakesValue, UpdateFn};
pub use value::Value;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::client::{ObjRef, Session, encode, expect_ok};
use self::protocol::{Kind, Op};
use self::server::{Limits, Logger, Server};
use crate::connection::{Address, Connection};
use crate::error::{Error, Result};
use crate::{Pipe, Process, StartMethod};

/// A handle to a manager server: makes and finds its shared objects by name.
///
/// * [`Manager::start`] starts a private server (a child process of this program, reached
///   over a Unix socket with a random auth key) and stops it when the last clone of the
///   handle is dropped (or at [`shutdown`](Self::shutdown)); the child is reaped.
/// * [`Manager::serve`] serves on an address of your choice (TCP needs an auth key) from
///   this process, for other programs and machines; `multiproc manager serve` is the same
///   from the command line.
/// * [`Manager::connect`] reaches a running server from any process.
///
/// Objects are created on first use of a name and found by later ones, so separate
/// programs share an object by naming it. Asking for a name with another kind or type than
/// its creator's is an [`Error::TypeMismatch`]. Proxies are `Serialize`: pass them in pool
/// task arguments, `Process` arguments and queue items, and use them there. If the server
/// stops or dies, every call fails with [`Error::Disconnected`]; nothing hangs.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Executor, Manager, ProcessPool};
///
/// fn plus_one(n: Option<u64>) -> u64 { n.unwrap_or(0) + 1 }
/// fn count(d: multiproc::manager::Dict<String, u64>, word: String) {
///     d.update(&word, plus_one).unwrap();
/// }
/// // The server runs only the update functions it was told it may.
/// let m = Manager::builder().update_fn(plus_one).start().unwrap();
/// let counts = m.dict::<String, u64>("counts").unwrap();
/// let words = ["a", "b", "a"].map(String::from);
/// ProcessPool::new(2).unwrap().starmap(count, words.map(|w| (counts.clone(), w))).unwrap();
/// assert_eq!(counts.get(&"a".into()).unwrap(), Some(2));
/// ```
#[derive(Clone)]
pub struct Manager {
    session: Arc<Session>,
    owned: Option<Arc<Owned>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.session.address)
            .field("owner", &self.owned.is_some())
            .finish()
    }
}

/// Options for a manager server. From [`Manager::builder`].
///
/// ```standalone_crate
/// # multiproc::init();
/// use std::time::Duration;
/// let m = multiproc::Manager::builder()
///     .thread(true)
///     .max_message_size(1 << 20)
///     .handshake_timeout(Duration::from_secs(2))
///     .idle_timeout(Some(Duration::from_secs(60)))
///     .logger(|line| eprintln!("manager: {line}"))
///     .start()
///     .unwrap();
/// assert!(m.authkey().is_some()); // a random key by default
/// ```
#[derive(Clone, Default)]
pub struct ManagerBuilder {
    listen: Option<Address>,
    authkey: Option<Vec<u8>>,
    thread: bool,
    limits: Limits,
    logger: Option<Logger>,
    start_method: StartMethod,
    updates: updates::Registry,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("listen", &self.listen)
            .field("thread", &self.thread)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The default TCP address of `multiproc manager serve`: loopback only.
///
/// ```
/// assert!(multiproc::manager::DEFAULT_TCP_ADDRESS.starts_with("127.0.0.1:"));
/// ```
pub const DEFAULT_TCP_ADDRESS: &str = "127.0.0.1:50000";

impl ManagerBuilder {
    /// Where to listen: a Unix socket path or a TCP `host:port` (default: a fresh Unix
    /// socket in the temporary directory). TCP needs an [`authkey`](Self::authkey).
    pub fn listen(mut self, address: impl Into<Address>) -> Self {
        self.listen = Some(address.into());
        self
    }

    /// The shared secret every client must prove it knows (CPython's HMAC challenge, both
    /// ways). Default: 32 random bytes for a Unix socket; required for TCP.
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = (!key.is_empty()).then(|| key.to_vec());
        self
    }

    /// Run the server on threads of this process instead of a child process (default:
    /// a child process, so the objects outlive a crash of nothing but the server).
    pub fn thread(mut self, thread: bool) -> Self {
        self.thread = thread;
        self
    }

    /// The largest request a client may send (default 16 MiB); a longer length prefix
    /// closes that connection before anything is allocated.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message = bytes;
        self
    }

    /// How long a new client has to authenticate and say hello (default 10 s).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.limits.handshake_timeout = t;
        self
    }

    /// A connection idle this long, or stalled this long in the middle of a request, is
    /// closed (default 120 s; `None`: never). Clients reconnect by themselves before.
    pub fn idle_timeout(mut self, t: Option<Duration>) -> Self {
        self.limits.idle_timeout = t;
        self
    }

    /// Where a thread server writes its log lines (connections closed for cause,
    /// shutdown); default: stderr. A child-process server always logs to stderr.
    pub fn logger(mut self, log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.logger = Some(Arc::new(log));
        self
    }

    /// Runs the server's threads on these CPUs only (for benchmarks and for keeping a
    /// server off the cores doing the work); default: anywhere.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::builder().cpu_affinity(&[0]).start().unwrap();
    /// m.ping().unwrap();
    /// ```
    pub fn cpu_affinity(mut self, cpus: &[usize]) -> Self {
        self.limits.cpus = Some(cpus.to_vec());
        self
    }

    /// Allows clients to run `f` on this server's values, atomically under the object's
    /// lock, with [`Dict::update`] and [`Value::update`] (Python's `BaseManager.register`,
    /// for functions). A client names the function, the server looks the name up in the
    /// functions registered here and checks its type against the object's: no client can
    /// make the server run anything else (see `SECURITY.md`).
    ///
    /// `f` is a `fn` item, known by its path (`std::any::type_name`), so a client built from
    /// the same source names the same function. A closure has no such name: registering one
    /// makes [`start`](Self::start) fail with [`Error::InvalidArgument`].
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// fn plus_one(n: Option<u64>) -> u64 { n.unwrap_or(0) + 1 }
    /// fn not_registered(n: Option<u64>) -> u64 { n.unwrap_or(0) + 2 }
    /// let m = multiproc::Manager::builder().update_fn(plus_one).start().unwrap();
    /// let d = m.dict::<String, u64>("counts").unwrap();
    /// assert_eq!(d.update(&"a".into(), plus_one).unwrap(), 1);
    /// assert!(matches!(
    ///     d.update(&"a".into(), not_registered),
    ///     Err(multiproc::Error::NotFound(_))
    /// ));
    /// ```
    pub fn update_fn<V, Args, F: UpdateFn<V, Args>>(mut self, f: F) -> Self {
        self.updates.add(f);
        self
    }

    /// How the server child is started (default: the fork server).
    pub fn start_method(mut self, m: StartMethod) -> Self {
        self.start_method = m;
        self
    }

    /// Starts the server and returns the owning handle.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::builder()
    ///     .listen("127.0.0.1:0")
    ///     .authkey(b"secret")
    ///     .thread(true)
    ///     .start()
    ///     .unwrap();
    /// let other = multiproc::Manager::connect(m.address().clone(), b"secret").unwrap();
    /// other.list::<u8>("l").unwrap().push(&1).unwrap();
    /// assert_eq!(m.list::<u8>("l").unwrap().to_vec().unwrap(), [1]);
    /// ```
    pub fn start(self) -> Result<Manager> {
        let listen = match self.listen.clone() {
            Some(a) => a,
            None => Address::Unix(fresh_socket_path()),
        };
        let authkey = match (&self.authkey, &listen) {
            (Some(k), _) => Some(k.clone()),
            (None, Address::Tcp(a)) => {
                return Err(Error::InvalidArgument(format!(
                    "a manager on TCP ({a}) needs an auth key: anyone who can reach the port \
                     could read and change its objects"
                )));
            }
            (None, Address::Unix(_)) => Some(random_key()?),
        };
        let updates = self.updates.entries()?;
        let (address, how) = if self.thread {
            let log = self.logger.clone().unwrap_or_else(server::stderr_logger);
            let s = Server::start(listen, authkey.clone(), self.limits.clone(), updates, log)?;
            (s.address().clone(), How::Thread(s))
        } else {
            self.start_child(listen, authkey.clone(), updates)?
        };
        let session = client::session(address, authkey);
        let owned = Arc::new(Owned {
            session: session.clone(),
            how,
            stopped: Mutex::new(false),
        });
        let m = Manager {
            session,
            owned: Some(owned),
        };
        m.ping()?;
        Ok(m)
    }

    fn start_child(
        &self,
        listen: Address,
        authkey: Option<Vec<u8>>,
        updates: Vec<updates::Entry>,
    ) -> Result<(Address, How)> {
        let (mine, theirs) = Pipe::duplex()?;
        let args = ChildArgs {
            listen: to_wire(&listen),
            authkey,
            limits: self.limits.clone(),
            updates,
        };
        let proc = Process::builder()
            .name("multiproc-manager")
            .daemon(true)
            .start_method(self.start_method)
            .start(server_child, (args, theirs))?;
        let fail = |msg: String| {
            let _ = proc.kill();
            proc.join();
            Err(Error::StartFailed(format!("the manager server: {msg}")))
        };
        match mine.recv_timeout::<std::result::Result<AddrWire, String>>(Duration::from_secs(20)) {
            Ok(Ok(a)) => {
                let address = from_wire(a);
                let path = match &address {
                    Address::Unix(p) => Some(p.clone()),
                    Address::Tcp(_) => None,
                };
                Ok((address, How::Process { proc, path }))
            }
            Ok(Err(msg)) => fail(msg),
            Err(e) => fail(format!("did not report ready: {e}")),
        }
    }
}

/// What a server child needs.
#[derive(Serialize, Deserialize)]
struct ChildArgs {
    listen: AddrWire,
    authkey: Option<Vec<u8>>,
    limits: Limits,
    /// The update functions it may run (from this parent, which runs the same build).
    updates: Vec<updates::Entry>,
}

#[derive(Serialize, Deserialize)]
enum AddrWire {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

fn to_wire(a: &Address) -> AddrWire {
    match a {
        Address::Unix(p) => AddrWire::Unix(p.clone()),
        Address::Tcp(a) => AddrWire::Tcp(*a),
    }
}

fn from_wire(a: AddrWire) -> Address {
    match a {
        AddrWire::Unix(p) => Address::Unix(p),
        AddrWire::Tcp(a) => Address::Tcp(a),
    }
}

/// The body of a server child process: serve until told to stop.
fn server_child((args, ready): (ChildArgs, Connection)) {
    let log = server::stderr_logger();
    let listen = from_wire(args.listen);
    match Server::start(listen, args.authkey, args.limits, args.updates, log) {
        Ok(s) => {
            let _ = ready.send(&Ok::<AddrWire, String>(to_wire(s.address())));
            drop(ready);
            s.wait();
        }
        Err(e) => {
            let _ = ready.send(&Err::<AddrWire, String>(e.to_string()));
        }
    }
}

/// A connection to a manager that has authenticated and said hello, and nothing more:
/// for tests that feed the server bad bytes.
#[doc(hidden)]
pub fn __raw_client(address: impl Into<Address>, authkey: &[u8]) -> Result<Connection> {
    let key = (!authkey.is_empty()).then(|| authkey.to_vec());
    client::raw_connect(&address.into(), key.as_deref())
}

fn random_key() -> Result<Vec<u8>> {
    let mut k = vec![0u8; 32];
    getrandom::fill(&mut k).map_err(|e| Error::io("getrandom", std::io::Error::other(e)))?;
    Ok(k)
}

/// A socket path for a private server: `mp-mgr-<pid>-<start>-<n>-<random>.sock` in the
/// temp dir, named after this program (`<start>`: its start time, as in shared memory
/// names), so a later program can tell the socket was left by a dead one. A SIGKILLed
/// program's server dies with it and cannot unlink its socket; the first private server a
/// later program starts removes such sockets.
fn fresh_socket_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_sockets_of_dead_programs);
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    let pid = std::process::id();
    let start = crate::sys::shm::task_stat(pid).map_or(0, |(_, s)| s);
    std::env::temp_dir().join(format!(
        "mp-mgr-{pid}-{start}-{}-{:08x}.sock",
        N.fetch_add(1, Ordering::Relaxed),
        u32::from_ne_bytes(r)
    ))
}

/// Removes the sockets that [`fresh_socket_path`] named for programs that are dead. Only
/// sockets with exactly that name shape; a live program's (same pid *and* start time) are
/// left alone.
fn remove_sockets_of_dead_programs() {
    use std::os::unix::fs::FileTypeExt;
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix("mp-mgr-")?.strip_suffix(".sock"))
            .and_then(socket_owner)
        else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_socket())
            && !crate::sys::shm::process_alive(owner.0, owner.1)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `(pid, start)` of a socket named `<pid>-<start>-<n>-<random>` (between `mp-mgr-` and
/// `.sock`).
fn socket_owner(middle: &str) -> Option<(u32, u64)> {
    let parts: Vec<&str> = middle.split('-').collect();
    match parts[..] {
        [pid, start, n, random]
            if n.parse::<u64>().is_ok() && u32::from_str_radix(random, 16).is_ok() =>
        {
            Some((pid.parse().ok()?, start.parse().ok()?))
        }
        _ => None,
    }
}

/// A server this process started, stopped when the last owning handle goes.
struct Owned {
    session: Arc<Session>,
    how: How,
    stopped: Mutex<bool>,
}

enum How {
    Thread(Server),
    Process {
        proc: Process,
        path: Option<PathBuf>,
    },
}

impl Owned {
    fn stop(&self) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut *stopped, true) {
            return;
        }
        match &self.how {
            How::Thread(s) => s.stop(),
            How::Process { proc, path } => {
                let _ = self.session.call(0, Op::Shutdown, expect_ok);
                if !proc.join_timeout(Duration::from_secs(5)) {
                    let _ = proc.kill();
                    proc.join();
                }
                if let Some(p) = path {
                    // Already gone unless the server was killed.
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        self.session.forget_thread_conn();
    }

    fn wait(&self) {
        match &self.how {
            How::Thread(s) => s.wait(),
            How::Process { proc, .. } => proc.join(),
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Manager {
    /// Starts a private manager server in a child process (see [`ManagerBuilder`] for
    /// options, such as a thread server).
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list::<u32>("xs").unwrap();
    /// l.extend([1, 2, 3]).unwrap();
    /// assert_eq!(l.len().unwrap(), 3);
    /// m.shutdown().unwrap();
    /// assert!(matches!(l.len(), Err(multiproc::Error::Disconnected(_))));
    /// ```
    pub fn start() -> Result<Manager> {
        ManagerBuilder::default().start()
    }

    /// Options for a new server.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Serves a manager on `address` (TCP `host:port` or a Unix socket path) from threads
    /// of this process, for other programs and machines. An empty `authkey` means none,
    /// which TCP refuses. [`serve_forever`](Self::serve_forever) then waits until a client
    /// shuts it down.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::serve("127.0.0.1:0", b"key").unwrap();
    /// assert!(matches!(
    ///     multiproc::Manager::serve("127.0.0.1:0", b""),
    ///     Err(multiproc::Error::InvalidArgument(_))
    /// ));
    /// # drop(m);
    /// ```
    pub fn serve(address: impl Into<Address>, authkey: &[u8]) -> Result<Manager> {
        ManagerBuilder::default()
            .listen(address)
            .authkey(authkey)
            .thread(true)
            .start()
    }

    /// Connects to a running manager (an empty `authkey` means none). Fails at once with
    /// [`Error::Disconnected`] if nothing serves there, or [`Error::AuthenticationFailed`].
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = multiproc::Manager::connect(m.address().clone(), m.authkey().unwrap()).unwrap();
    /// assert!(matches!(
    ///     multiproc::Manager::connect(m.address().clone(), b"wrong"),
    ///     Err(multiproc::Error::AuthenticationFailed(_))
    /// ));
    /// # drop(c);
    /// ```
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Manager> {
        let key = (!authkey.is_empty()).then(|| authkey.to_vec());
        let m = Manager {
            session: client::session(address.into(), key),
            owned: None,
        };
        m.ping()?;
        Ok(m)
    }

    /// Where the server listens.
    pub fn address(&self) -> &Address {
        &self.session.address
    }

    /// The auth key clients need (`None`: the server takes anyone who can reach it).
    pub fn authkey(&self) -> Option<&[u8]> {
        self.session.authkey.as_deref()
    }

    /// The pid of the server process this handle started (`None` for a thread server or
    /// a connected handle).
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.pid().is_some_and(|p| p != std::process::id()));
    /// ```
    pub fn pid(&self) -> Option<u32> {
        match self.owned.as_deref().map(|o| &o.how) {
            Some(How::Process { proc, .. }) => Some(proc.pid()),
            _ => None,
        }
    }

    /// One round trip to the server.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::builder().thread(true).start().unwrap();
    /// m.ping().unwrap();
    /// ```
    pub fn ping(&self) -> Result<()> {
        self.session.call(0, Op::Ping, expect_ok)
    }

    /// Stops the server: every client is disconnected and every blocked call returns
    /// [`Error::Disconnected`]. On the handle that started it, this also waits for the
    /// server (and reaps its process); on a connected handle it asks the server to stop.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::builder().thread(true).start().unwrap();
    /// let q = m.queue::<u8>("q").unwrap();
    /// let q2 = q.clone();
    /// let blocked = std::thread::spawn(move || q2.get());
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// m.shutdown().unwrap();
    /// assert!(matches!(blocked.join().unwrap(), Err(multiproc::Error::Disconnected(_))));
    /// ```
    pub fn shutdown(&self) -> Result<()> {
        match &self.owned {
            Some(o) => {
                o.stop();
                Ok(())
            }
            None => {
                let r = self.session.call(0, Op::Shutdown, expect_ok);
                self.session.forget_thread_conn();
                r
            }
        }
    }

    /// Waits until the server this handle started stops (a client's
    /// [`shutdown`](Self::shutdown)). On a connected handle: an
    /// [`Error::InvalidArgument`].
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::serve("127.0.0.1:0", b"key").unwrap();
    /// let (addr, key) = (m.address().clone(), m.authkey().unwrap().to_vec());
    /// std::thread::spawn(move || {
    ///     let c = multiproc::Manager::connect(addr, &key).unwrap();
    ///     c.shutdown().unwrap(); // a client may stop a served manager
    /// });
    /// m.serve_forever().unwrap();
    /// ```
    pub fn serve_forever(&self) -> Result<()> {
        match &self.owned {
            Some(o) => {
                o.wait();
                Ok(())
            }
            None => Err(Error::InvalidArgument(
                "serve_forever needs the handle that started the server".into(),
            )),
        }
    }

    fn open(
        &self,
        name: &str,
        kind: Kind,
        tag: String,
        param: u64,
        init: Option<Vec<u8>>,
    ) -> Result<ObjRef> {
        ObjRef::open(self.session.clone(), name, kind, tag, param, init)
    }

    /// The dictionary `name` (created empty if new).
    pub fn dict<K, V>(&self, name: &str) -> Result<Dict<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let tag = dict::tag::<K, V>();
        Ok(Dict::from_obj(self.open(name, Kind::Dict, tag, 0, None)?))
    }

    /// The list `name` (created empty if new).
    pub fn list<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<List<T>> {
        Ok(List::from_obj(self.open(
            name,
            Kind::List,
            list::tag::<T>(),
            0,
            None,
        )?))
    }

    /// The unbounded queue `name`.
    pub fn queue<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<Queue<T>> {
        self.bounded_queue(name, 0)
    }

    /// The queue `name`, holding at most `maxsize` items if created now (0: unbounded).
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::builder().thread(true).start().unwrap();
    /// let q = m.bounded_queue::<u8>("q", 1).unwrap();
    /// q.put(&1).unwrap();
    /// assert!(matches!(q.try_put(&2), Err(multiproc::Error::Full)));
    /// ```
    pub fn bounded_queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        maxsize: usize,
    ) -> Result<Queue<T>> {
        Ok(Queue::from_obj(self.open(
            name,
            Kind::Queue,
            queue::tag::<T>(),
            maxsize as u64,
            None,
        )?))
    }

    /// The namespace `name`.
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        Ok(Namespace::from_obj(self.open(
            name,
            Kind::Namespace,
            "namespace".into(),
            0,
            None,
        )?))
    }

    /// The value `name`, set to `initial` if created now (an existing value keeps its own).
    pub fn value<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        initial: T,
    ) -> Result<Value<T>> {
        let init = encode(&initial)?;
        Ok(Value::from_obj(self.open(
            name,
            Kind::Value,
            value::tag::<T>(),
            0,
            Some(init),
        )?))
    }

    /// The lock `name`.
    pub fn lock(&self, name: &str) -> Result<Lock> {
        Ok(Lock::from_obj(self.open(
            name,
            Kind::Lock,
            "lock".into(),
            0,
            None,
        )?))
    }

    /// The reentrant lock `name`.
    pub fn rlock(&self, name: &str) -> Result<RLock> {
        Ok(RLock::from_obj(self.open(
            name,
            Kind::RLock,
            "rlock".into(),
            0,
            None,
        )?))
    }

    /// The event `name`.
    pub fn event(&self, name: &str) -> Result<Event> {
        Ok(Event::from_obj(self.open(
            name,
            Kind::Event,
            "event".into(),
            0,
            None,
        )?))
    }

    /// The semaphore `name`, with `value` permits if created now.
    pub fn semaphore(&self, name: &str, value: u32) -> Result<Semaphore> {
        let obj = self.open(
            name,
            Kind::Semaphore,
            "semaphore".into(),
            value as u64,
            None,
        )?;
        Ok(Semaphore::from_obj(obj))
    }

    /// The bounded semaphore `name` (release past `value` is refused), if created now.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let m = multiproc::Manager::builder().thread(true).start().unwrap();
    /// let s = m.bounded_semaphore("s", 1).unwrap();
    /// assert!(s.release().is_err());
    /// ```
    pub fn bounded_semaphore(&self, name: &str, value: u32) -> Result<Semaphore> {
        let param = value as u64 | objects::BOUNDED;
        let obj = self.open(name, Kind::Semaphore, "semaphore".into(), param, None)?;
        Ok(Semaphore::from_obj(obj))
    }

    /// The condition `name` (with its own lock).
    pub fn condition(&self, name: &str) -> Result<Condition> {
        let obj = self.open(name, Kind::Condition, "condition".into(), 0, None)?;
        Ok(Condition::from_obj(obj))
    }

    /// The barrier `name`, for `parties` parties if created now.
    pub fn barrier(&self, name: &str, parties: u32) -> Result<Barrier> {
        let obj = self.open(name, Kind::Barrier, "barrier".into(), parties as u64, None)?;
        Ok(Barrier::from_obj(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::socket_owner;

    #[test]
    fn only_sockets_named_by_fresh_socket_path_have_an_owner() {
        assert_eq!(socket_owner("12-345-0-00ff00ff"), Some((12, 345)));
        let fresh = super::fresh_socket_path();
        let name = fresh.file_name().unwrap().to_str().unwrap();
        let middle = name.strip_prefix("mp-mgr-").unwrap().strip_suffix(".sock");
        let (pid, _) = socket_owner(middle.unwrap()).unwrap();
        assert_eq!(pid, std::process::id());
        // The older shape (no start time) and anything else: not ours to judge.
        assert_eq!(socket_owner("12-0-00ff00ff"), None);
        assert_eq!(socket_owner("12-345-0-zz"), None);
        assert_eq!(socket_owner("x-345-0-00ff00ff"), None);
        assert_eq!(socket_owner("12-345-0-00ff00ff-1"), None);
    }
}
