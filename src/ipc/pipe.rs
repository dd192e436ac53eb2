//! `Pipe`: a pair of connected [`Connection`]s, like `multiprocessing.Pipe`.

use rustix::net::{AddressFamily, Shutdown, SocketFlags, SocketType};

use super::connection::Connection;
use crate::error::{Error, Result};

/// Creates a pair of connected [`Connection`]s (a Unix socket pair).
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
            Connection::from_fd(a, true, true),
            Connection::from_fd(b, true, true),
        ))
    }

    /// `(receiver, sender)`: the first can only receive, the second only send
    /// (`Pipe(duplex=False)`).
    pub fn simplex() -> Result<(Connection, Connection)> {
        let (r, w) = pair()?;
        let _ = rustix::net::shutdown(&r, Shutdown::Write);
        let _ = rustix::net::shutdown(&w, Shutdown::Read);
        Ok((
            Connection::from_fd(r, true, false),
            Connection::from_fd(w, false, true),
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
