//! The client side: one connection per thread per server, and the handle every proxy
//! holds to its object.
//!
//! Like Python's proxies, each thread talks to the server over its own connection, so a
//! thread blocked in `queue.get()` or `lock.acquire()` blocks nobody else, and a lock is
//! owned by the thread that took it. Connections live in a thread-local list keyed by
//! server (address and key), made on first use and reused by every proxy of that server
//! in the thread: a proxy received in a pool task reconnects once per worker thread, not
//! once per task.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{Blob, Hello, Kind, MAGIC, Op, Request, Response, VERSION, Welcome};
use crate::connection::{Address, Client, Connection};
use crate::error::{Error, Result};

/// How long connecting plus the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server as this process knows it: where it is and its key. Shared by every proxy of
/// that server in the process.
pub(crate) struct Session {
    id: u64,
    pub(crate) address: Address,
    pub(crate) authkey: Option<Vec<u8>>,
}

/// (session id, address, key, the session while any proxy holds it)
type Entry = (u64, Address, Option<Vec<u8>>, Weak<Session>);

struct Registry {
    next: u64,
    live: Vec<Entry>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 1,
    live: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The session for this server: the live one if any proxy still holds it. Its id stays
/// the same for as long as the process runs, so a thread's connection can be found again
/// by a session recreated later (the next pool task's proxy).
pub(crate) fn session(address: Address, authkey: Option<Vec<u8>>) -> Arc<Session> {
    let mut r = registry();
    r.live
        .retain(|(_, a, k, w)| w.strong_count() > 0 || (*a == address && *k == authkey));
    if let Some((id, _, _, w)) = r
        .live
        .iter_mut()
        .find(|(_, a, k, _)| *a == address && *k == authkey)
    {
        if let Some(s) = w.upgrade() {
            return s;
        }
        let s = Arc::new(Session {
            id: *id,
            address,
            authkey,
        });
        *w = Arc::downgrade(&s);
        return s;
    }
    let id = r.next;
    r.next += 1;
    let s = Arc::new(Session {
        id,
        address: address.clone(),
        authkey: authkey.clone(),
    });
    r.live.push((id, address, authkey, Arc::downgrade(&s)));
    s
}

fn session_alive(id: u64) -> bool {
    registry()
        .live
        .iter()
        .any(|(i, _, _, w)| *i == id && w.strong_count() > 0)
}

/// One thread's connection to one server.
pub(crate) struct ThreadConn {
    session: u64,
    conn: Connection,
    pub(crate) instance: u64,
    idle: Option<Duration>,
    last: Instant,
    /// Locks this thread holds through this connection: it must not be replaced then
    /// (closing it would release them).
    pub(crate) holding: u32,
}

thread_local! {
    static CONNS: RefCell<Vec<ThreadConn>> = const { RefCell::new(Vec::new()) };
}

fn disconnected(address: &Address, e: Error) -> Error {
    match e {
        e @ (Error::Disconnected(_) | Error::AuthenticationFailed(_)) => e,
        e => Error::Disconnected(format!("the manager at {address}: {e}")),
    }
}

/// Connects, authenticates and exchanges hello and welcome.
fn handshake(address: &Address, authkey: Option<&[u8]>) -> Result<(Connection, Welcome)> {
    let conn = Client::connect_timeout(address.clone(), authkey, CONNECT_TIMEOUT)
        .map_err(|e| disconnected(address, e))?;
    conn.send(&Hello {
        magic: MAGIC,
        version: VERSION,
    })
    .map_err(|e| disconnected(address, e))?;
    let w: Welcome = conn
        .recv_timeout(CONNECT_TIMEOUT)
        .map_err(|e| disconnected(address, e))?;
    if w.version != VERSION {
        return Err(Error::Protocol(format!(
            "the manager at {address} speaks protocol {}, this program {VERSION}",
            w.version
        )));
    }
    Ok((conn, w))
}

pub(crate) fn raw_connect(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
    handshake(address, authkey).map(|(c, _)| c)
}

impl Session {
    fn connect(&self) -> Result<ThreadConn> {
        let (conn, w) = handshake(&self.address, self.authkey.as_deref())?;
        Ok(ThreadConn {
            session: self.id,
            conn,
            instance: w.instance,
            idle: w.idle_timeout_us.map(Duration::from_micros),
            last: Instant::now(),
            holding: 0,
        })
    }

    /// Runs `f` with this thread's connection to the server, connecting first if needed.
    /// A connection that failed is dropped, so the next call connects afresh.
    pub(crate) fn with_conn<R>(&self, f: impl FnOnce(&mut ThreadConn) -> Result<R>) -> Result<R> {
        // Taken out of the list while in use, so a nested call cannot alias it.
        let found = CONNS.with(|c| {
            let mut c = c.borrow_mut();
            let i = c.iter().position(|t| t.session == self.id)?;
            Some(c.swap_remove(i))
        });
        let mut tc = match found {
            // The server closes connections idle for its idle timeout; replace one that
            // is getting close rather than find out mid-request.
            Some(t) if t.holding > 0 || t.idle.is_none_or(|i| t.last.elapsed() < i / 2) => t,
            _ => {
                CONNS.with(|c| c.borrow_mut().retain(|t| session_alive(t.session)));
                self.connect()?
            }
        };
        let r = f(&mut tc);
        match &r {
            Err(Error::Disconnected(_)) => {}
            _ => {
                tc.last = Instant::now();
                CONNS.with(|c| c.borrow_mut().push(tc));
            }
        }
        r
    }

    /// Closes this thread's connection to the server, if it has one.
    pub(crate) fn forget_thread_conn(&self) {
        let gone = CONNS.with(|c| {
            let mut c = c.borrow_mut();
            c.iter()
                .position(|t| t.session == self.id)
                .map(|i| c.swap_remove(i))
        });
        drop(gone);
    }

    /// Sends one request and decodes the answer with `f`.
    pub(crate) fn call<R>(
        &self,
        obj: u64,
        op: Op<'_>,
        f: impl FnOnce(Response<'_>) -> Result<R>,
    ) -> Result<R> {
        self.with_conn(|tc| tc.call(&self.address, obj, op, f))
    }
}

impl ThreadConn {
    pub(crate) fn call<R>(
        &self,
        address: &Address,
        obj: u64,
        op: Op<'_>,
        f: impl FnOnce(Response<'_>) -> Result<R>,
    ) -> Result<R> {
        let req = Request { obj, op };
        self.conn.send(&req).map_err(|e| match e {
            e @ Error::Serialize { .. } => e,
            e => disconnected(address, e),
        })?;
        let bytes = self
            .conn
            .recv_bytes()
            .map_err(|e| disconnected(address, e))?;
        let resp: Response<'_> = postcard::from_bytes(&bytes).map_err(|e| {
            Error::Disconnected(format!(
                "the manager at {address} sent an unreadable reply: {e}"
            ))
        })?;
        match resp {
            Response::Err(e) => Err(e.into_error(&address.to_string())),
            r => f(r),
        }
    }
}

/// What a proxy is: an object on a server, looked up (or created) by name and type.
pub(crate) struct ObjRef {
    pub(crate) session: Arc<Session>,
    pub(crate) name: String,
    kind: Kind,
    pub(crate) tag: String,
    param: u64,
    init: Option<Vec<u8>>,
    /// (server instance, object id) once resolved.
    resolved: Mutex<(u64, u64)>,
}

impl ObjRef {
    /// Creates or looks up the object now (so a type mismatch is reported at once).
    pub(crate) fn open(
        session: Arc<Session>,
        name: &str,
        kind: Kind,
        tag: String,
        param: u64,
        init: Option<Vec<u8>>,
    ) -> Result<ObjRef> {
        let r = Self::lazy(session, name.to_string(), kind, tag, param, init);
        r.session.with_conn(|tc| r.id(tc).map(|_| ()))?;
        Ok(r)
    }

    fn lazy(
        session: Arc<Session>,
        name: String,
        kind: Kind,
        tag: String,
        param: u64,
        init: Option<Vec<u8>>,
    ) -> ObjRef {
        ObjRef {
            session,
            name,
            kind,
            tag,
            param,
            init,
            resolved: Mutex::new((0, 0)),
        }
    }

    /// The object's id on the server this connection reaches (opening it on first use).
    fn id(&self, tc: &ThreadConn) -> Result<u64> {
        {
            let r = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
            if r.0 == tc.instance {
                return Ok(r.1);
            }
        }
        let op = Op::Open {
            name: self.name.as_str().into(),
            kind: self.kind,
            tag: self.tag.as_str().into(),
            param: self.param,
            init: self.init.as_deref().map(Blob::borrowed),
        };
        let id = tc.call(&self.session.address, 0, op, |r| match r {
            Response::Id(id) => Ok(id),
            r => Err(unexpected(r)),
        })?;
        *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = (tc.instance, id);
        Ok(id)
    }

    /// Runs one operation on the object.
    pub(crate) fn call<R>(
        &self,
        op: Op<'_>,
        f: impl FnOnce(Response<'_>) -> Result<R>,
    ) -> Result<R> {
        self.session.with_conn(|tc| {
            let id = self.id(tc)?;
            tc.call(&self.session.address, id, op, f)
        })
    }

    /// Like [`call`](Self::call), with the thread's connection at hand when decoding.
    pub(crate) fn call_mut<R>(
        &self,
        op: Op<'_>,
        f: impl FnOnce(&mut ThreadConn, Response<'_>) -> Result<R>,
    ) -> Result<R> {
        self.session.with_conn(|tc| {
            let id = self.id(tc)?;
            let mut resp = None;
            let r = tc.call(&self.session.address, id, op, |r| {
                resp = Some(owned_response(r));
                Ok(())
            });
            r?;
            f(tc, resp.expect("set on success"))
        })
    }

    /// What a serialized proxy carries.
    fn wire(&self) -> ProxyWire {
        ProxyWire {
            address: match &self.session.address {
                Address::Unix(p) => AddrWire::Unix(p.clone()),
                Address::Tcp(a) => AddrWire::Tcp(*a),
            },
            authkey: self.session.authkey.clone(),
            name: self.name.clone(),
            param: self.param,
            init: self.init.clone(),
        }
    }

    pub(crate) fn serialize<S: serde::Serializer>(
        &self,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.wire().serialize(s)
    }

    /// Rebuilds a proxy; it connects on first use.
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
        kind: Kind,
        tag: String,
    ) -> std::result::Result<ObjRef, D::Error> {
        let w = ProxyWire::deserialize(d)?;
        let address = match w.address {
            AddrWire::Unix(p) => Address::Unix(p),
            AddrWire::Tcp(a) => Address::Tcp(a),
        };
        Ok(Self::lazy(
            session(address, w.authkey),
            w.name,
            kind,
            tag,
            w.param,
            w.init,
        ))
    }
}

impl Clone for ObjRef {
    fn clone(&self) -> ObjRef {
        ObjRef {
            session: self.session.clone(),
            name: self.name.clone(),
            kind: self.kind,
            tag: self.tag.clone(),
            param: self.param,
            init: self.init.clone(),
            resolved: Mutex::new(*self.resolved.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

impl std::fmt::Debug for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} at {}",
            self.tag, self.name, self.session.address
        )
    }
}

#[derive(Serialize, Deserialize)]
enum AddrWire {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

/// A serialized proxy: where the server is, its key (so the receiver can connect: treat a
/// serialized proxy as a secret), and which object.
#[derive(Serialize, Deserialize)]
struct ProxyWire {
    address: AddrWire,
    authkey: Option<Vec<u8>>,
    name: String,
    param: u64,
    init: Option<Vec<u8>>,
}

/// The few replies `call_mut` callers read, detached from the frame they came in.
fn owned_response(r: Response<'_>) -> Response<'static> {
    match r {
        Response::Ok => Response::Ok,
        Response::Bool(b) => Response::Bool(b),
        Response::Acquired { owner_died } => Response::Acquired { owner_died },
        other => Response::Names(vec![format!("{other:?}")]),
    }
}

/// A reply of the wrong shape: the server is broken or not ours.
pub(crate) fn unexpected(r: Response<'_>) -> Error {
    Error::Protocol(format!("unexpected reply from the manager: {r:?}"))
}

/// Encodes a value for the server.
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| Error::Serialize {
        type_name: std::any::type_name::<T>(),
        message: e.to_string(),
    })
}

/// Decodes a value from the server.
pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| Error::Deserialize {
        type_name: std::any::type_name::<T>(),
        message: e.to_string(),
    })
}

/// Decodes an optional value.
pub(crate) fn decode_maybe<T: DeserializeOwned>(r: Response<'_>) -> Result<Option<T>> {
    match r {
        Response::MaybeBlob(None) => Ok(None),
        Response::MaybeBlob(Some(b)) => decode(&b.0).map(Some),
        r => Err(unexpected(r)),
    }
}

/// Decodes one value.
pub(crate) fn decode_one<T: DeserializeOwned>(r: Response<'_>) -> Result<T> {
    match r {
        Response::Blob(b) => decode(&b.0),
        r => Err(unexpected(r)),
    }
}

/// Decodes a list of values.
pub(crate) fn decode_all<T: DeserializeOwned>(r: Response<'_>) -> Result<Vec<T>> {
    match r {
        Response::Blobs(v) => v.iter().map(|b| decode(&b.0)).collect(),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn expect_ok(r: Response<'_>) -> Result<()> {
    match r {
        Response::Ok => Ok(()),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn expect_bool(r: Response<'_>) -> Result<bool> {
    match r {
        Response::Bool(b) => Ok(b),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn expect_u64(r: Response<'_>) -> Result<u64> {
    match r {
        Response::U64(n) => Ok(n),
        r => Err(unexpected(r)),
    }
}

/// A `Wait` for an optional timeout.
pub(crate) fn wait_for(timeout: Option<Duration>) -> super::protocol::Wait {
    match timeout {
        None => super::protocol::Wait::Forever,
        Some(t) => super::protocol::Wait::Micros(t.as_micros().min(u64::MAX as u128) as u64),
    }
}

/// `Clone`, `Debug`, `Serialize` and `Deserialize` for a proxy type: all it is is its
/// [`ObjRef`] (the type needs an unbounded `fn from_obj(ObjRef) -> Self`).
macro_rules! impl_proxy {
    ($ty:ident $(<$($g:ident),*>)?, $kind:expr, $tag:expr) => {
        impl$(<$($g),*>)? Clone for $ty$(<$($g),*>)? {
            fn clone(&self) -> Self {
                Self::from_obj(self.obj.clone())
            }
        }
        impl$(<$($g),*>)? std::fmt::Debug for $ty$(<$($g),*>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.obj, f)
            }
        }
        impl$(<$($g),*>)? serde::Serialize for $ty$(<$($g),*>)? {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.obj.serialize(s)
            }
        }
        impl<'de $($(, $g)*)?> serde::Deserialize<'de> for $ty$(<$($g),*>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Ok(Self::from_obj($crate::manager::client::ObjRef::deserialize(d, $kind, $tag)?))
            }
        }
    };
}
pub(crate) use impl_proxy;
