//! Where a process pool delivers the encoded results of a job: a future or a map.

use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::executor::MapState;
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
}

pub(crate) fn decode<R: DeserializeOwned>(
    start: usize,
    count: usize,
    mut bytes: &[u8],
    indexed: bool,
) -> Vec<Result<R, TaskError>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let idx = start + i;
        let bad = |what: &str, e: String| TaskError::Deserialize {
            index: indexed.then_some(idx),
            type_name: what.to_string(),
            message: e,
        };
        let Some((&tag, rest)) = bytes.split_first() else {
            out.push(Err(bad(
                std::any::type_name::<R>(),
                "result missing".into(),
            )));
            continue;
        };
        let r = if tag == 1 {
            // Framed with its length: a `Deserialize` that fails or panics costs this item
            // only, and the next one starts where it should.
            bytes = rest;
            crate::bootstrap::task::decode_framed::<R>(&mut bytes)
                .map_err(|e| bad(std::any::type_name::<R>(), e))
        } else {
            match postcard::take_from_bytes::<TaskError>(rest) {
                Ok((e, rest)) => {
                    bytes = rest;
                    Err(if indexed { e.with_index(idx) } else { e })
                }
                Err(e) => {
                    bytes = &[];
                    Err(bad("TaskError", e.to_string()))
                }
            }
        };
        out.push(r);
    }
    out
}

impl<R: DeserializeOwned + Send> ByteSink for FutureState<R> {
    fn deliver(&self, start: usize, count: usize, bytes: &[u8]) {
        if let Some(r) = decode::<R>(start, count, bytes, false).pop() {
            self.complete(r);
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
        MapState::deliver(self, start, decode::<R>(start, count, bytes, true));
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
}
