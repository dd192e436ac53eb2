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
#[inline]
pub(crate) fn capture_panics() {
    static ONCE: Once = Once::new();
    if ONCE.is_completed() {
        return; // every call but the first: one load, inlined into each guard
    }
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

/// Runs user code that may panic, silently (the panic becomes an error value): returns its
/// value, or the panic's `(message, location)`.
#[inline]
pub(crate) fn catch_quiet<T>(f: impl FnOnce() -> T) -> Result<T, (String, Option<String>)> {
    capture_panics();
    let was = QUIET.with(|q| q.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.map_err(|p| take_panic(&*p))
}

/// Runs user code whose panic has nowhere to go (a done-callback): the panic is reported on
/// stderr like an uncaught thread panic, and only this call is lost.
pub(crate) fn catch_loud(what: &str, f: impl FnOnce()) {
    capture_panics();
    let was = QUIET.with(|q| q.replace(false));
    let r = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    if let Err(p) = r {
        let (message, _) = take_panic(&*p);
        eprintln!("multiproc: a {what} panicked ({message}); it was skipped and the pool goes on");
    }
}

/// The message of a panic caught in a user's `Serialize` or `Deserialize`.
pub(crate) fn panic_message((message, location): (String, Option<String>)) -> String {
    match location {
        Some(l) => format!("panicked at {l}: {message}"),
        None => format!("panicked: {message}"),
    }
}

/// How the user code inside one framed encode or decode (a `Serialize`, a `Deserialize`) is
/// guarded against panics: by itself ([`Each`]), or by a guard the caller holds around a
/// whole run of values ([`Held`]: a guard per value was a fifth of the cost of encoding a
/// `u64` in a map's chunk).
pub(crate) trait Guard {
    /// Runs `f`; a panic in it is `Err((message, location))` where this guard catches.
    fn call<T>(f: impl FnOnce() -> T) -> Result<T, (String, Option<String>)>;
}

/// Each value's user code is guarded by itself ([`catch_quiet`]).
pub(crate) struct Each;

impl Guard for Each {
    #[inline]
    fn call<T>(f: impl FnOnce() -> T) -> Result<T, (String, Option<String>)> {
        catch_quiet(f)
    }
}

/// The caller guards a whole run (see [`encode_run`]): a panic unwinds out of the framing
/// to it.
pub(crate) struct Held;

impl Guard for Held {
    #[inline]
    fn call<T>(f: impl FnOnce() -> T) -> Result<T, (String, Option<String>)> {
        Ok(f())
    }
}

/// Appends `v` framed as `[u32 length][postcard]`. A user's `Deserialize` may fail or panic
/// anywhere inside its bytes; the length lets the reader skip exactly that value, so the
/// values after it in the same chunk stay exact. Returns the error message on failure
/// (nothing is appended then).
#[inline]
pub(crate) fn encode_framed<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<(), String> {
    encode_framed_with::<Each, T>(v, out)
}

/// [`encode_framed`], with the user's `Serialize` guarded by `G`.
#[inline]
fn encode_framed_with<G: Guard, T: Serialize + ?Sized>(
    v: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    // Small enough to inline (a map encodes every item through here): the failures are
    // described out of line.
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    match G::call(|| crate::wire::codec::encode_append(v, out)) {
        Ok(Ok(())) => {
            let len = out.len() - at - 4;
            if let Ok(n) = u32::try_from(len) {
                out[at..at + 4].copy_from_slice(&n.to_le_bytes());
                return Ok(());
            }
            out.truncate(at);
            Err(encode_failure(Ok(Ok(())), len))
        }
        r => {
            out.truncate(at);
            Err(encode_failure(r, 0))
        }
    }
}

/// Appends `items` to `out`, each framed as [`encode_framed`] does and its offset in `out`
/// pushed to `offsets`, under one panic guard for the whole run. Stops at the first item
/// that fails (its `Serialize` fails or panics, or `check` refuses its bytes), with nothing
/// of it left in `out` or `offsets`, and returns its index and why; the items after it are
/// not looked at.
pub(crate) fn encode_run<T: Serialize>(
    items: &[T],
    out: &mut Vec<u8>,
    offsets: &mut Vec<u32>,
    check: impl Fn(&[u8]) -> Option<String>,
) -> Result<(), (usize, String)> {
    let (mut k, mut at) = (0, out.len());
    let r = catch_quiet(|| {
        while let Some(item) = items.get(k) {
            at = out.len();
            encode_framed_with::<Held, T>(item, out)?;
            if let Some(why) = check(&out[at + 4..]) {
                out.truncate(at);
                return Err(why);
            }
            offsets.push(at as u32);
            k += 1;
        }
        Ok(())
    });
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err((k, why)),
        Err(p) => {
            out.truncate(at);
            Err((k, panic_message(p)))
        }
    }
}

/// What went wrong in [`encode_framed`] (`r` the encoding's outcome, `len` its size).
#[cold]
#[inline(never)]
fn encode_failure(
    r: Result<Result<(), postcard::Error>, (String, Option<String>)>,
    len: usize,
) -> String {
    match r {
        Ok(Ok(())) => format!("a value of {len} bytes is too large"),
        Ok(Err(e)) => crate::wire::fdctx::describe(&e),
        Err(p) => panic_message(p),
    }
}

/// Reads one value framed by [`encode_framed`] from the front of `input`, advancing past it
/// whatever happens to the decoding (unless the frame itself is cut short: then `input` is
/// emptied, since nothing after it can be trusted), with the user's `Deserialize` guarded
/// by `G`.
#[inline]
pub(crate) fn decode_framed_with<G: Guard, T: DeserializeOwned>(
    input: &mut &[u8],
) -> Result<T, String> {
    // Small enough to inline, as `encode_framed`: the failures are described out of line.
    let Some((len, rest)) = input.split_first_chunk::<4>() else {
        *input = &[];
        return Err(decode_failure(DecodeFailure::Missing));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        let have = rest.len();
        *input = &[];
        return Err(decode_failure(DecodeFailure::Short { len, have }));
    }
    let (body, rest) = rest.split_at(len);
    *input = rest;
    match G::call(|| postcard::from_bytes::<T>(body)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(decode_failure(DecodeFailure::Postcard(e))),
        Err(p) => Err(decode_failure(DecodeFailure::Panic(p))),
    }
}

/// How [`decode_framed_with`] failed.
enum DecodeFailure {
    Missing,
    Short { len: usize, have: usize },
    Postcard(postcard::Error),
    Panic((String, Option<String>)),
}

#[cold]
#[inline(never)]
fn decode_failure(f: DecodeFailure) -> String {
    match f {
        DecodeFailure::Missing => "value missing".into(),
        DecodeFailure::Short { len, have } => {
            format!("value of {len} bytes cut short at {have} bytes")
        }
        DecodeFailure::Postcard(e) => crate::executor::explain_postcard(&e),
        DecodeFailure::Panic(p) => panic_message(p),
    }
}

fn encode_err(e: &TaskError, out: &mut Vec<u8>) -> bool {
    crate::wire::codec::encode_append(e, out).expect("TaskError serializes");
    false
}

/// The crate's one [`Runner`](crate::sys::code::Runner): shipped task thunks call
/// [`run_task`].
#[derive(Debug)]
pub(crate) struct Tasks;

impl crate::sys::code::Runner for Tasks {
    type Ctx = TaskCtx;
    fn run<F, A, R>(f: F, input: &mut &[u8], out: &mut Vec<u8>, ctx: &TaskCtx) -> bool
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        run_task(f, input, out, ctx)
    }
}

/// The code offset of the task thunk for `F` (see `sys/code.rs`). Fails to compile if `F`
/// captures anything.
pub(crate) fn ship_task<F, A, R>(f: F) -> i64
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    crate::sys::code::ship_task::<Tasks, F, A, R>(f)
}

/// Rebuilds a task thunk from an offset received from the parent.
pub(crate) fn unship_task(offset: i64) -> crate::sys::code::TaskFn<TaskCtx> {
    crate::sys::code::unship_task::<Tasks>(offset)
}

/// Runs `f` on the next argument in `input`; see [`TaskFn`](crate::sys::code::TaskFn).
///
/// The argument comes framed by [`encode_framed`]; a success is appended framed the same
/// way, a failure as a plain postcard `TaskError` (the library's own type). The argument's
/// `Deserialize`, the call and the result's `Serialize` are each user code: a panic in any
/// of them is this task's error and the worker goes on.
pub(crate) fn run_task<F, A, R>(f: F, input: &mut &[u8], out: &mut Vec<u8>, ctx: &TaskCtx) -> bool
where
    F: Fn(A) -> R,
    A: DeserializeOwned,
    R: Serialize,
{
    // One guard for the item's calls into user code (three guards were a tenth of a small
    // item's cost in a worker); `stage` says which one a panic came from.
    let (at, stage) = (out.len(), std::cell::Cell::new(Stage::Decode));
    // The task's own panic is printed where this thread prints panics (a `Process` child
    // does; a pool worker is quiet): only the (de)serialization is quiet in any case.
    let loud = !QUIET.with(|q| q.get());
    let r = catch_quiet(|| {
        let arg: A = decode_framed_with::<Held, A>(input).map_err(|m| (Stage::Decode, m))?;
        stage.set(Stage::Call);
        if loud {
            QUIET.with(|q| q.set(false));
        }
        let r = f(arg);
        if loud {
            QUIET.with(|q| q.set(true));
        }
        stage.set(Stage::Encode);
        encode_framed_with::<Held, R>(&r, out).map_err(|m| (Stage::Encode, m))?;
        // The result's `Drop` is user code too; once it is encoded, a panic there costs
        // nothing (the worker is quiet: it is not even printed).
        stage.set(Stage::Drop);
        drop(r);
        Ok(())
    });
    let stage = stage.get();
    let (stage, message, location) = match r {
        Ok(Ok(())) => return true,
        Ok(Err((stage, message))) => (stage, message, None),
        Err((_, _)) if stage == Stage::Drop => return true,
        Err(p) if stage == Stage::Call => (stage, p.0, p.1),
        Err(p) => (stage, panic_message(p), None),
    };
    out.truncate(at);
    let err = match stage {
        Stage::Decode => TaskError::Deserialize {
            index: None,
            type_name: std::any::type_name::<A>().into(),
            message,
        },
        Stage::Call => TaskError::Panicked {
            index: None,
            message,
            location,
            pid: ctx.pid,
        },
        Stage::Encode | Stage::Drop => TaskError::Serialize {
            index: None,
            type_name: std::any::type_name::<R>().into(),
            message,
        },
    };
    encode_err(&err, out)
}

/// Where in [`run_task`] the item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Decode,
    Call,
    Encode,
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes as its number, but panics on 13 and fails on 14.
    struct Touchy(u32);

    impl Serialize for Touchy {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                13 => panic!("serialize panics on 13"),
                14 => Err(serde::ser::Error::custom("fails on 14")),
                n => s.serialize_u32(n),
            }
        }
    }

    /// A run stops at the item that panics, fails or is refused, leaving exactly the items
    /// before it; the rest of the run goes on from the next one.
    #[test]
    fn a_run_stops_at_its_first_bad_item_with_only_the_good_ones_before_it() {
        let items = [1, 13, 2, 14, 3, 99, 4].map(Touchy);
        let refuse_99 = |b: &[u8]| (b == postcard::to_stdvec(&99u32).unwrap()).then(|| "no".into());
        let (mut out, mut offsets, mut k) = (Vec::new(), Vec::new(), 0);
        let mut failed = Vec::new();
        while let Err((j, why)) = encode_run(&items[k..], &mut out, &mut offsets, refuse_99) {
            failed.push((k + j, why));
            k += j + 1;
        }
        assert_eq!(failed.len(), 3);
        assert_eq!(failed[0].0, 1);
        assert!(
            failed[0].1.contains("serialize panics on 13"),
            "{}",
            failed[0].1
        );
        assert_eq!(failed[1].0, 3);
        assert!(failed[1].1.contains("Serializ"), "{}", failed[1].1); // postcard keeps no text
        assert_eq!(failed[2], (5, "no".to_string()));
        let mut input = &out[..];
        let mut got = Vec::new();
        for &at in &offsets {
            assert_eq!(out.len() - input.len(), at as usize);
            got.push(decode_framed_with::<Each, u32>(&mut input).unwrap());
        }
        assert!(input.is_empty());
        assert_eq!(got, [1, 2, 3, 4]);
    }
}
