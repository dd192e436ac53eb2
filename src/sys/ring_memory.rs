//! The memory of a queue ring (`ring/mpmc.rs`): a header reached only through atomics, and a
//! data area lent out as byte slices, so that safe code in this process cannot alias.
//!
//! The queue serializes straight into its ring and deserializes straight out of it, so a
//! 1 MiB message is copied once on each side instead of twice. That needs a `&mut [u8]`
//! (or `&[u8]`) over part of the mapping for the duration of one (de)serialization.
//!
//! Which bytes are whose is the ring's protocol (the producer lock gives its holder the free
//! region, the consumer lock gives its holder the item at the head; see `ipc/README.md`),
//! and a protocol is not something the compiler can check. So this module does not trust
//! it for soundness: it keeps, in this process's memory, the range lent to each *side*
//! (producer, consumer) while its closure runs, and refuses (panics) to lend a range that
//! overlaps a live range of the other side, or a second range to a side that has one. The
//! data area is reachable in no other way (no atomics, no raw pointers), so no two live
//! references of this process overlap unless both are shared. A correct protocol never
//! meets the check; a bug in it fails loudly instead of aliasing.
//!
//! Other processes (and a second mapping of the same memfd in this process, at another
//! address) are outside Rust's model: they may write these bytes at any time, as with any
//! shared memory; every byte pattern is a valid `u8`, and decoding checks everything.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

use crossbeam_utils::CachePadded;

use super::SharedMapping;

/// The largest data area: lent ranges are packed into 31-bit offsets.
pub(crate) const MAX_DATA: usize = 1 << 31;

const LIVE: u64 = 1 << 63;
const MUTABLE: u64 = 1 << 62;

/// Who borrows: each side of the ring holds at most one range at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The producer-lock holder (writes the free region).
    Producer = 0,
    /// The consumer-lock holder (reads the item at the head).
    Consumer = 1,
}

/// A ring's shared mapping: `header` bytes of atomics, then the data area.
#[derive(Debug)]
pub(crate) struct RingMemory {
    map: SharedMapping,
    header: usize,
    /// The range each side has borrowed now: `LIVE | MUTABLE? | first << 31 | last`.
    lent: [CachePadded<AtomicU64>; 2],
}

#[inline]
fn pack(first: usize, last: usize, mutable: bool) -> u64 {
    LIVE | if mutable { MUTABLE } else { 0 } | (first as u64) << 31 | last as u64
}

/// Whether two lent ranges may not coexist: both live, overlapping, one mutable.
#[inline]
fn conflict(a: u64, b: u64) -> bool {
    let range = |w: u64| ((w >> 31) & (MAX_DATA as u64 - 1), w & (MAX_DATA as u64 - 1));
    let ((a0, a1), (b0, b1)) = (range(a), range(b));
    a & b & LIVE != 0 && (a | b) & MUTABLE != 0 && a0 <= b1 && b0 <= a1
}

/// Gives the range back when the closure returns or unwinds.
struct Lent<'a>(&'a AtomicU64);

impl Drop for Lent<'_> {
    #[inline]
    fn drop(&mut self) {
        // `Release`: a lender that may touch these bytes next synchronizes with this side
        // first (the ring's `P`/`C` stores come after this one), so it sees the range
        // returned; only the taking of a range needs the SeqCst pair in `lend`.
        self.0.store(0, Release);
    }
}

impl RingMemory {
    /// Takes over `map`: bytes `0..header` are the header, the rest the data area.
    pub(crate) fn new(map: SharedMapping, header: usize) -> RingMemory {
        assert!(
            header <= map.len() && map.len() - header <= MAX_DATA,
            "ring mapping of {} bytes with a {header}-byte header",
            map.len()
        );
        RingMemory {
            map,
            header,
            lent: Default::default(),
        }
    }

    /// The `AtomicU32` at header offset `off` (4-aligned, inside the header).
    #[inline]
    pub(crate) fn header_u32(&self, off: usize) -> &AtomicU32 {
        assert!(off + 4 <= self.header, "ring header access out of bounds");
        self.map.atomic_u32(off)
    }

    /// The `AtomicU64` at header offset `off` (8-aligned, inside the header).
    #[inline]
    pub(crate) fn header_u64(&self, off: usize) -> &AtomicU64 {
        assert!(off + 8 <= self.header, "ring header access out of bounds");
        self.map.atomic_u64(off)
    }

    /// Bytes in the data area.
    #[inline]
    pub(crate) fn data_len(&self) -> usize {
        self.map.len() - self.header
    }

    /// Records that `side` borrows data bytes `off..off + len`; panics if that is out of
    /// bounds, if `side` already borrows, or if it conflicts with the other side's range.
    #[inline]
    fn lend(&self, side: Side, off: usize, len: usize, mutable: bool) -> Lent<'_> {
        assert!(
            off.checked_add(len)
                .is_some_and(|end| end <= self.data_len()),
            "ring access out of bounds"
        );
        let me = pack(off, off + len - 1, mutable);
        let mine = &self.lent[side as usize];
        let other = &self.lent[1 - side as usize];
        // SeqCst on both sides (store, then load the other's): of two concurrent lenders,
        // at least one sees the other's range.
        assert!(
            mine.compare_exchange(0, me, SeqCst, Relaxed).is_ok(),
            "two borrows of one side of a queue ring at once (a bug in its locking)"
        );
        let guard = Lent(mine);
        assert!(
            !conflict(me, other.load(SeqCst)),
            "the producer and consumer of a queue ring asked for overlapping bytes \
             (a bug in the ring protocol)"
        );
        guard
    }

    /// Runs `f` on data bytes `off..off + len`, writable, lent to `side` meanwhile.
    ///
    /// Panics if the range is out of bounds, `side` has a range already, or the other side
    /// holds an overlapping one.
    pub(crate) fn with_bytes_mut<R>(
        &self,
        side: Side,
        off: usize,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        if len == 0 {
            return f(&mut []);
        }
        let _lent = self.lend(side, off, len, true);
        // SAFETY: in bounds (checked by `lend`); the mapping outlives the call and the slice
        // does not escape `f`. No other reference of this process overlaps it while `f`
        // runs: the data area is reachable only through this type, and `lend` recorded the
        // range and checked that no other live one overlaps (the records are SeqCst, so two
        // concurrent borrowers cannot both miss each other). Any byte pattern is a `u8`.
        let s = unsafe {
            std::slice::from_raw_parts_mut(self.map.as_ptr().add(self.header + off), len)
        };
        f(s)
    }

    /// Runs `f` on data bytes `off..off + len`, read-only, lent to `side` meanwhile.
    ///
    /// Panics as [`with_bytes_mut`](Self::with_bytes_mut) does (a shared range may overlap
    /// another shared one).
    pub(crate) fn with_bytes<R>(
        &self,
        side: Side,
        off: usize,
        len: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        if len == 0 {
            return f(&[]);
        }
        let _lent = self.lend(side, off, len, false);
        // SAFETY: as for `with_bytes_mut`: in bounds, does not escape `f`, and no mutable
        // reference of this process overlaps it while `f` runs.
        let s =
            unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(self.header + off), len) };
        f(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> RingMemory {
        let fd = crate::sys::mem::memfd("ring-test", 8192).unwrap();
        RingMemory::new(SharedMapping::map(&fd, 8192).unwrap(), 4096)
    }

    #[test]
    fn disjoint_ranges_are_lent_together_and_written() {
        let r = ring();
        r.with_bytes_mut(Side::Producer, 0, 8, |p| {
            p.copy_from_slice(b"producer");
            r.with_bytes(Side::Consumer, 8, 8, |c| assert_eq!(c, [0; 8]));
        });
        r.with_bytes(Side::Consumer, 0, 8, |c| assert_eq!(c, b"producer"));
        assert_eq!(r.data_len(), 4096);
    }

    #[test]
    #[should_panic(expected = "overlapping")]
    fn overlapping_ranges_of_the_two_sides_are_refused() {
        let r = ring();
        r.with_bytes_mut(Side::Producer, 0, 16, |_| {
            r.with_bytes(Side::Consumer, 15, 4, |_| ());
        });
    }

    #[test]
    #[should_panic(expected = "two borrows")]
    fn one_side_borrows_one_range_at_a_time() {
        let r = ring();
        r.with_bytes(Side::Consumer, 0, 4, |_| {
            r.with_bytes(Side::Consumer, 100, 4, |_| ());
        });
    }

    #[test]
    fn a_range_is_given_back_on_unwind() {
        let r = ring();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.with_bytes_mut(Side::Producer, 0, 4, |_| panic!("in f"))
        }));
        assert!(caught.is_err());
        r.with_bytes_mut(Side::Consumer, 0, 4, |b| b.fill(1));
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn the_header_is_not_data() {
        let r = ring();
        r.header_u32(4096);
    }
}
