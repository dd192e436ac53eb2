//! Carrying file descriptors through serde.
//!
//! postcard writes bytes; a file descriptor is not bytes. When a value that owns an fd (a
//! [`Connection`](crate::Connection), a [`Queue`](crate::Queue)) is serialized to be sent to
//! a new process, its `Serialize` impl hands a duplicate of its fd to the thread-local *fd
//! context* and writes only the fd's index; the caller sends the collected fds next to the
//! bytes (`ChildSpec::fds`, `SCM_RIGHTS`). On the other side the receiver installs the fds
//! it got and the `Deserialize` impl takes its fd back by index.
//!
//! ```text
//! parent:  let (bytes, fds) = collect_fds(|| postcard::to_stdvec(&arg))?;   // dups fds
//! child:   let arg = with_fds(fds, || postcard::from_bytes::<A>(&bytes));    // takes them
//! ```
//!
//! Outside a context (a `Connection` put into a `Queue`, say) serialization fails with a
//! clear message instead of sending a meaningless number. Contexts nest; each call sees
//! only its own.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};

/// The most fds a child's start request carries (one more may be taken by a large payload).
pub(crate) const MAX_CHILD_FDS: usize = crate::sys::fdpass::MAX_FDS - 1;

enum Ctx {
    Collect(Vec<OwnedFd>),
    Provide(Vec<Option<OwnedFd>>),
}

thread_local! {
    static CTX: RefCell<Vec<Ctx>> = const { RefCell::new(Vec::new()) };
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn fail<T>(message: String) -> Result<T, String> {
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(message.clone()));
    Err(message)
}

/// The message of the last fd-context failure on this thread, if any (postcard replaces
/// custom serde messages with a generic one; callers use this to report the real cause).
pub(crate) fn take_last_error() -> Option<String> {
    LAST_ERROR.with(|e| e.borrow_mut().take())
}

/// The best message for a postcard error: the fd context's own, if it caused it.
pub(crate) fn describe(e: &postcard::Error) -> String {
    take_last_error().unwrap_or_else(|| e.to_string())
}

struct Pop;
impl Drop for Pop {
    fn drop(&mut self) {
        CTX.with(|c| c.borrow_mut().pop());
    }
}

/// Runs `f` (which serializes something) and returns its result with the fds that the
/// values serialized inside it handed over, in index order.
pub(crate) fn collect_fds<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    CTX.with(|c| c.borrow_mut().push(Ctx::Collect(Vec::new())));
    let pop = Pop;
    let r = f();
    let fds = CTX.with(|c| match c.borrow_mut().last_mut() {
        Some(Ctx::Collect(v)) => std::mem::take(v),
        _ => Vec::new(),
    });
    drop(pop);
    (r, fds)
}

/// Runs `f` (which deserializes something) with `fds` available to [`take_fd`]. Fds that
/// `f` does not take are closed.
pub(crate) fn with_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    CTX.with(|c| {
        c.borrow_mut()
            .push(Ctx::Provide(fds.into_iter().map(Some).collect()))
    });
    let _pop = Pop;
    f()
}

/// Called by a `Serialize` impl: hands a duplicate of `fd` to the current context and
/// returns the index to write. Fails outside [`collect_fds`].
pub(crate) fn push_fd(fd: impl AsFd, what: &str) -> Result<u32, String> {
    let dup = fd
        .as_fd()
        .try_clone_to_owned()
        .or_else(|e| fail(format!("cannot duplicate the fd of a {what}: {e}")))?;
    CTX.with(|c| match c.borrow_mut().last_mut() {
        Some(Ctx::Collect(v)) => {
            v.push(dup);
            Ok((v.len() - 1) as u32)
        }
        _ => fail(format!(
            "a {what} can only be sent to another process as (part of) the argument of a \
             Process or of a process pool's initializer, not through a queue, a connection \
             or a pool task's argument"
        )),
    })
}

/// Called by a `Deserialize` impl: takes the fd at `index` from the current context.
pub(crate) fn take_fd(index: u32, what: &str) -> Result<OwnedFd, String> {
    CTX.with(|c| match c.borrow_mut().last_mut() {
        Some(Ctx::Provide(v)) => v
            .get_mut(index as usize)
            .and_then(Option::take)
            .map_or_else(
                || fail(format!("the fd #{index} of a {what} was not received")),
                Ok,
            ),
        _ => fail(format!(
            "a {what} can only be received as (part of) the argument of a Process or of a \
             process pool's initializer"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let (r, fds) = collect_fds(|| {
            let a = push_fd(std::io::stdout(), "test").unwrap();
            let b = push_fd(std::io::stderr(), "test").unwrap();
            (a, b)
        });
        assert_eq!(r, (0, 1));
        assert_eq!(fds.len(), 2);
        assert!(push_fd(std::io::stdout(), "test").is_err());
        with_fds(fds, || {
            assert!(take_fd(1, "test").is_ok());
            assert!(take_fd(1, "test").is_err());
            assert!(take_fd(7, "test").is_err());
        });
        assert!(take_fd(0, "test").is_err());
    }
}
