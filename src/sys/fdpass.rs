//! Sending file descriptors over Unix sockets (`SCM_RIGHTS`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most fds one message carries.
pub(crate) const MAX_FDS: usize = 16;

/// Sends `bytes` (whole) with `fds` attached to the first chunk.
pub(crate) fn send_with_fds(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        anc.push(SendAncillaryMessage::ScmRights(fds));
    }
    let mut sent =
        rustix::net::sendmsg(&sock, &[IoSlice::new(bytes)], &mut anc, SendFlags::NOSIGNAL)?;
    while sent < bytes.len() {
        sent += rustix::net::send(&sock, &bytes[sent..], SendFlags::NOSIGNAL)?;
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and any fds attached. Returns `(0, [])` at EOF.
pub(crate) fn recv_with_fds(sock: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    recv_flags(sock, buf, RecvFlags::CMSG_CLOEXEC)
}

/// As [`recv_with_fds`], but fails with `WouldBlock` at once when nothing is queued (for a
/// reader that must never wait on an untrusted peer).
pub(crate) fn recv_with_fds_nowait(
    sock: impl AsFd,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    recv_flags(sock, buf, RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT)
}

fn recv_flags(
    sock: impl AsFd,
    buf: &mut [u8],
    flags: RecvFlags,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(&sock, &mut [IoSliceMut::new(buf)], &mut anc, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = m {
            fds.extend(r);
        }
    }
    Ok((msg.bytes, fds))
}
