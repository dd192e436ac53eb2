//! The one frame format of both rings, and the checked decoding of what the other side
//! wrote (see `README.md` beside this file).
//!
//! A frame is `[len: u32 LE][kind: u32 LE][len payload bytes][zero to 7 bytes to the next
//! multiple of 8]`. A frame that does not fit before the end of the data area goes at its
//! start instead, behind a wrap marker (a header whose kind is [`WRAP`]) where it would have
//! gone. Both counters of a ring are therefore multiples of 8, and a header never crosses
//! the end.

/// Bytes of a frame header.
pub(crate) const HEADER: usize = 8;

/// The kind of a wrap marker: "the next frame is at the start of the data area". No frame
/// of data has it.
pub(crate) const WRAP: u32 = u32::MAX;

/// The bytes of a frame holding `len` payload bytes, header and padding included.
#[inline]
pub(crate) fn size(len: usize) -> usize {
    HEADER + len.div_ceil(8) * 8
}

/// A frame header.
#[inline]
pub(crate) fn header(len: u32, kind: u32) -> [u8; HEADER] {
    let mut h = [0; HEADER];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&kind.to_le_bytes());
    h
}

/// A frame header's `(len, kind)`.
#[inline]
pub(crate) fn parse(h: [u8; HEADER]) -> (usize, u32) {
    let word = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    (word(&h[..4]) as usize, word(&h[4..]))
}

/// A wrap marker.
pub(crate) const WRAP_MARKER: [u8; HEADER] = {
    let k = WRAP.to_le_bytes();
    [0, 0, 0, 0, k[0], k[1], k[2], k[3]]
};

/// A ring whose producer broke the protocol (what was wrong, for the error message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub String);

/// The next frame, found by [`next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Offset of the frame's header in the data area.
    pub(crate) at: usize,
    /// Its kind (never [`WRAP`]).
    pub(crate) kind: u32,
    /// Its payload bytes (at `at + HEADER`).
    pub(crate) len: usize,
    /// Bytes the consumer moves past to free it: a wrap marker's skip, then [`size`]`(len)`.
    pub(crate) consumed: usize,
}

/// Finds the frame at the consumer's position, trusting nothing the producer wrote.
///
/// `at` is the consumer's offset in the data area, `to_end` the bytes from there to the end
/// of the data area, `avail` the bytes the producer has published from there on (through a
/// wrap, if any), `max_len` the largest payload the ring admits, and `read_header(off)` the
/// 8 bytes at data offset `off`. The caller checks its own counters (aligned, in bounds,
/// `avail` within the capacity); from those, every frame this returns lies inside the
/// published bytes and inside the data area, whatever those bytes hold. `Ok(None)`: nothing
/// is published.
pub(crate) fn next(
    at: usize,
    to_end: usize,
    avail: usize,
    max_len: usize,
    mut read_header: impl FnMut(usize) -> [u8; HEADER],
) -> Result<Option<Frame>, Corrupt> {
    if avail == 0 {
        return Ok(None);
    }
    if !at.is_multiple_of(8) || !to_end.is_multiple_of(8) || to_end < HEADER {
        return Err(Corrupt(format!(
            "consumer position {at} ({to_end} bytes before the end) is not a frame boundary"
        )));
    }
    let (mut at, mut avail, mut skipped) = (at, avail, 0);
    let mut h = read_header(at);
    let kind = |h: [u8; HEADER]| parse(h).1;
    if kind(h) == WRAP {
        // A marker is written only where the next frame did not fit (or, in the queue, went
        // back early), and that frame is published with it: more data follows the end.
        if to_end >= avail {
            return Err(Corrupt(
                "a wrap marker with nothing published after it".into(),
            ));
        }
        // From the start, `avail` (now less than the data area) bounds the frame alone.
        (skipped, avail, at) = (to_end, avail - to_end, 0);
        h = read_header(0);
        if kind(h) == WRAP {
            return Err(Corrupt("two wrap markers in a row".into()));
        }
    }
    let (len, kind) = parse(h);
    if len > max_len {
        return Err(Corrupt(format!(
            "frame length {len} exceeds the ring's limit of {max_len}"
        )));
    }
    let total = size(len);
    if total > avail || (skipped == 0 && total > to_end) {
        return Err(Corrupt(format!(
            "a frame of {total} bytes overruns the published data ({avail} bytes, \
             {to_end} before the end)"
        )));
    }
    Ok(Some(Frame {
        at,
        kind,
        len,
        consumed: skipped + total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data area of 64 bytes holding `frames` at their offsets.
    fn area(frames: &[(usize, [u8; HEADER])]) -> impl Fn(usize) -> [u8; HEADER] + use<> {
        let mut bytes = [0u8; 64];
        for (at, h) in frames {
            bytes[*at..at + HEADER].copy_from_slice(h);
        }
        move |off| bytes[off..off + HEADER].try_into().unwrap()
    }

    #[test]
    fn a_frame_and_a_wrapped_frame_are_found() {
        let read = area(&[(16, header(5, 3))]);
        let f = next(16, 48, 16, 64, read).unwrap().unwrap();
        assert_eq!((f.at, f.kind, f.len, f.consumed), (16, 3, 5, 16));
        let read = area(&[(56, WRAP_MARKER), (0, header(12, 4))]);
        let f = next(56, 8, 8 + 24, 64, read).unwrap().unwrap();
        assert_eq!((f.at, f.kind, f.len, f.consumed), (0, 4, 12, 8 + 24));
        assert_eq!(next(0, 64, 0, 64, area(&[])), Ok(None));
    }

    #[test]
    fn every_broken_rule_is_named() {
        let bad = |r: Result<Option<Frame>, Corrupt>, what: &str| match r {
            Err(Corrupt(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{other:?}"),
        };
        bad(next(4, 60, 8, 64, area(&[])), "frame boundary");
        // The header claims more than is published, or more than fits before the end.
        bad(next(0, 64, 16, 64, area(&[(0, header(9, 1))])), "overruns");
        bad(
            next(48, 16, 32, 64, area(&[(48, header(9, 1))])),
            "overruns",
        );
        bad(next(0, 64, 64, 32, area(&[(0, header(33, 1))])), "limit");
        // A marker with nothing after it, or followed by another.
        bad(
            next(56, 8, 8, 64, area(&[(56, WRAP_MARKER)])),
            "nothing published",
        );
        let twice = area(&[(56, WRAP_MARKER), (0, WRAP_MARKER)]);
        bad(next(56, 8, 24, 64, twice), "two wrap markers");
    }
}
