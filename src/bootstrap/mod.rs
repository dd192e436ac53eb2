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
pub(crate) use task::{TaskCtx, run_task};

use std::os::fd::OwnedFd;

/// Environment variable that tells a started process which role to play.
pub(crate) const ROLE_ENV: &str = "MULTIPROC_ROLE";
/// Environment variable with the fd number of the control socket.
pub(crate) const FD_ENV: &str = "MULTIPROC_FD";

/// Turns this process into a multiproc worker if multiproc started it; otherwise returns at
/// once.
///
/// Call it first thing in `main` (before starting threads or reading arguments). In test
/// binaries use [`test_support!`](crate::test_support) instead. Python users know this as
/// `multiprocessing.freeze_support()`.
///
/// ```standalone_crate
/// multiproc::init();
/// // ... the program, free to start process pools ...
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

/// Makes a test binary (an integration test file, a benchmark, an example without
/// `init()`) able to start worker processes: put it once at the top level of the file.
///
/// It registers [`init`] to run before `main`, so the test harness never starts in a worker.
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

/// Runs a child's entry point and exits with its code. Never returns.
pub(crate) fn run_entry(entry: i64, payload: &[u8], fds: Vec<OwnedFd>) -> ! {
    let f = crate::sys::code::unship_entry(entry);
    let code = f(payload, fds);
    crate::sys::process::exit_now(code)
}
