//! Running code when the program exits normally (`exit`, or returning from `main`).

use std::sync::Mutex;

/// Hooks that must run before all others (joining non-daemon threads, which may still use
/// child processes, as Python's `threading._shutdown` runs first).
static FIRST: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
/// Hooks that must run after all others (stopping the fork servers, after children joined).
static LAST: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

extern "C" fn run_hooks() {
    for list in [&FIRST, &HOOKS, &LAST] {
        let hooks = std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()));
        for h in hooks {
            h();
        }
    }
}

/// Like [`at_exit`], but runs before every hook registered with `at_exit`.
pub(crate) fn at_exit_first(hook: fn()) {
    register();
    let mut hooks = FIRST.lock().unwrap_or_else(|e| e.into_inner());
    if !hooks.contains(&hook) {
        hooks.push(hook);
    }
}

/// Like [`at_exit`], but runs after every hook registered with `at_exit`.
pub(crate) fn at_exit_last(hook: fn()) {
    register();
    let mut hooks = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if !hooks.contains(&hook) {
        hooks.push(hook);
    }
}

fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: `run_hooks` is a plain `extern "C" fn()` that never unwinds across the C
    // boundary (it only locks mutexes, recovering from poison, and calls hooks that
    // multiproc controls and that do not panic).
    ONCE.call_once(|| unsafe {
        libc::atexit(run_hooks);
    });
}

/// Registers `hook` to run once at normal exit of this process (not after `_exit`, not in
/// children of the fork server, which leave through `_exit`).
pub(crate) fn at_exit(hook: fn()) {
    register();
    let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    if !hooks.contains(&hook) {
        hooks.push(hook);
    }
}
