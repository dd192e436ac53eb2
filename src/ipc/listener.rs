//! `Listener` and `Client`, Python's `multiprocessing.connection.Listener`/`Client`:
//! sockets that hand out [`Connection`]s, each optionally authenticated with CPython's
//! challenge–response handshake (`auth.rs`). Their own file, above `connection.rs` and
//! `auth.rs`, so that neither of those needs the other's upper half.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::connection::{Connection, DEFAULT_MAX_MESSAGE, wait_fd};
use crate::error::{Error, Result};

/// Where a [`Listener`] listens and a [`Client`] connects: a Unix socket path or a TCP
/// address.
///
/// `From<&str>`: a string containing `/` is a Unix socket path, anything else is resolved as
/// `host:port` (TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A Unix domain socket at this path (CPython's `'AF_UNIX'` family).
    Unix(PathBuf),
    /// A TCP address (CPython's `'AF_INET'` family).
    Tcp(SocketAddr),
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        Address::Unix(p.to_path_buf())
    }
}

impl From<&str> for Address {
    fn from(s: &str) -> Address {
        if !s.contains('/')
            && let Some(a) = s.to_socket_addrs().ok().and_then(|mut a| a.next())
        {
            return Address::Tcp(a);
        }
        Address::Unix(PathBuf::from(s))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

enum Sock {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Default time a connecting peer has to complete the authentication handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on a Unix socket or TCP address, like
/// `multiprocessing.connection.Listener`, optionally authenticating every peer with a
/// shared key (CPython's HMAC challenge in both directions; a CPython `Client` can connect).
///
/// A peer that fails authentication gets `#FAILURE#`, its `accept` returns
/// [`Error::AuthenticationFailed`] and the listener goes on serving others.
///
/// Limits, because a socket's peer may be anyone: during the handshake every message is at
/// most 256 bytes (a longer length prefix fails that `accept`, and is never allocated);
/// after it, accepted connections take messages up to [`DEFAULT_MAX_MESSAGE`] (64 MiB),
/// which [`set_max_message_size`](Self::set_max_message_size) changes (`usize::MAX`: no
/// limit, as a [`Pipe`](crate::Pipe) has). A Unix socket
/// file is removed when the listener is dropped.
///
/// ```
/// use multiproc::connection::{Client, Listener};
/// let dir = std::env::temp_dir().join(format!("mp-doc-{}", std::process::id()));
/// let listener = Listener::bind(dir.as_path(), Some(b"secret")).unwrap();
/// let addr = listener.address().clone();
/// let t = std::thread::spawn(move || {
///     let c = Client::connect(addr, Some(b"secret")).unwrap();
///     c.send_bytes(b"ping").unwrap();
///     c.recv_bytes().unwrap()
/// });
/// let conn = listener.accept().unwrap();
/// assert_eq!(conn.recv_bytes().unwrap(), b"ping");
/// conn.send_bytes(b"pong").unwrap();
/// assert_eq!(t.join().unwrap(), b"pong");
/// ```
pub struct Listener {
    sock: Sock,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    max_message: usize,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .finish()
    }
}

impl Listener {
    /// Listens on `address` (TCP port 0 picks a free port: see [`address`](Self::address)).
    /// With `authkey`, every peer must prove it knows the key, and we prove it to them.
    pub fn bind(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let address = address.into();
        let (sock, address) = match &address {
            Address::Unix(p) => {
                let l = UnixListener::bind(p)
                    .map_err(|e| Error::io(format!("listen on {}", p.display()), e))?;
                // Only this user may connect (the umask usually leaves 0755 or 0775; the
                // auth key is still checked). `bind` cannot take a mode, so this follows it.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::io(format!("make {} private (0600)", p.display()), e))?;
                (Sock::Unix(l), address)
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(|e| Error::io(format!("listen on {a}"), e))?;
                let actual = l.local_addr().map_err(|e| Error::io("local_addr", e))?;
                (Sock::Tcp(l), Address::Tcp(actual))
            }
        };
        Ok(Listener {
            sock,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_message: DEFAULT_MAX_MESSAGE,
        })
    }

    /// The address it listens on (with the actual port for TCP port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// How long a peer has to complete the handshake (default 10 s).
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// The largest message accepted connections take once the peer is authenticated (or
    /// at once, without an auth key); default [`DEFAULT_MAX_MESSAGE`]. The handshake keeps
    /// its own 256-byte limit whatever this is.
    ///
    /// ```
    /// let mut l = multiproc::connection::Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
    /// l.set_max_message_size(1 << 30);
    /// assert_eq!(l.max_message_size(), 1 << 30);
    /// ```
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.max_message = bytes;
    }

    /// The largest message accepted connections take, once authenticated.
    pub fn max_message_size(&self) -> usize {
        self.max_message
    }

    /// Waits for the next peer and authenticates it.
    pub fn accept(&self) -> Result<Connection> {
        self.accept_impl(None)
    }

    /// Like [`accept`](Self::accept), but gives up with [`Error::Timeout`] if no peer
    /// connects within `timeout` (the handshake has its own timeout).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.accept_impl(Some(timeout))
    }

    fn accept_impl(&self, timeout: Option<Duration>) -> Result<Connection> {
        if let Some(t) = timeout {
            let fd = match &self.sock {
                Sock::Unix(l) => l.as_fd(),
                Sock::Tcp(l) => l.as_fd(),
            };
            if !wait_fd(fd, PollFlags::IN, Some(Instant::now() + t))? {
                return Err(Error::Timeout(t));
            }
        }
        let fd: OwnedFd = match &self.sock {
            Sock::Unix(l) => l.accept().map(|(s, _)| s.into()),
            Sock::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                s.into()
            }),
        }
        .map_err(|e| Error::io("accept", e))?;
        let c = Connection::from_fd(fd, true, true, DEFAULT_MAX_MESSAGE);
        if let Some(key) = &self.authkey {
            let deadline = Instant::now() + self.handshake_timeout;
            super::auth::deliver_challenge(&c, key, deadline)?;
            super::auth::answer_challenge(&c, key, deadline)?;
        }
        c.set_max_message_size(self.max_message);
        Ok(c)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Address::Unix(p) = &self.address {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Connects to a [`Listener`] (Rust or CPython's), like
/// `multiprocessing.connection.Client`.
#[derive(Debug, Clone, Copy)]
pub struct Client;

impl Client {
    /// Connects to `address`; with `authkey`, answers the listener's challenge and
    /// challenges it in turn (both must use the same key, or both none).
    ///
    /// The connection takes messages up to [`DEFAULT_MAX_MESSAGE`] (64 MiB; 256 bytes
    /// during the handshake); change it with [`Connection::set_max_message_size`].
    pub fn connect(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Connection> {
        Self::connect_timeout(address, authkey, DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// Like [`connect`](Self::connect), with a limit on connecting plus the handshake.
    pub fn connect_timeout(
        address: impl Into<Address>,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection> {
        let deadline = Instant::now() + timeout;
        let address = address.into();
        let fd: OwnedFd = match &address {
            Address::Unix(p) => UnixStream::connect(p)
                .map(Into::into)
                .map_err(|e| Error::io(format!("connect to {}", p.display()), e))?,
            Address::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout)
                    .map_err(|e| Error::io(format!("connect to {a}"), e))?;
                let _ = s.set_nodelay(true);
                s.into()
            }
        };
        let c = Connection::from_fd(fd, true, true, DEFAULT_MAX_MESSAGE);
        if let Some(key) = authkey {
            super::auth::answer_challenge(&c, key, deadline)?;
            super::auth::deliver_challenge(&c, key, deadline)?;
        }
        Ok(c)
    }
}
