//! Where a process pool delivers the encoded results of a job: a future or a map.

use serde::de::DeserializeOwned;

use crate::bootstrap::task::{Each, Guard, Held};
use crate::error::TaskError;
use crate::executor::{Batch, Decoders, MapState};
use crate::future::FutureState;

/// Receives results of consecutive items. Object-safe, so the dispatcher needs no types.
pub(crate) trait ByteSink: Send + Sync {
    /// `count` encoded outcomes (a tag byte, then postcard of `R` or of `TaskError`) for
    /// items `start..start + count`.
    fn deliver(&self, start: usize, count: usize, bytes: &[u8]);
    /// One failure for item `start`.
    fn fail(&self, start: usize, err: TaskError);
    /// Whether the results are no longer wanted.
    fn is_cancelled(&self) -> bool;
    /// The job was sent to a worker.
    fn started(&self) {}
    /// Whether items have indexes a user knows (a map's), for `insights`.
    fn indexed(&self) -> bool {
        false
    }
    /// Whether results may wait for the end of the dispatcher's collection and come in
    /// one [`deliver_parts`](Self::deliver_parts) (a map's: nobody waits for one item).
    fn gathers(&self) -> bool {
        false
    }
    /// The outcomes of several frames: part `(start, count, range)` holds items
    /// `start..start + count` in `bytes[range]`.
    fn deliver_parts(&self, parts: &mut [Part], bytes: &[u8]) {
        for (start, count, range) in parts.iter() {
            self.deliver(*start, *count, &bytes[range.clone()]);
        }
    }
}

/// One frame's outcomes in a [`ByteSink::deliver_parts`]: first item, items, bytes.
pub(crate) type Part = (usize, usize, std::ops::Range<usize>);

/// The outcomes of `count` items from `start`, decoded.
#[cfg_attr(not(any(feature = "mpi", feature = "fuzzing")), allow(dead_code))]
pub(crate) fn decode<R: DeserializeOwned>(
    start: usize,
    count: usize,
    mut bytes: &[u8],
    indexed: bool,
) -> Vec<Result<R, TaskError>> {
    (start..start + count)
        .map(|idx| decode_one(idx, indexed, &mut bytes))
        .collect()
}

/// How a map's batches decode (its items have indexes).
fn map_decoders<R: DeserializeOwned>() -> Decoders<R> {
    Decoders {
        one: |idx, bytes| decode_one(idx, true, bytes),
        // One panic guard for the batch: `map` stops at the first error anyway.
        into: |start, count, mut bytes, out| {
            out.reserve(count);
            let mut idx = start;
            let r = crate::bootstrap::task::catch_quiet(|| {
                while idx < start + count {
                    out.push(decode_one_with::<Held, R>(idx, true, &mut bytes)?);
                    idx += 1;
                }
                Ok(())
            });
            r.unwrap_or_else(|p| {
                Err(TaskError::Deserialize {
                    index: Some(idx),
                    type_name: std::any::type_name::<R>().into(),
                    message: crate::bootstrap::task::panic_message(p),
                })
            })
        },
    }
}

/// Decodes the outcome of item `idx` from the front of `bytes`, advancing past it. A
/// missing or malformed outcome is this item's `Deserialize` error; after one whose
/// length cannot be trusted the rest of the bytes are dropped, so the following items say
/// "result missing" rather than decode garbage.
fn decode_one<R: DeserializeOwned>(
    idx: usize,
    indexed: bool,
    bytes: &mut &[u8],
) -> Result<R, TaskError> {
    decode_one_with::<Each, R>(idx, indexed, bytes)
}

/// [`decode_one`], with the result's `Deserialize` guarded by `G`.
#[inline]
fn decode_one_with<G: Guard, R: DeserializeOwned>(
    idx: usize,
    indexed: bool,
    bytes: &mut &[u8],
) -> Result<R, TaskError> {
    let bad = |what: &str, e: String| TaskError::Deserialize {
        index: indexed.then_some(idx),
        type_name: what.to_string(),
        message: e,
    };
    let Some((&tag, rest)) = bytes.split_first() else {
        return Err(bad(std::any::type_name::<R>(), "result missing".into()));
    };
    if tag == 1 {
        // Framed with its length: a `Deserialize` that fails or panics costs this item
        // only, and the next one starts where it should.
        *bytes = rest;
        crate::bootstrap::task::decode_framed_with::<G, R>(bytes)
            .map_err(|e| bad(std::any::type_name::<R>(), e))
    } else {
        match postcard::take_from_bytes::<TaskError>(rest) {
            Ok((e, rest)) => {
                *bytes = rest;
                Err(if indexed { e.with_index(idx) } else { e })
            }
            Err(e) => {
                *bytes = &[];
                Err(bad("TaskError", e.to_string()))
            }
        }
    }
}

impl<R: DeserializeOwned + Send> ByteSink for FutureState<R> {
    fn deliver(&self, start: usize, count: usize, mut bytes: &[u8]) {
        // A future's job is one item: decoded straight into it (no `Vec` of one).
        if count > 0 {
            self.complete(decode_one::<R>(start, false, &mut bytes));
        }
    }

    fn fail(&self, _start: usize, err: TaskError) {
        self.complete(Err(err));
    }

    fn is_cancelled(&self) -> bool {
        self.is_done()
    }

    fn started(&self) {
        self.set_running();
    }
}

impl<R: DeserializeOwned + Send> ByteSink for MapState<R> {
    fn deliver(&self, start: usize, count: usize, bytes: &[u8]) {
        // Decoded by the caller as it takes them (see `Batch`), not on the dispatcher.
        let batch = Batch::encoded(start, count, bytes.to_vec(), map_decoders::<R>());
        MapState::deliver_batch(self, start, batch);
    }

    fn fail(&self, start: usize, err: TaskError) {
        MapState::deliver(self, start, vec![Err(err.with_index(start))]);
    }

    fn is_cancelled(&self) -> bool {
        MapState::is_cancelled(self)
    }

    fn indexed(&self) -> bool {
        true
    }

    fn gathers(&self) -> bool {
        true
    }

    /// Runs of parts whose items follow each other become one batch each (the rounds of a
    /// map of small tasks bring the frames of both workers, items interleaved), handed over
    /// under one lock.
    fn deliver_parts(&self, parts: &mut [Part], bytes: &[u8]) {
        parts.sort_unstable_by_key(|p| p.0);
        let mut batches = Vec::new();
        let mut rest = &*parts;
        while let Some((first, _, _)) = rest.first() {
            let run = 1 + rest
                .windows(2)
                .take_while(|w| w[1].0 == w[0].0 + w[0].1)
                .count();
            let (run, after) = rest.split_at(run);
            rest = after;
            let mut buf = Vec::with_capacity(run.iter().map(|p| p.2.len()).sum());
            let mut starts = std::collections::VecDeque::new();
            for (k, (start, _, range)) in run.iter().enumerate() {
                if k > 0 {
                    starts.push_back((*start, buf.len()));
                }
                buf.extend_from_slice(&bytes[range.clone()]);
            }
            let count = run.iter().map(|p| p.1).sum();
            let batch = Batch::encoded_parts(*first, count, buf, starts, map_decoders::<R>());
            batches.push((*first, batch));
        }
        self.deliver_batches(batches);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::task::encode_framed;
    use std::collections::VecDeque;

    /// Outcomes as a worker writes them: a value, a task error, a value.
    fn three() -> Vec<u8> {
        let mut b = vec![1];
        encode_framed(&10u64, &mut b).unwrap();
        b.push(0);
        let panicked = TaskError::Panicked {
            index: None,
            message: "boom".into(),
            location: None,
            pid: 9,
        };
        crate::wire::codec::encode_append(&panicked, &mut b).unwrap();
        b.push(1);
        encode_framed(&12u64, &mut b).unwrap();
        b
    }

    #[test]
    fn a_batch_decodes_item_by_item_with_each_error_at_its_index() {
        let batch = Batch::encoded(5, 3, three(), map_decoders::<u64>());
        assert_eq!(batch.len(), 3);
        let got: Vec<_> = batch.collect();
        assert_eq!(got[0], Ok(10));
        assert!(matches!(
            got[1],
            Err(TaskError::Panicked {
                index: Some(6),
                pid: 9,
                ..
            })
        ));
        assert_eq!(got[2], Ok(12));
    }

    #[test]
    fn draining_a_batch_stops_at_its_first_error() {
        let mut out = vec![1u64];
        let e = Batch::encoded(0, 3, three(), map_decoders::<u64>())
            .drain_into(&mut out)
            .unwrap_err();
        assert!(matches!(e, TaskError::Panicked { index: Some(1), .. }));
        assert_eq!(out, vec![1, 10]);
    }

    /// One item's outcome as a worker writes it.
    fn value(v: u64) -> Vec<u8> {
        let mut b = vec![1];
        encode_framed(&v, &mut b).unwrap();
        b
    }

    #[test]
    fn an_untrustworthy_outcome_stops_only_its_own_part() {
        // Part one, items 2..5: a value, then a task error that does not decode (so its
        // length cannot be trusted: the rest of its part is dropped, and item 4 is missing).
        // Part two, from another frame: item 5.
        let mut bytes = value(1);
        bytes.extend([0, 0xff, 0xff, 0xff]);
        let second = bytes.len();
        bytes.extend(value(5));
        let parts: VecDeque<_> = [(5, second)].into_iter().collect();
        let batch = || Batch::encoded_parts(2, 4, bytes.clone(), parts.clone(), map_decoders());
        let got: Vec<_> = batch().collect::<Vec<Result<u64, _>>>();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Ok(1));
        assert!(matches!(
            got[1],
            Err(TaskError::Deserialize { index: Some(3), .. })
        ));
        assert!(
            matches!(&got[2], Err(TaskError::Deserialize { index: Some(4), message, .. }) if message.contains("missing"))
        );
        assert_eq!(got[3..], [Ok(5)]);
        // Drained, the same: the first error is the first part's.
        let mut out = Vec::new();
        let e = batch().drain_into(&mut out).unwrap_err();
        assert!(matches!(e, TaskError::Deserialize { index: Some(3), .. }));
        assert_eq!(out, [1]);
    }

    #[test]
    fn a_batch_of_parts_drains_part_by_part() {
        let mut bytes = value(7);
        let second = bytes.len();
        bytes.extend(value(8));
        bytes.extend(value(9));
        let third = bytes.len();
        bytes.extend(value(10));
        let parts: VecDeque<_> = [(1, second), (3, third)].into_iter().collect();
        let mut out = vec![];
        Batch::encoded_parts(0, 4, bytes, parts, map_decoders::<u64>())
            .drain_into(&mut out)
            .unwrap();
        assert_eq!(out, [7, 8, 9, 10]);
    }

    #[test]
    fn parts_whose_items_follow_each_other_become_one_batch() {
        let state = MapState::<u64>::new(true);
        // A round's frames: worker 0 had items 0 and 2, worker 1 items 1 and 5.
        let mut bytes = Vec::new();
        let mut parts = Vec::new();
        for i in [0u64, 2, 1, 5] {
            let at = bytes.len();
            bytes.extend(value(100 + i));
            parts.push((i as usize, 1, at..bytes.len()));
        }
        state.deliver_parts(&mut parts, &bytes);
        let (start, first) = state.take(0);
        assert_eq!((start, first.len()), (0, 3));
        assert_eq!(first.collect::<Vec<_>>(), [Ok(100), Ok(101), Ok(102)]);
        let (start, second) = state.take(5);
        assert_eq!((start, second.collect::<Vec<_>>()), (5, vec![Ok(105)]));
    }

    #[test]
    fn a_batch_cut_short_says_result_missing_for_the_items_it_lacks() {
        let mut bytes = three();
        bytes.truncate(3); // the first item's frame is cut
        let got: Vec<_> = Batch::encoded(0, 3, bytes, map_decoders::<u64>()).collect();
        assert_eq!(got.len(), 3);
        for (i, r) in got.iter().enumerate() {
            match r {
                Err(TaskError::Deserialize { index, .. }) => assert_eq!(*index, Some(i)),
                other => panic!("item {i}: {other:?}"),
            }
        }
        // A batch claiming more items than its bytes hold: the extra one is missing.
        let got: Vec<_> = Batch::encoded(0, 4, three(), map_decoders::<u64>()).collect();
        assert!(
            matches!(&got[3], Err(TaskError::Deserialize { message, .. }) if message.contains("missing"))
        );
    }
}
