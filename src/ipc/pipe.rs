//! `Pipe`: a pair of connected [`Connection`]s, like `multiprocessing.Pipe`.

use rustix::net::{AddressFamily, Shutdown, SocketFlags, SocketType};

use super::connection::Connection;
use crate::error::{Error, Result};

/// Creates a pair of connected [`Connection`]s (a Unix socket pair).
///
/// Both ends belong to this program (and the processes it hands them to), so, as in
/// Python, a message may be of any size the memory allows: a `Pipe`'s connections have no
/// message limit ([`Connection::max_message_size`] is `usize::MAX`). A message too large
/// to allocate is an [`Error::Protocol`](crate::Error::Protocol), never an abort. Set a
/// limit with [`Connection::set_max_message_size`] where a peer is not trusted.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Connection, Pipe, Process};
///
/// fn child(conn: Connection) {
///     let n: u64 = conn.recv().unwrap();
///     conn.send(&(n * 2)).unwrap();
/// }
///
/// let (parent, child_end) = Pipe::duplex().unwrap();
/// let p = Process::start(child, child_end).unwrap();
/// parent.send(&21u64).unwrap();
/// assert_eq!(parent.recv::<u64>().unwrap(), 42);
/// p.join();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pipe;

impl Pipe {
    /// Two connections that can both send and receive (`Pipe(duplex=True)`).
    pub fn duplex() -> Result<(Connection, Connection)> {
        let (a, b) = pair()?;
        Ok((
            Connection::from_fd(a, true, true, usize::MAX),
            Connection::from_fd(b, true, true, usize::MAX),
        ))
    }

    /// `(receiver, sender)`: the first can only receive, the second only send
    /// (`Pipe(duplex=False)`).
    pub fn simplex() -> Result<(Connection, Connection)> {
        let (r, w) = pair()?;
        let _ = rustix::net::shutdown(&r, Shutdown::Write);
        let _ = rustix::net::shutdown(&w, Shutdown::Read);
        Ok((
            Connection::from_fd(r, true, false, usize::MAX),
            Connection::from_fd(w, false, true, usize::MAX),
        ))
    }

    /// `Pipe(duplex)`: [`duplex`](Self::duplex) or [`simplex`](Self::simplex).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(duplex: bool) -> Result<(Connection, Connection)> {
        if duplex {
            Self::duplex()
        } else {
            Self::simplex()
        }
    }
}

fn pair() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socketpair", e))
}
