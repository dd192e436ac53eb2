//! Running one task inside a worker: decode the argument, call, catch a panic, encode.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TaskError;

/// What a worker knows while it runs a task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskCtx {
    /// The worker's pid.
    pub pid: u32,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once per process) a panic hook that records the message and location of the
/// last panic on each thread, so a caught panic can be reported with both, then chains to
/// the previous hook unless this thread is quiet (see [`set_quiet`]).
pub(crate) fn capture_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload_as_str().unwrap_or("Box<dyn Any>").to_string();
            let loc = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            LAST_PANIC.with(|p| *p.borrow_mut() = Some((msg, loc)));
            if !QUIET.with(|q| q.get()) {
                prev(info);
            }
        }));
    });
}

/// Makes panics on this thread silent: a pool reports them through the task's error.
pub(crate) fn set_quiet(quiet: bool) {
    capture_panics();
    QUIET.with(|q| q.set(quiet));
}

/// Takes the last recorded panic of this thread, as `(message, location)`.
pub(crate) fn take_panic(payload: &(dyn std::any::Any + Send)) -> (String, Option<String>) {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "Box<dyn Any>".into());
            (msg, None)
        })
}

fn encode_err(e: &TaskError, out: &mut Vec<u8>) -> bool {
    postcard::to_io(e, &mut *out).expect("TaskError serializes");
    false
}

/// Runs `f` on the next argument in `input`; see [`TaskFn`](crate::sys::code::TaskFn).
pub(crate) fn run_task<F, A, R>(f: F, input: &mut &[u8], out: &mut Vec<u8>, ctx: &TaskCtx) -> bool
where
    F: Fn(A) -> R,
    A: DeserializeOwned,
    R: Serialize,
{
    let arg: A = match postcard::take_from_bytes(input) {
        Ok((a, rest)) => {
            *input = rest;
            a
        }
        Err(e) => {
            *input = &[];
            let err = TaskError::Deserialize {
                index: None,
                type_name: std::any::type_name::<A>().into(),
                message: e.to_string(),
            };
            return encode_err(&err, out);
        }
    };
    match catch_unwind(AssertUnwindSafe(|| f(arg))) {
        Ok(r) => {
            let start = out.len();
            match postcard::to_io(&r, &mut *out) {
                Ok(_) => true,
                Err(e) => {
                    out.truncate(start);
                    let err = TaskError::Serialize {
                        index: None,
                        type_name: std::any::type_name::<R>().into(),
                        message: e.to_string(),
                    };
                    encode_err(&err, out)
                }
            }
        }
        Err(payload) => {
            let (message, location) = take_panic(&*payload);
            encode_err(
                &TaskError::Panicked {
                    index: None,
                    message,
                    location,
                    pid: ctx.pid,
                },
                out,
            )
        }
    }
}
