//! Shipping functions to workers of the same binary.
//!
//! A worker runs the very same executable as its parent (the build-id handshake checks
//! this), so code addresses differ only by the load offset (ASLR). We send the distance of a
//! function from [`anchor`] and the worker adds its own anchor's address back.
//!
//! What is shipped is never the user's function itself but a monomorphized *thunk* for its
//! type `F`. `F` must be zero-sized (a `fn` item or a non-capturing closure), so the thunk can
//! recreate the value out of nothing, in the worker, without any data crossing over.
//!
//! What a task *is* (its framing, its errors, its context) is `bootstrap`'s business: the
//! thunk hands the recreated function to a [`Runner`] that `bootstrap` implements, so this
//! module uses nothing above `sys`.

use std::os::fd::OwnedFd;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Runs one shipped task: reads one argument from the front of `input` (advancing it),
/// appends the encoded outcome to `out`, and returns whether it succeeded. `C` is what the
/// worker passes to every task.
pub(crate) type TaskFn<C> = fn(&mut &[u8], &mut Vec<u8>, &C) -> bool;

/// What a task thunk calls with the function it recreated (implemented above `sys`).
pub(crate) trait Runner: 'static {
    /// What the worker passes to every task.
    type Ctx: 'static;
    /// Runs `f` on the next argument in `input`, appending its outcome to `out`.
    fn run<F, A, R>(f: F, input: &mut &[u8], out: &mut Vec<u8>, ctx: &Self::Ctx) -> bool
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static;
}

/// The entry point of a child process: its payload and the fds passed to it; returns the
/// process exit code.
pub(crate) type ChildEntry = fn(&[u8], Vec<OwnedFd>) -> i32;

#[inline(never)]
fn anchor() {
    // A distinct body so the linker cannot fold it with another empty function.
    std::hint::black_box(0x6d70);
}

fn offset_of(addr: usize) -> i64 {
    addr as i64 - anchor as fn() as usize as i64
}

/// Fails the build (at `cargo build`, not `cargo check`: no stable trait bound can say
/// "zero-sized") unless the function type `$f` can be shipped. Used in the methods a user
/// calls, so the compiler's "encountered while instantiating" note names the user's line.
macro_rules! assert_shippable {
    ($f:ty) => {
        const {
            assert!(
                std::mem::size_of::<$f>() == 0,
                "a process can only run a `fn` item (`pool.submit(double, x)`) or a closure that \
                 captures nothing. The type named in the `while instantiating` note below is the \
                 culprit: `{{closure@file:line}}` is a closure that captures data (pass that data \
                 as the argument instead, a tuple for several); `fn(..) -> ..` is a fn pointer \
                 (pass the function by its name, or use a ThreadPool)"
            )
        }
    };
}
pub(crate) use assert_shippable;

/// The code offset of the task thunk for `F`, run by `Run`. Fails to compile if `F`
/// captures anything.
pub(crate) fn ship_task<Run, F, A, R>(_f: F) -> i64
where
    Run: Runner,
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    assert_shippable!(F);
    offset_of(thunk::<Run, F, A, R> as TaskFn<Run::Ctx> as usize)
}

fn thunk<Run, F, A, R>(input: &mut &[u8], out: &mut Vec<u8>, ctx: &Run::Ctx) -> bool
where
    Run: Runner,
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    // SAFETY: `F` is zero-sized (asserted at compile time in `ship_task`, the only place
    // that names this thunk), and a value of `F` existed in the parent, so the type is
    // inhabited. Reading a zero-sized value touches no memory, so a dangling but aligned
    // pointer is a valid source.
    let f: F = unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() };
    Run::run(f, input, out, ctx)
}

/// The code offset of a child entry point.
pub(crate) fn ship_entry(f: ChildEntry) -> i64 {
    offset_of(f as usize)
}

fn at_offset(offset: i64) -> usize {
    (anchor as fn() as usize as i64 + offset) as usize
}

/// Rebuilds a task thunk from an offset received from the parent.
pub(crate) fn unship_task<Run: Runner>(offset: i64) -> TaskFn<Run::Ctx> {
    let addr = at_offset(offset);
    // SAFETY: the offset came from `ship_task::<Run, ..>` in a parent running the same build
    // (checked by the build-id handshake before any task is accepted), so `addr` is the
    // address of a function with exactly the `TaskFn<Run::Ctx>` signature in this process
    // too. (`bootstrap` is the crate's one `Runner`, so the parent shipped with it as well.)
    unsafe { std::mem::transmute::<usize, TaskFn<Run::Ctx>>(addr) }
}

/// Rebuilds a child entry point from an offset received from the parent.
pub(crate) fn unship_entry(offset: i64) -> ChildEntry {
    let addr = at_offset(offset);
    // SAFETY: as for `unship_task`: the offset came from `ship_entry` in the same build.
    unsafe { std::mem::transmute::<usize, ChildEntry>(addr) }
}
