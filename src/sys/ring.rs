//! Borrowing byte ranges of a shared mapping, for the queue ring (`ipc/ring.rs`).
//!
//! The queue serializes straight into its ring and deserializes straight out of it, so a
//! 1 MiB message is copied once on each side instead of twice. That needs a slice of the
//! mapping for the duration of one (de)serialization. The slice is only ever handed to a
//! closure, so it cannot outlive the call.
//!
//! Exclusivity is the caller's protocol, as for every access to memory shared between
//! processes: the queue's producer lock gives its holder the free region of the ring, and the
//! consumer lock gives its holder the published item at the head (see `ipc/README.md`).

use super::SharedMapping;

/// Runs `f` on the bytes `off..off + len` of `m`, writable.
///
/// Callers must hold the ring lock that makes this range theirs alone (no other thread of
/// this process touches it while `f` runs). Panics if the range is out of bounds.
pub(crate) fn with_bytes_mut<R>(
    m: &SharedMapping,
    off: usize,
    len: usize,
    f: impl FnOnce(&mut [u8]) -> R,
) -> R {
    assert!(
        off.checked_add(len).is_some_and(|end| end <= m.len()),
        "ring access out of bounds"
    );
    // SAFETY: in bounds (checked); the mapping outlives the call; the slice does not escape
    // `f`; the ring protocol gives the caller exclusive use of this range (see above), and
    // any byte pattern is a valid `u8`.
    let s = unsafe { std::slice::from_raw_parts_mut(m.as_ptr().add(off), len) };
    f(s)
}

/// Runs `f` on the bytes `off..off + len` of `m`, read-only.
///
/// Callers must hold the ring lock under which nobody writes this range. Panics if the
/// range is out of bounds.
pub(crate) fn with_bytes<R>(
    m: &SharedMapping,
    off: usize,
    len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    assert!(
        off.checked_add(len).is_some_and(|end| end <= m.len()),
        "ring access out of bounds"
    );
    // SAFETY: as for `with_bytes_mut`: in bounds, does not escape, and the protocol keeps
    // writers away from this range while `f` runs.
    let s = unsafe { std::slice::from_raw_parts(m.as_ptr().add(off), len) };
    f(s)
}
