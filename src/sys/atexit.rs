//! Running code when the program exits normally (`exit`, or returning from `main`).

use std::sync::Mutex;

static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

extern "C" fn run_hooks() {
    let hooks = std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|e| e.into_inner()));
    for h in hooks {
        h();
    }
}

/// Registers `hook` to run once at normal exit of this process (not after `_exit`, not in
/// children of the fork server, which leave through `_exit`).
pub(crate) fn at_exit(hook: fn()) {
    let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    if hooks.is_empty() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: `run_hooks` is a plain `extern "C" fn()` that never unwinds across the
        // C boundary (it only locks a mutex, recovering from poison, and calls hooks that
        // multiproc controls and that do not panic).
        ONCE.call_once(|| unsafe {
            libc::atexit(run_hooks);
        });
    }
    if !hooks.contains(&hook) {
        hooks.push(hook);
    }
}
