//! Running multiproc's start-up hook before `main`, in every program that links the crate.

/// Runs [`crate::init`] before `main` (and before a test harness, a doctest's `main` or any
/// other user code), so a process that multiproc started becomes a worker even when the
/// program never calls `init()`.
///
/// It is an `.init_array` entry of the library itself. rustc keeps `#[used]` statics of an
/// rlib in the final link (its synthetic symbols object references them) and linkers keep
/// every `.init_array` section, so it runs in binaries, examples, integration tests and
/// doctests alike (`tests/bootstrap.rs` and the crate's doctests check this).
#[used]
// SAFETY: the entry is a plain `extern "C" fn()`, which is what the loader calls for each
// `.init_array` element; it takes no arguments it relies on and returns normally (or never,
// when this process is a worker: then it ends through `_exit`).
#[unsafe(link_section = ".init_array")]
static RUN_INIT_BEFORE_MAIN: extern "C" fn() = {
    extern "C" fn run_init() {
        crate::init();
    }
    run_init
};
