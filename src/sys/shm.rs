//! POSIX shared memory objects, thread ids and process
//! liveness: the system side of `shm/` and `sync/`.

use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rustix::fs::Mode;
use rustix::shm::OFlags;

/// Where Linux (glibc, musl, CPython) keeps POSIX shared memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// `shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600)` then `ftruncate(size)`, exactly what
/// CPython's `SharedMemory(create=True)` does.
pub(crate) fn shm_create(name: &str, size: usize) -> io::Result<OwnedFd> {
    let fd = rustix::shm::open(
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        Mode::from_raw_mode(0o600),
    )?;
    if let Err(e) = rustix::fs::ftruncate(&fd, size as u64) {
        let _ = rustix::shm::unlink(name);
        return Err(e.into());
    }
    Ok(fd)
}

/// `shm_open(name, O_RDWR)`: returns the fd and the object's size.
pub(crate) fn shm_open(name: &str) -> io::Result<(OwnedFd, usize)> {
    let fd = rustix::shm::open(name, OFlags::RDWR, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    Ok((fd, st.st_size as usize))
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(name)?)
}

/// The inode of the shared memory object called `name`, if it exists.
pub(crate) fn shm_inode(name: &str) -> Option<u64> {
    let path = format!("{SHM_DIR}/{name}");
    rustix::fs::stat(path.as_str()).ok().map(|st| st.st_ino)
}

/// What `/proc/<id>/stat` says about a task (process or thread): its state letter and its
/// start time (clock ticks after boot). `None` if there is no such task.
pub(crate) fn task_stat(id: u32) -> Option<(u8, u64)> {
    let s = std::fs::read(format!("/proc/{id}/stat")).ok()?;
    // The command name (field 2) may contain anything, so parse after its closing ')'.
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&s[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // After ')': state is field 3; starttime is field 22, i.e. 19 fields after the state.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether the task (thread or process) `id` is alive: it exists and is neither a zombie
/// nor dead-but-unreaped. A zombie holds no lock and runs no code, so it counts as dead.
///
/// Errs on the side of "alive" (a lock is then only late to report a death, never wrong
/// about one): a task is dead only if `/proc` says it is a zombie, or if `/proc` has no
/// entry for it *and* `kill(id, 0)` says there is no such task (Linux accepts any thread id
/// there).
pub(crate) fn task_alive(id: u32) -> bool {
    alive_from(id, task_stat(id))
}

/// [`task_alive`] given what `/proc` said (`None`: nothing, as with `/proc` hidden).
pub(crate) fn alive_from(id: u32, stat: Option<(u8, u64)>) -> bool {
    match stat {
        Some((state, _)) => !matches!(state, b'Z' | b'X' | b'x'),
        None => match rustix::process::Pid::from_raw(id as i32) {
            Some(pid) => rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH),
            None => false,
        },
    }
}

/// Whether process `pid`, started at `start` (clock ticks after boot), is still running.
/// `false` only when that is certain (see [`task_alive`]).
pub(crate) fn process_alive(pid: u32, start: u64) -> bool {
    match task_stat(pid) {
        Some((state, s)) => s == start && !matches!(state, b'Z' | b'X' | b'x'),
        // No /proc entry: dead if the kernel agrees; with /proc unreadable, assume alive.
        None => {
            task_stat(std::process::id()).is_none()
                && rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| {
                    rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH)
                })
        }
    }
}

/// Bumped in the child after every `fork`, so cached thread ids are recomputed there.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    /// (fork generation, tid) of this thread; tid 0 = not yet known.
    static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// The calling thread's kernel thread id, cached (a lock's fast path needs it).
#[inline]
pub(crate) fn current_tid() -> u32 {
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    let (g, tid) = TID.with(|c| c.get());
    if tid != 0 && g == generation {
        return tid;
    }
    current_tid_slow()
}

/// Registers the fork hook (once per process image) that invalidates the caches below.
fn watch_forks() {
    static ATFORK: Once = Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a plain function with no captured state; the child handler
        // only bumps an atomic, which is async-signal-safe and valid right after fork.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// How many times this process image has been forked into (0 in the original process):
/// caches of per-process state compare it with what they were filled under.
pub(crate) fn fork_generation() -> u32 {
    watch_forks();
    FORK_GENERATION.load(Ordering::Relaxed)
}

#[cold]
fn current_tid_slow() -> u32 {
    watch_forks();
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    TID.with(|c| c.set((generation, tid)));
    tid
}

/// `(fork generation + 1) << 32 | pid`, or 0 before the first call.
static PID: AtomicU64 = AtomicU64::new(0);

/// This process's pid without a system call (cached; refreshed after `fork`).
pub(crate) fn current_pid() -> u32 {
    let generation = u64::from(FORK_GENERATION.load(Ordering::Relaxed)) + 1;
    let cached = PID.load(Ordering::Relaxed);
    if cached >> 32 == generation {
        return cached as u32;
    }
    watch_forks();
    let generation = u64::from(FORK_GENERATION.load(Ordering::Relaxed)) + 1;
    let pid = std::process::id();
    PID.store(generation << 32 | u64::from(pid), Ordering::Relaxed);
    pid
}
