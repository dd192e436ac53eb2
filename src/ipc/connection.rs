//! `Connection`, `Listener` and `Client`: message streams between processes, byte-compatible
//! with CPython's `multiprocessing.connection`.
//!
//! Every message is a frame: a 4-byte big-endian signed length, then the bytes; a message of
//! more than 2³¹−1 bytes has the length −1 followed by an 8-byte big-endian length. That is
//! exactly what CPython's `Connection.send_bytes` writes, so a Python process and a Rust
//! process can exchange `send_bytes`/`recv_bytes` messages. [`Connection::send`] and
//! [`Connection::recv`] put a postcard-encoded value in such a frame.
//!
//! [`Listener`] and [`Client`] (in `listener.rs`, re-exported here, where Python has them)
//! optionally authenticate both ends with a shared key, using CPython's challenge–response
//! handshake (see `ipc/README.md`).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys::wait::{Backoff, Spin};

pub use super::listener::{Address, Client, DEFAULT_HANDSHAKE_TIMEOUT, Listener};

/// Default largest message a connection from a [`Listener`] or [`Client`] accepts:
/// 64 MiB (a peer on a socket may be anyone). A [`Pipe`](crate::Pipe) has no limit.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Frames up to this size are copied next to their header and sent in one system call.
const SMALL: usize = 16 * 1024;
/// Frames larger than this are received into their own buffer rather than the read buffer.
const DIRECT: usize = 64 * 1024;
/// Read-buffer size.
const RBUF: usize = 64 * 1024;

#[derive(Default)]
struct ReadState {
    /// Buffered bytes are `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// A large message being received: its bytes so far and its full length.
    /// (`Vec` of the bytes so far, zero-padded ahead of them; bytes so far; full length.)
    pending: Option<(Vec<u8>, usize, usize)>,
}

/// One end of a message stream: from [`Pipe`](crate::Pipe), [`Listener::accept`] or
/// [`Client::connect`].
///
/// `send`/`recv` carry any `serde` value (postcard-encoded); `send_bytes`/`recv_bytes`
/// carry raw bytes, framed like CPython's `multiprocessing` connections. Message boundaries
/// are kept for any size. Every blocking call has a `_timeout` form. A `Connection` can be
/// used from several threads (sends and receives are each serialized by a lock) and can be
/// passed to a [`Process`](crate::Process) as (part of) its argument.
///
/// ```
/// let (a, b) = multiproc::Pipe::duplex().unwrap();
/// a.send(&("hello", 42u32)).unwrap();
/// let (s, n): (String, u32) = b.recv().unwrap();
/// assert_eq!((s.as_str(), n), ("hello", 42));
/// ```
pub struct Connection {
    fd: OwnedFd,
    readable: bool,
    writable: bool,
    max_message: AtomicUsize,
    /// Set when the stream lost its framing (an oversized or malformed length).
    broken: AtomicBool,
    read: Mutex<ReadState>,
    write: Mutex<Vec<u8>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_raw_fd())
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn io_err(context: &str, e: Errno) -> Error {
    Error::io(context.to_string(), std::io::Error::from(e))
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Waits until `fd` is ready for `flags`, or the deadline passes (`Ok(false)`).
/// The spin of a receiver before it blocks: up to 64 non-blocking reads, each after a
/// yield, so a peer pinned to the same CPU runs at once (some tens of µs in all, bounded by
/// the crate's spin budget).
const RECV_SPIN: Spin = Spin {
    spins: 0,
    rounds: 64,
    grow: false,
};

pub(crate) fn wait_fd(
    fd: BorrowedFd<'_>,
    flags: PollFlags,
    deadline: Option<Instant>,
) -> Result<bool> {
    loop {
        let rem = remaining(deadline);
        let ts = rem.map(crate::sys::timespec);
        let mut pfd = [PollFd::new(&fd, flags)];
        match rustix::event::poll(&mut pfd, ts.as_ref()) {
            Ok(0) => {
                if rem.is_some_and(|r| r.is_zero()) || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(e) => return Err(io_err("poll", e)),
        }
    }
}

impl Connection {
    pub(crate) fn from_fd(
        fd: OwnedFd,
        readable: bool,
        writable: bool,
        max_message: usize,
    ) -> Connection {
        Connection {
            fd,
            readable,
            writable,
            max_message: AtomicUsize::new(max_message),
            broken: AtomicBool::new(false),
            read: Mutex::new(ReadState::default()),
            write: Mutex::new(Vec::new()),
        }
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The largest message this end accepts. A longer incoming length prefix is an
    /// [`Error::Protocol`]: the claimed size is never allocated.
    ///
    /// Defaults: none (`usize::MAX`) on a [`Pipe`](crate::Pipe), whose peer is this
    /// program; [`DEFAULT_MAX_MESSAGE`] (64 MiB) on connections from a [`Listener`] (after
    /// the handshake; see [`Listener::set_max_message_size`]) or a [`Client`]. During an
    /// authentication handshake messages are limited to 256 bytes, as in CPython.
    pub fn max_message_size(&self) -> usize {
        self.max_message.load(Ordering::Relaxed)
    }

    /// Sets the largest message this end accepts.
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe::duplex().unwrap();
    /// b.set_max_message_size(10);
    /// a.send_bytes(&[0u8; 11]).unwrap();
    /// assert!(matches!(b.recv_bytes(), Err(multiproc::Error::Protocol(_))));
    /// ```
    pub fn set_max_message_size(&self, bytes: usize) {
        self.max_message.store(bytes, Ordering::Relaxed);
    }

    // ---------------------------------------------------------------- sending

    /// Sends a value (postcard-encoded, in one frame).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_impl(value, None)
    }

    /// Sends a value, giving up after `timeout` if the peer does not read.
    ///
    /// On a timeout part of the frame may have been written, so the connection is then
    /// unusable for further sends.
    pub fn send_timeout<T: Serialize + ?Sized>(&self, value: &T, timeout: Duration) -> Result<()> {
        self.send_impl(value, Some(Instant::now() + timeout))
    }

    fn send_impl<T: Serialize + ?Sized>(&self, value: &T, deadline: Option<Instant>) -> Result<()> {
        let mut scratch = self.write.lock().unwrap_or_else(|e| e.into_inner());
        scratch.clear();
        scratch.extend_from_slice(&[0; 4]);
        if let Err(e) = crate::wire::codec::encode_append(value, &mut scratch) {
            scratch.clear();
            return Err(Error::Serialize {
                type_name: std::any::type_name::<T>(),
                message: crate::wire::fdctx::describe(&e),
            });
        }
        let n = scratch.len() - 4;
        if n > i32::MAX as usize {
            let mut head = Vec::with_capacity(12);
            head.extend_from_slice(&(-1i32).to_be_bytes());
            head.extend_from_slice(&(n as u64).to_be_bytes());
            let r = self.write_all(&[&head, &scratch[4..]], deadline);
            scratch.clear();
            scratch.shrink_to(SMALL);
            return r;
        }
        scratch[..4].copy_from_slice(&(n as i32).to_be_bytes());
        let r = self.write_all(&[&scratch[..]], deadline);
        if scratch.capacity() > 4 * SMALL {
            *scratch = Vec::new();
        }
        r
    }

    /// Sends `bytes` as one message (CPython's `send_bytes`).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_bytes_impl(bytes, None)
    }

    /// Sends `bytes` as one message, giving up after `timeout`.
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.send_bytes_impl(bytes, Some(Instant::now() + timeout))
    }

    fn send_bytes_impl(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<()> {
        let mut scratch = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let n = bytes.len();
        let mut head = [0u8; 12];
        let hlen = if n > i32::MAX as usize {
            head[..4].copy_from_slice(&(-1i32).to_be_bytes());
            head[4..].copy_from_slice(&(n as u64).to_be_bytes());
            12
        } else {
            head[..4].copy_from_slice(&(n as i32).to_be_bytes());
            4
        };
        if n <= SMALL {
            scratch.clear();
            scratch.extend_from_slice(&head[..hlen]);
            scratch.extend_from_slice(bytes);
            self.write_all(&[&scratch[..]], deadline)
        } else {
            self.write_all(&[&head[..hlen], bytes], deadline)
        }
    }

    /// Writes all of `parts` (caller holds the write lock).
    fn write_all(&self, parts: &[&[u8]], deadline: Option<Instant>) -> Result<()> {
        if !self.writable {
            return Err(Error::InvalidArgument(
                "this end of a simplex pipe cannot send".into(),
            ));
        }
        let (mut i, mut off) = (0, 0);
        while i < parts.len() {
            if off == parts[i].len() {
                i += 1;
                off = 0;
                continue;
            }
            if deadline.is_some() && !wait_fd(self.fd.as_fd(), PollFlags::OUT, deadline)? {
                return Err(Error::Timeout(Duration::ZERO));
            }
            let r = if parts.len() - i == 1 {
                rustix::net::send(&self.fd, &parts[i][off..], SendFlags::NOSIGNAL)
            } else {
                let slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&parts[i][off..]))
                    .chain(parts[i + 1..].iter().map(|p| IoSlice::new(p)))
                    .collect();
                let mut anc = rustix::net::SendAncillaryBuffer::default();
                rustix::net::sendmsg(&self.fd, &slices, &mut anc, SendFlags::NOSIGNAL)
            };
            match r {
                Ok(mut k) => {
                    while k > 0 {
                        let left = parts[i].len() - off;
                        if k >= left {
                            k -= left;
                            i += 1;
                            off = 0;
                        } else {
                            off += k;
                            k = 0;
                        }
                    }
                }
                Err(Errno::INTR) | Err(Errno::AGAIN) => {}
                Err(Errno::PIPE) | Err(Errno::CONNRESET) => {
                    return Err(Error::Closed("the peer closed the connection".into()));
                }
                Err(e) => return Err(io_err("send on a connection", e)),
            }
        }
        Ok(())
    }

    // -------------------------------------------------------------- receiving

    /// Receives a value sent with [`send`](Self::send).
    ///
    /// A message that is not exactly one `T` (another type, bytes left over, or a pickle
    /// from CPython's `Connection.send`) is an [`Error::WrongType`] naming `T`; one that
    /// `T`'s `Deserialize` refuses is an [`Error::Deserialize`]. Either way the message is
    /// consumed and the next `recv` reads the next message.
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe::duplex().unwrap();
    /// a.send(&(5u32, 7u32)).unwrap();
    /// a.send(&9u32).unwrap();
    /// assert!(matches!(b.recv::<u32>(), Err(multiproc::Error::WrongType { .. })));
    /// assert_eq!(b.recv::<u32>().unwrap(), 9);
    /// ```
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        decode(&self.recv_impl(None)?)
    }

    /// Like [`recv`](Self::recv), but gives up with [`Error::Timeout`] after `timeout`.
    /// A message that arrived only in part stays buffered for the next call.
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        decode(&self.recv_impl(Some((Instant::now() + timeout, timeout)))?)
    }

    /// Receives one message's bytes (CPython's `recv_bytes`).
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_impl(None)
    }

    /// Like [`recv_bytes`](Self::recv_bytes), giving up with [`Error::Timeout`] after
    /// `timeout`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_impl(Some((Instant::now() + timeout, timeout)))
    }

    /// Whether a message (or the end of the stream) can be read without blocking, waiting up
    /// to `timeout` for one (`Duration::ZERO`: just look).
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        {
            let st = self.read.lock().unwrap_or_else(|e| e.into_inner());
            if st.buf.len() > st.start || st.pending.is_some() {
                return Ok(true);
            }
        }
        wait_fd(
            self.fd.as_fd(),
            PollFlags::IN,
            Some(Instant::now() + timeout),
        )
    }

    fn recv_impl(&self, deadline: Option<(Instant, Duration)>) -> Result<Vec<u8>> {
        if !self.readable {
            return Err(Error::InvalidArgument(
                "this end of a simplex pipe cannot receive".into(),
            ));
        }
        if self.broken.load(Ordering::Relaxed) {
            return Err(Error::Protocol(
                "the connection lost its message framing after an earlier error".into(),
            ));
        }
        let mut st = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let r = self.recv_locked(&mut st, deadline.map(|d| d.0));
        match r {
            Err(Error::Timeout(_)) => {
                Err(Error::Timeout(deadline.map(|d| d.1).unwrap_or_default()))
            }
            Err(e @ Error::Protocol(_)) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(e)
            }
            r => r,
        }
    }

    /// Reads more bytes into the read buffer. Returns the count (0 = end of stream).
    fn fill(&self, st: &mut ReadState, deadline: Option<Instant>) -> Result<usize> {
        if st.start > 0 && (st.start == st.buf.len() || st.start > RBUF / 2) {
            st.buf.drain(..st.start);
            st.start = 0;
        }
        if st.buf.capacity() - st.buf.len() < 4096 {
            st.buf.reserve(RBUF.max(st.buf.len()));
        }
        self.read_into(&mut st.buf, deadline)
    }

    fn read_into(&self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<usize> {
        // A request/reply peer (a manager, an echoing process) often answers within
        // microseconds, while waking from a blocking read costs tens of µs on small VMs (an
        // idle CPU's exit and a cross-CPU wake-up). So a few non-blocking reads first, with
        // the crate's one bounded spin (hints, then yields; never past the deadline).
        let mut backoff = Backoff::new(RECV_SPIN, deadline);
        loop {
            match rustix::net::recv(
                &self.fd,
                rustix::buffer::spare_capacity(buf),
                RecvFlags::DONTWAIT,
            ) {
                Ok((n, _)) => return Ok(n),
                Err(Errno::AGAIN) | Err(Errno::INTR) => {
                    if !backoff.snooze() {
                        break;
                    }
                }
                Err(Errno::CONNRESET) => return Ok(0),
                // Not a socket (a pipe): straight to the blocking read below.
                Err(_) => break,
            }
        }
        loop {
            if deadline.is_some() && !wait_fd(self.fd.as_fd(), PollFlags::IN, deadline)? {
                return Err(Error::Timeout(Duration::ZERO));
            }
            match rustix::net::recv(
                &self.fd,
                rustix::buffer::spare_capacity(buf),
                RecvFlags::empty(),
            ) {
                Ok((n, _)) => return Ok(n),
                Err(Errno::INTR) | Err(Errno::AGAIN) => {}
                Err(Errno::CONNRESET) => return Ok(0),
                Err(Errno::NOTSOCK) => {
                    return match rustix::io::read(&self.fd, rustix::buffer::spare_capacity(buf)) {
                        Ok(n) => Ok(n),
                        Err(Errno::INTR) | Err(Errno::AGAIN) => continue,
                        Err(e) => Err(io_err("read from a connection", e)),
                    };
                }
                Err(e) => return Err(io_err("recv on a connection", e)),
            }
        }
    }

    fn recv_locked(&self, st: &mut ReadState, deadline: Option<Instant>) -> Result<Vec<u8>> {
        if let Some((mut msg, mut filled, size)) = st.pending.take() {
            return match self.finish_direct(&mut msg, &mut filled, size, deadline) {
                Ok(()) => Ok(msg),
                Err(e) => {
                    if matches!(e, Error::Timeout(_)) {
                        st.pending = Some((msg, filled, size));
                    }
                    Err(e)
                }
            };
        }
        // The header.
        let (hlen, size) = loop {
            let avail = &st.buf[st.start..];
            if avail.len() >= 4 {
                let n = i32::from_be_bytes(avail[..4].try_into().expect("4 bytes"));
                if n >= 0 {
                    break (4, n as u64);
                }
                if n != -1 {
                    return Err(Error::Protocol(format!("invalid message length {n}")));
                }
                if avail.len() >= 12 {
                    break (
                        12,
                        u64::from_be_bytes(avail[4..12].try_into().expect("8 bytes")),
                    );
                }
            }
            if self.fill(st, deadline)? == 0 {
                return Err(self.eof(st.buf.len() > st.start));
            }
        };
        let max = self.max_message_size();
        if size > max as u64 {
            return Err(Error::Protocol(format!(
                "incoming message of {size} bytes exceeds the maximum of {max} bytes"
            )));
        }
        let size = size as usize;
        if size <= DIRECT {
            while st.buf.len() - st.start < hlen + size {
                if self.fill(st, deadline)? == 0 {
                    return Err(self.eof(true));
                }
            }
            let from = st.start + hlen;
            let msg = st.buf[from..from + size].to_vec();
            st.start = from + size;
            return Ok(msg);
        }
        // A large message: its own buffer, filled from what is buffered and then directly.
        // Without a limit the claim is bounded only by memory: failing to get it is an
        // error, not an abort (the pages are touched only as the bytes arrive).
        let mut msg = Vec::new();
        if msg.try_reserve_exact(size).is_err() {
            return Err(Error::Protocol(format!(
                "incoming message of {size} bytes does not fit in memory"
            )));
        }
        let from = st.start + hlen;
        let mut filled = (st.buf.len() - from).min(size);
        msg.extend_from_slice(&st.buf[from..from + filled]);
        st.start = from + filled;
        match self.finish_direct(&mut msg, &mut filled, size, deadline) {
            Ok(()) => Ok(msg),
            Err(e) => {
                if matches!(e, Error::Timeout(_)) {
                    st.pending = Some((msg, filled, size));
                }
                Err(e)
            }
        }
    }

    /// Reads the rest of a large message of `size` bytes straight into `msg[*filled..]`.
    /// `msg` grows (zeroed) a chunk at a time as bytes arrive, so a peer claiming a huge
    /// message costs memory only for what it really sends.
    fn finish_direct(
        &self,
        msg: &mut Vec<u8>,
        filled: &mut usize,
        size: usize,
        deadline: Option<Instant>,
    ) -> Result<()> {
        const CHUNK: usize = 4 << 20;
        while *filled < size {
            if *filled == msg.len() {
                msg.resize(size.min(*filled + CHUNK), 0);
            }
            if deadline.is_some() && !wait_fd(self.fd.as_fd(), PollFlags::IN, deadline)? {
                return Err(Error::Timeout(Duration::ZERO));
            }
            let r = match rustix::net::recv(&self.fd, &mut msg[*filled..], RecvFlags::empty()) {
                Err(Errno::NOTSOCK) => rustix::io::read(&self.fd, &mut msg[*filled..]),
                r => r.map(|(n, _)| n),
            };
            match r {
                Ok(0) | Err(Errno::CONNRESET) => return Err(self.eof(true)),
                Ok(n) => *filled += n,
                Err(Errno::INTR) | Err(Errno::AGAIN) => {}
                Err(e) => return Err(io_err("recv on a connection", e)),
            }
        }
        Ok(())
    }

    fn eof(&self, mid_message: bool) -> Error {
        if mid_message {
            Error::Closed("the peer closed the connection in the middle of a message".into())
        } else {
            Error::Closed("the peer closed the connection".into())
        }
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(crate::wire::codec::decode_exact(bytes)?)
}

#[derive(Serialize, Deserialize)]
struct ConnWire {
    fd: u32,
    readable: bool,
    writable: bool,
    max: u64,
}

impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // Buffered, unread bytes stay with this handle; send a connection before using it.
        let fd = crate::wire::fdctx::push_fd(&self.fd, "Connection")
            .map_err(serde::ser::Error::custom)?;
        ConnWire {
            fd,
            readable: self.readable,
            writable: self.writable,
            max: self.max_message_size() as u64,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = ConnWire::deserialize(d)?;
        let fd =
            crate::wire::fdctx::take_fd(w.fd, "Connection").map_err(serde::de::Error::custom)?;
        let max = usize::try_from(w.max).unwrap_or(usize::MAX);
        let c = Connection::from_fd(fd, w.readable, w.writable, max);
        Ok(c)
    }
}

/// Waits until at least one of `conns` has a message (or end of stream) to read, for at
/// most `timeout` (`None`: no limit); returns the indices of the ready ones, in order
/// (empty on timeout). Python's `multiprocessing.connection.wait`.
///
/// ```
/// use std::time::Duration;
/// let (a, b) = multiproc::Pipe::duplex().unwrap();
/// let (c, d) = multiproc::Pipe::duplex().unwrap();
/// c.send(&1u8).unwrap();
/// let ready = multiproc::connection::wait(&[&b, &d], Some(Duration::from_secs(1))).unwrap();
/// assert_eq!(ready, [1]);
/// # drop(a);
/// ```
pub fn wait(conns: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let buffered: Vec<usize> = conns
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let st = c.read.lock().unwrap_or_else(|e| e.into_inner());
            st.buf.len() > st.start || st.pending.is_some()
        })
        .map(|(i, _)| i)
        .collect();
    let deadline = match (buffered.is_empty(), timeout) {
        (false, _) => Some(Instant::now()),
        (true, t) => t.map(|t| Instant::now() + t),
    };
    loop {
        let rem = remaining(deadline);
        let ts = rem.map(crate::sys::timespec);
        let mut pfds: Vec<PollFd<'_>> = conns
            .iter()
            .map(|c| PollFd::new(&c.fd, PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut pfds, ts.as_ref()) {
            Ok(_) => {
                let mut ready: Vec<usize> = (0..conns.len())
                    .filter(|&i| !pfds[i].revents().is_empty() || buffered.contains(&i))
                    .collect();
                ready.dedup();
                if !ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(ready);
                }
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(io_err("poll", e)),
        }
    }
}
