//! The fork server loop and the start of a spawned child.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::event::{PollFd, PollFlags};

use super::protocol::{Reply, Start};
use crate::sys::fdpass::{recv_with_fds, send_with_fds};
use crate::sys::process::{self as sp, Forked};

fn send(sock: &OwnedFd, reply: &Reply) -> std::io::Result<()> {
    let bytes = postcard::to_stdvec(reply).expect("replies always serialize");
    send_with_fds(sock, &bytes, &[])
}

/// Splits a received `Start` into its payload and the fds meant for the entry point.
fn take_payload(start: &Start, mut fds: Vec<OwnedFd>) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    match &start.payload {
        Some(p) => Ok((p.clone(), fds)),
        None => {
            let memfd = fds
                .pop()
                .ok_or_else(|| std::io::Error::other("payload memfd missing"))?;
            let mut buf = Vec::with_capacity(start.payload_len as usize);
            std::fs::File::from(memfd).read_to_end(&mut buf)?;
            Ok((buf, fds))
        }
    }
}

fn recv_start(sock: &OwnedFd, buf: &mut [u8]) -> std::io::Result<Option<(Start, Vec<OwnedFd>)>> {
    let (n, fds) = recv_with_fds(sock, buf)?;
    if n == 0 {
        return Ok(None);
    }
    let start: Start = postcard::from_bytes(&buf[..n]).map_err(std::io::Error::other)?;
    Ok(Some((start, fds)))
}

/// Ends the fork server: SIGKILLs each child's process group first, so what a task or a
/// `Process` started dies with it (a child's own death signal would spare its children).
fn end(children: &[(u32, OwnedFd)]) -> ! {
    for (pid, _) in children {
        // Each child leads its group; while it is our unreaped child its pid, hence the
        // group id, cannot be reused.
        let _ = sp::kill_group(*pid, libc::SIGKILL);
    }
    sp::exit_now(0)
}

/// The fork server: a single-threaded process that forks children on request and reports
/// their exits. Ends when the parent closes the socket or dies (`PR_SET_PDEATHSIG`, turned
/// into a readable pipe), or on SIGTERM, taking its children's process groups with it.
pub(super) fn serve(sock: OwnedFd) -> ! {
    sp::ignore_sigpipe();
    let Ok(death) = sp::parent_death_fd() else {
        sp::exit_now(1);
    };
    let me = std::process::id();
    let hello = Reply::Hello {
        build_id: super::build_id::build_id().to_string(),
        pid: me,
    };
    if send(&sock, &hello).is_err() {
        sp::exit_now(0);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut children: Vec<(u32, OwnedFd)> = Vec::new();
    loop {
        let mut polls = Vec::with_capacity(children.len() + 2);
        polls.push(PollFd::new(&sock, PollFlags::IN));
        polls.push(PollFd::new(&death, PollFlags::IN));
        polls.extend(
            children
                .iter()
                .map(|(_, fd)| PollFd::new(fd, PollFlags::IN)),
        );
        match rustix::event::poll(&mut polls, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => sp::exit_now(1),
        }
        let sock_ready = !polls[0].revents().is_empty();
        let parent_died = !polls[1].revents().is_empty();
        let exited: Vec<usize> = (2..polls.len())
            .filter(|&i| !polls[i].revents().is_empty())
            .map(|i| i - 2)
            .collect();
        drop(polls);
        if parent_died {
            end(&children);
        }
        for &i in exited.iter().rev() {
            let (pid, _fd) = children.swap_remove(i);
            if let Some((_, status)) = sp::try_wait(pid as i32) {
                let _ = send(&sock, &Reply::Exited { pid, status });
            } else {
                // pidfd readable means exited; a failed wait leaves nothing to report.
                let _ = send(
                    &sock,
                    &Reply::Exited {
                        pid,
                        status: Default::default(),
                    },
                );
            }
        }
        if !sock_ready {
            continue;
        }
        let (start, fds) = match recv_start(&sock, &mut buf) {
            Ok(Some(x)) => x,
            Ok(None) | Err(_) => end(&children), // parent gone: our children die with us
        };
        let id = start.id;
        let (payload, fds) = match take_payload(&start, fds) {
            Ok(x) => x,
            Err(e) => {
                let _ = send(
                    &sock,
                    &Reply::StartFailed {
                        id,
                        error: e.to_string(),
                    },
                );
                continue;
            }
        };
        match sp::fork() {
            Ok(Forked::Child) => {
                // Its own group first, before it can start anything: a kill of the group
                // then reaches whatever the task starts (`Child::signal`).
                let _ = sp::own_process_group(0);
                let keep: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
                sp::close_fds_except(&keep);
                std::mem::forget(children);
                std::mem::forget(sock);
                std::mem::forget(death);
                sp::die_with_parent(me);
                super::run_entry(start.entry, &payload, fds);
            }
            Ok(Forked::Parent(pid)) => {
                drop(fds);
                // Also from this side, so the group exists before `Started` is sent (the
                // child may not have run yet). Fails harmlessly if the child already did.
                let _ = sp::own_process_group(pid);
                match sp::pidfd_open(pid) {
                    Ok(pfd) => children.push((pid, pfd)),
                    Err(_) => { /* cannot watch it: its exit will not be reported */ }
                }
                let _ = send(&sock, &Reply::Started { id, pid });
            }
            Err(e) => {
                let _ = send(
                    &sock,
                    &Reply::StartFailed {
                        id,
                        error: format!("fork: {e}"),
                    },
                );
            }
        }
    }
}

/// A child started by re-executing the program: say hello, receive the job, run it.
pub(super) fn run_spawned_child(sock: OwnedFd) -> ! {
    let hello = Reply::Hello {
        build_id: super::build_id::build_id().to_string(),
        pid: std::process::id(),
    };
    if send(&sock, &hello).is_err() {
        sp::exit_now(96);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let (start, fds) = match recv_start(&sock, &mut buf) {
        Ok(Some(x)) => x,
        _ => sp::exit_now(96), // the parent refused us (wrong build) or went away
    };
    let (payload, fds) = match take_payload(&start, fds) {
        Ok(x) => x,
        Err(_) => sp::exit_now(96),
    };
    // Keep the socket open for our lifetime: its EOF tells the parent we are gone.
    std::mem::forget(sock.as_fd().try_clone_to_owned());
    std::mem::forget(sock);
    sp::reset_signals();
    super::run_entry(start.entry, &payload, fds)
}
