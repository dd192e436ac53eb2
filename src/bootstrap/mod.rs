//! Worker bootstrap: how a process of this program becomes a worker, a fork server or a
//! `Process` child before any user code runs. See `README.md` beside this file for the
//! protocol.

pub(crate) mod build_id;
pub(crate) mod children;
mod forkserver;
mod protocol;
pub(crate) mod task;

pub(crate) use children::{Child, ChildSpec, start_child};
pub use children::{StartMethod, get_start_method, set_start_method};
pub(crate) use task::{TaskCtx, ship_task, unship_task};

use std::os::fd::OwnedFd;

/// Environment variable that tells a started process which role to play.
pub(crate) const ROLE_ENV: &str = "MULTIPROC_ROLE";
/// Environment variable with the fd number of the control socket.
pub(crate) const FD_ENV: &str = "MULTIPROC_FD";

/// Turns this process into a multiproc worker if multiproc started it; otherwise returns at
/// once.
///
/// **You no longer need to call it.** The library runs it by itself before `main` (from
/// an `.init_array` entry linked into every program that uses multiproc: binaries,
/// examples, integration tests and doctests alike), so by the time your code runs it has
/// nothing left to do. It stays for compatibility and costs nothing; it still helps where a
/// platform or linker drops the start-up hook. Python users know it as
/// `multiprocessing.freeze_support()`.
///
/// Should the hook not have run, a worker that reaches your code refuses at once the moment
/// that code tries to start a process, and the parent's start fails with an error naming
/// `init()`: a program never multiplies itself.
///
/// ```standalone_crate
/// // No `multiproc::init()` anywhere: workers still start.
/// use multiproc::{Executor, ProcessPool};
/// fn double(x: u32) -> u32 { x * 2 }
/// let pool = ProcessPool::new(2).unwrap();
/// assert_eq!(pool.map(double, 1..4).unwrap(), vec![2, 4, 6]);
/// multiproc::init(); // harmless, anywhere
/// ```
pub fn init() {
    let Some(role) = crate::sys::process::take_env(ROLE_ENV) else {
        return;
    };
    let fd = crate::sys::process::take_env(FD_ENV).and_then(|s| s.parse().ok());
    let Some(fd) = fd.and_then(|fd| crate::sys::process::adopt_fd(fd).ok()) else {
        eprintln!("multiproc: started as {role} without a control socket");
        crate::sys::process::exit_now(96);
    };
    match role.as_str() {
        "forkserver" => forkserver::serve(fd),
        "child" => forkserver::run_spawned_child(fd),
        other => {
            eprintln!("multiproc: unknown role {other:?}");
            crate::sys::process::exit_now(96)
        }
    }
}

/// Same as [`init`]; the name Python users know.
pub fn freeze_support() {
    init()
}

/// Formerly needed in test binaries (integration test files, benchmarks); **no longer
/// needed**: the library runs [`init`] before `main` by itself. It stays for compatibility
/// and is harmless (it registers [`init`] to run before `main` once more).
///
/// ```
/// multiproc::test_support!();
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! test_support {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __MULTIPROC_INIT: extern "C" fn() = {
            extern "C" fn __multiproc_init() {
                $crate::init();
            }
            __multiproc_init
        };
    };
}

/// The safety net behind the start-up hook: called before this process starts any child.
/// If multiproc started this process as a worker and it is running the program's own code
/// anyway (`init()` did not run before it), it must not start children of its own, each of
/// which would do the same: it tells its parent why, on the control socket, and exits.
pub(crate) fn refuse_if_uninitialized() {
    if std::env::var_os(ROLE_ENV).is_none() {
        return;
    }
    let pid = std::process::id();
    eprintln!(
        "multiproc: process {pid} was started as a worker but runs the program's own code and \
         tried to start a process: multiproc::init() did not run first. Call \
         multiproc::init() as the first line of main."
    );
    let fd = std::env::var(FD_ENV).ok().and_then(|s| s.parse().ok());
    if let Some(fd) = fd.and_then(|fd| crate::sys::process::adopt_fd(fd).ok()) {
        let msg = postcard::to_stdvec(&protocol::Reply::NotInitialized { pid })
            .expect("replies always serialize");
        let _ = crate::sys::fdpass::send_with_fds(&fd, &msg, &[]);
    }
    crate::sys::process::exit_now(95)
}

/// Runs a child's entry point and exits with its code. Never returns.
pub(crate) fn run_entry(entry: i64, payload: &[u8], fds: Vec<OwnedFd>) -> ! {
    let f = crate::sys::code::unship_entry(entry);
    let code = f(payload, fds);
    crate::sys::process::exit_now(code)
}
