//! The messages ranks exchange over MPI: a postcard header, then (for jobs and results) the
//! payload bytes as they are, so a chunk's arguments and results are never re-encoded.
//!
//! Everything here is read from another process: decoding checks every length and returns
//! `None` on anything malformed, never panics.

use serde::{Deserialize, Serialize};

use crate::error::TaskError;

/// Start-up: each rank to rank 0 (who it is), then rank 0's answer, then each rank's
/// local pool status.
pub(crate) const TAG_START: i32 = 0x6d70;
/// Rank 0 to a serving rank: [`Down`].
pub(crate) const TAG_DOWN: i32 = 0x6d71;
/// A serving rank to rank 0: [`Up`].
pub(crate) const TAG_UP: i32 = 0x6d72;

/// What each rank tells rank 0 first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub build_id: String,
    pub host: String,
    pub exe: String,
}

/// Rank 0's answer to every [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Start {
    /// Same build everywhere: start the local pool.
    Go,
    /// Something is wrong (named in the string): serve nothing, return from `world()`.
    Abort(String),
}

/// A rank's local pool came up with this many workers, or failed to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Ready {
    pub workers: Result<u32, String>,
}

/// Rank 0 to a serving rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Down {
    /// Run items `offsets` of the payload with the thunk at code offset `thunk`.
    Job {
        id: u64,
        thunk: i64,
        offsets: Vec<u32>,
    },
    /// The results of job `id` are no longer wanted: skip what has not started.
    Cancel(u64),
    /// Finish (or, with `cancel_pending`, cancel) what is queued, then answer [`Up::Bye`].
    Shutdown { cancel_pending: bool },
}

/// A serving rank to rank 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Up {
    /// Encoded outcomes (`[tag][postcard]` each, as a local pool writes them) of items
    /// `first..first + count` of job `id`; the payload holds them.
    Results { id: u64, first: u32, count: u32 },
    /// Item `item` of job `id` failed outside the task (its worker died, timed out...).
    Fail {
        id: u64,
        item: u32,
        error: TaskError,
    },
    /// Every job is answered and the local pool has stopped.
    Bye,
}

/// The largest frame: MPI counts message elements in a C `int`.
pub(crate) const MAX_FRAME: usize = i32::MAX as usize;

/// The error for items whose frame would exceed [`MAX_FRAME`].
pub(crate) fn too_large(what: &str, len: usize) -> crate::error::TaskError {
    crate::error::TaskError::Serialize {
        index: None,
        type_name: what.into(),
        message: format!("{len} bytes is more than one MPI message can carry (2 GiB)"),
    }
}

/// One frame: `header` then `payload`.
pub(crate) fn frame<T: Serialize>(header: &T, payload: &[u8]) -> Vec<u8> {
    let mut out = postcard::to_stdvec(header).expect("wire headers always serialize");
    out.extend_from_slice(payload);
    out
}

/// Splits a frame into its header and payload; `None` if malformed.
pub(crate) fn unframe<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<(T, &'a [u8])> {
    postcard::take_from_bytes(bytes).ok()
}

/// Whether `offsets` can index `data_len` bytes: from 0, ascending, in bounds. (Equal
/// offsets are fine: postcard encodes `()` in zero bytes.)
pub(crate) fn offsets_valid(offsets: &[u32], data_len: usize) -> bool {
    offsets.first() == Some(&0)
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets.last().is_some_and(|&o| (o as usize) <= data_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let f = frame(
            &Down::Job {
                id: 7,
                thunk: -42,
                offsets: vec![0, 3],
            },
            b"abcdef",
        );
        let (h, rest): (Down, _) = unframe(&f).unwrap();
        assert_eq!(
            h,
            Down::Job {
                id: 7,
                thunk: -42,
                offsets: vec![0, 3]
            }
        );
        assert_eq!(rest, b"abcdef");
        assert!(unframe::<Down>(&[0xff, 0xff, 0xff]).is_none());
        assert!(unframe::<Up>(&[]).is_none());
    }

    #[test]
    fn offsets_are_checked() {
        assert!(offsets_valid(&[0, 1, 5], 6));
        assert!(offsets_valid(&[0, 0, 0], 0));
        assert!(!offsets_valid(&[], 6));
        assert!(!offsets_valid(&[1], 6));
        assert!(!offsets_valid(&[0, 3, 2], 6));
        assert!(!offsets_valid(&[0, 7], 6));
    }
}
