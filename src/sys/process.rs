//! Process-level system calls: fork, death signals, kill, wait, limits.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::ExitStatus;

/// What `fork` returned.
pub(crate) enum Forked {
    /// In the parent: the child's pid.
    Parent(u32),
    /// In the child.
    Child,
}

/// Forks the calling process. The child starts with default signal dispositions
/// ([`reset_signals`]) and the caller's signal mask.
///
/// Only the fork server calls this, and it is single-threaded by construction (a fresh
/// exec of the program that entered its loop before any other code ran), so the child
/// inherits no lock held by another thread.
///
/// Every signal is blocked from just before the fork until the child has reset its
/// dispositions: a signal sent to the child in that instant (a `terminate` the moment
/// `start` returns) stays pending and then acts by default. Without the block it would run
/// the server's SIGTERM handler in the child, which writes to the *server's* death pipe
/// (its fd is still open there) and so makes the server kill every child it has.
pub(crate) fn fork() -> io::Result<Forked> {
    let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises `all`; pthread_sigmask reads `all` and writes `old`,
    // both live locals. Neither can fail with these valid arguments.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
    }
    // SAFETY: see above: the caller is single-threaded, so the child's copy of memory is
    // consistent (no other thread was mid-way through a lock or an allocation).
    let r = match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            reset_signals();
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(pid as u32)),
    };
    // SAFETY: `old` was initialised by the pthread_sigmask above; restoring it delivers
    // whatever arrived meanwhile (in the child, under the default dispositions).
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut()) };
    r
}

/// Asks the kernel to SIGKILL this process when the thread that created it exits.
pub(crate) fn die_with_parent(expected_parent: u32) {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    // The parent may have died before the prctl took effect.
    if std::os::unix::process::parent_id() != expected_parent {
        exit_now(1);
    }
}

/// Write end of the pipe [`parent_death_fd`] makes readable (-1: none yet).
static DEATH_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_parent_death(_sig: libc::c_int) {
    let fd = DEATH_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; the buffer is a live one-byte static. A full
        // pipe (EAGAIN, non-blocking) already says the same thing.
        unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
    }
}

/// For the fork server: turns "the program that started us died" (and a SIGTERM) from a
/// SIGKILL into a readable fd, so the server can kill its children's process groups
/// (whatever their tasks started) before it exits. Call once, single-threaded, in a process
/// whose death signal is SIGKILL (`spawn_exec`): its parent is the caller's parent now,
/// since if it had died we would be dead.
pub(crate) fn parent_death_fd() -> io::Result<OwnedFd> {
    use rustix::pipe::{PipeFlags, pipe_with};
    let parent = std::os::unix::process::parent_id();
    let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    // The write end lives as long as the process: the handler may run at any time.
    DEATH_PIPE.store(
        std::os::fd::IntoRawFd::into_raw_fd(write),
        std::sync::atomic::Ordering::Relaxed,
    );
    // SAFETY: a zeroed sigaction with a plain handler, an empty mask and no flags is
    // valid; the handler only loads an atomic and calls write (async-signal-safe).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_parent_death as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
    // The parent may have died after we read its pid and before the prctl: then no signal
    // comes, so say it ourselves.
    if std::os::unix::process::parent_id() != parent {
        on_parent_death(libc::SIGTERM);
    }
    Ok(read)
}

/// Sends `sig` to `pid`. `ESRCH` (already gone) is not an error.
pub(crate) fn kill(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory effects in this process.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// Sends `sig` to the process group `pgid` (every child multiproc starts leads its own
/// group, so this reaches the processes *it* started too). Falls back to the process alone
/// when there is no such group (it has not called `setpgid` yet, or left its group).
/// Gone is not an error.
pub(crate) fn kill_group(pgid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory effects in this process; a negative pid names a group.
    if unsafe { libc::kill(-(pgid as libc::pid_t), sig) } == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return kill(pgid, sig);
        }
        return Err(e);
    }
    Ok(())
}

/// Puts process `pid` (0: this process) in a new process group of its own, so that one
/// signal to the group reaches it and everything it starts, and a terminal's Ctrl-C
/// (sent to the foreground group) no longer reaches it: its parent manages it.
pub(crate) fn own_process_group(pid: u32) -> io::Result<()> {
    // SAFETY: setpgid has no memory effects in this process.
    if unsafe { libc::setpgid(pid as libc::pid_t, pid as libc::pid_t) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Decodes a raw `wait` status.
pub(crate) fn decode_status(status: i32) -> ExitStatus {
    if libc::WIFEXITED(status) {
        ExitStatus {
            code: Some(libc::WEXITSTATUS(status)),
            signal: None,
        }
    } else if libc::WIFSIGNALED(status) {
        ExitStatus {
            code: None,
            signal: Some(libc::WTERMSIG(status)),
        }
    } else {
        ExitStatus {
            code: None,
            signal: None,
        }
    }
}

/// Reaps one exited child without blocking: `Some((pid, status))`, or `None` if none has
/// exited. `pid` -1 means any child.
pub(crate) fn try_wait(pid: i32) -> Option<(u32, ExitStatus)> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer for the duration of the call.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r > 0 {
        Some((r as u32, decode_status(status)))
    } else {
        None
    }
}

/// Waits for child `pid` to exit and reaps it.
pub(crate) fn wait(pid: u32) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        if r == pid as i32 {
            return Ok(decode_status(status));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A pidfd for `pid` (readable once the process has exited).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Caps the address space of this process (`RLIMIT_AS`).
pub(crate) fn set_memory_limit(bytes: u64) -> io::Result<()> {
    let lim = rustix::process::Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    Ok(rustix::process::setrlimit(
        rustix::process::Resource::As,
        lim,
    )?)
}

/// Ends this process at once with `code`, after flushing Rust's stdout, without running
/// `atexit` handlers or destructors that belong to the parent's copy of the program.
pub(crate) fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// Takes ownership of an inherited fd number given to us by our parent.
pub(crate) fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only checks that the number is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked) and was handed to this process for it to own; nothing
    // else in this process refers to that number.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    Ok(owned)
}

/// Closes every fd above 2 except those in `keep` (for freshly forked children).
pub(crate) fn close_fds_except(keep: &[RawFd]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing an fd number this fresh child owns and will not use again.
            unsafe { libc::close(fd) };
        }
    }
}

/// Restores default dispositions for signals a parent may have changed.
pub(crate) fn reset_signals() {
    for sig in [libc::SIGCHLD, libc::SIGPIPE, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: SIG_DFL is always a valid disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// Ignores SIGPIPE (writes to a closed pipe return EPIPE instead of killing us).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: SIG_IGN is always a valid disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Reads and removes an environment variable that a parent set for us.
///
/// Called only by `init` when the variable is present, i.e. in a process that multiproc just
/// started and that has not yet run any user code or started a thread.
pub(crate) fn take_env(name: &str) -> Option<String> {
    let v = std::env::var(name).ok()?;
    // SAFETY: see above: the process is single-threaded here, so no other thread can be
    // reading the environment concurrently.
    unsafe { std::env::remove_var(name) };
    Some(v)
}

/// Starts `exe` as a child that dies with the calling thread, leads a process group of its
/// own, reads stdin from `/dev/null`, has `fd` inherited at the same number, and `envs` set.
pub(crate) fn spawn_exec(
    exe: &std::path::Path,
    fd: RawFd,
    envs: &[(&str, String)],
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    let mut cmd = std::process::Command::new(exe);
    cmd.envs(envs.iter().map(|(k, v)| (k, v)));
    cmd.process_group(0);
    // Python's children read /dev/null too. In a group of its own a child reading the
    // terminal would be stopped (SIGTTIN) and hang; and it must not eat the parent's input.
    // Fork-server children inherit it from their server.
    cmd.stdin(std::process::Stdio::null());
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid, fcntl, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    };
    cmd.spawn()
}

/// Sends `sig` through a pidfd (no pid-reuse race). A process that is already gone is
/// not an error.
pub(crate) fn pidfd_kill(pidfd: &impl AsRawFd, sig: i32) -> io::Result<()> {
    // SAFETY: the syscall reads only its integer arguments (a null siginfo is allowed).
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<u8>(),
            0,
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}
