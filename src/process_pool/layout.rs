//! The pool's shared memory: a header page, then one slot per worker.
//!
//! ```text
//! 0          pool bell (seq u32, sleeping u32): the dispatcher sleeps here
//! 8          helpers u32: callers collecting results themselves (workers then don't ring)
//! 12         helper cpu u32: the CPU of the latest of them
//! 4096 + i·S slot i: header page | task ring (parent → worker) | result ring (worker → parent)
//! ```

use serde::{Deserialize, Serialize};

use crate::ring::spsc::RING_HEADER;

pub(crate) const PAGE: usize = 4096;
pub(crate) const POOL_BELL: usize = 0;
/// How many callers are spinning on a future and collecting results themselves
/// (`Link::help`): while non-zero, a worker that published a result does not ring the
/// pool bell (see "Helpers" in `README.md`).
pub(crate) const POOL_HELPERS: usize = 8;
/// The CPU of the caller that last started helping (read only while `POOL_HELPERS` is not
/// zero; a hint, as callers move and several may help): a worker that finds itself on
/// that CPU before it waits for a task moves off it (see "Helpers" in `README.md`).
pub(crate) const POOL_HELPER_CPU: usize = 12;

// Slot header fields (offsets inside the slot's header page).
/// `READY` once the initializer ran, `INIT_FAILED` if it failed.
pub(crate) const STATE: usize = 0;
/// Id of the task (chunk) being run, 0 when idle.
pub(crate) const CURRENT_TASK: usize = 8;
/// Index inside that chunk of the item being run.
pub(crate) const CURRENT_ITEM: usize = 16;
/// CLOCK_MONOTONIC nanoseconds when that item started (only with a task timeout).
pub(crate) const STARTED_NS: usize = 24;
/// The worker sleeps on this bell waiting for tasks.
pub(crate) const TASK_BELL: usize = 32;
/// Set to 1 by the worker's SIGABRT handler when the abort is a failed allocation (see
/// `sys::signal`). Apart from the bell, which may grow.
pub(crate) const ALLOC_FAILED: usize = 64;
/// CLOCK_MONOTONIC nanoseconds when the worker became ready (for `insights`; untrusted, the
/// parent clamps it into the worker's life).
pub(crate) const READY_NS: usize = 72;

pub(crate) const STATE_STARTING: u32 = 0;
pub(crate) const STATE_READY: u32 = 1;
pub(crate) const STATE_INIT_FAILED: u32 = 2;

// Frame kinds.
/// Parent → worker: a chunk of items to run.
pub(crate) const K_TASK: u32 = 1;
/// Parent → worker: finish and exit.
pub(crate) const K_STOP: u32 = 2;
/// Worker → parent: results of consecutive items of one chunk.
pub(crate) const K_RESULTS: u32 = 3;
/// Worker → parent: the initializer failed (payload: encoded `TaskError`).
pub(crate) const K_INIT_FAILED: u32 = 4;
/// Flag or-ed into a kind: the payload is in a memfd sent on the slot's socket.
pub(crate) const OOB: u32 = 0x100;

/// Task frame header: id u64, thunk i64, count u32, pad u32.
pub(crate) const TASK_HDR: usize = 24;
/// Results frame header: id u64, first u32, count u32, elapsed_ns u64.
pub(crate) const RESULTS_HDR: usize = 24;

/// Ring capacity per direction.
pub(crate) const RING_CAP: usize = 1 << 20;

/// Bytes of one slot.
pub(crate) fn slot_size() -> usize {
    PAGE + 2 * (RING_HEADER + RING_CAP)
}

/// Offset of slot `i`.
pub(crate) fn slot_base(i: usize) -> usize {
    PAGE + i * slot_size()
}

pub(crate) fn task_ring(i: usize) -> usize {
    slot_base(i) + PAGE
}

pub(crate) fn result_ring(i: usize) -> usize {
    task_ring(i) + RING_HEADER + RING_CAP
}

/// Bytes of the whole mapping for `n` workers.
pub(crate) fn total_size(n: usize) -> usize {
    PAGE + n * slot_size()
}

/// What a worker is told at start.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub slot: usize,
    pub workers: usize,
    pub memory_limit: Option<u64>,
    /// Where std's allocation-failure code is, relative to `handle_alloc_error` (see
    /// `sys::signal::alloc_error_code`); read by the parent, used with a memory limit.
    pub alloc_error_code: Vec<(i64, i64)>,
    pub max_tasks: Option<u64>,
    pub timed: bool,
    /// Initializer thunk and its encoded argument.
    pub initializer: Option<(i64, Vec<u8>)>,
}

pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// The largest out-of-band payload a parent accepts from a worker (16 GiB): the size comes
/// from a process that may have corrupted its memory, so it is capped before any allocation.
pub(crate) const MAX_OOB: u64 = 1 << 34;

/// A frame from a worker's result ring, checked (see [`decode_result_frame`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WorkerFrame<'a> {
    /// Outcomes of items `first..first + count` of job `id`.
    Results {
        id: u64,
        first: usize,
        count: usize,
        elapsed_ns: u64,
        body: Body<'a>,
    },
    /// The initializer failed; the body is an encoded `TaskError`.
    InitFailed(Body<'a>),
}

/// Where a frame's body is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    Inline(&'a [u8]),
    /// In a memfd on the slot's socket, of this many bytes (at most [`MAX_OOB`]).
    OutOfBand(u64),
}

/// Decodes a frame a worker published, trusting nothing in it: the kind must be known, the
/// header complete, a results frame must hold at least one outcome and at least one byte per
/// outcome (each has a tag byte), and an out-of-band size must be within [`MAX_OOB`]. Pure,
/// so a property test can feed it arbitrary bytes.
pub(crate) fn decode_result_frame(kind: u32, payload: &[u8]) -> Result<WorkerFrame<'_>, String> {
    let oob = kind & OOB != 0;
    let hdr_len = match kind & !OOB {
        K_RESULTS => RESULTS_HDR,
        K_INIT_FAILED => 0,
        other => return Err(format!("unknown frame kind {other:#x}")),
    };
    if kind & !(OOB | 0xff) != 0 {
        return Err(format!("unknown frame kind {kind:#x}"));
    }
    let need = hdr_len + if oob { 8 } else { 0 };
    if payload.len() < need || (oob && payload.len() != need) {
        return Err(format!(
            "frame of kind {kind:#x} has {} bytes, expected {}{need}",
            payload.len(),
            if oob { "" } else { "at least " }
        ));
    }
    let body = if oob {
        let len = get_u64(payload, hdr_len);
        if len > MAX_OOB {
            return Err(format!(
                "out-of-band size {len} exceeds the limit of {MAX_OOB} bytes"
            ));
        }
        Body::OutOfBand(len)
    } else {
        Body::Inline(&payload[hdr_len..])
    };
    if kind & !OOB == K_INIT_FAILED {
        return Ok(WorkerFrame::InitFailed(body));
    }
    let count = get_u32(payload, 12) as usize;
    let body_len = match body {
        Body::Inline(b) => b.len() as u64,
        Body::OutOfBand(n) => n,
    };
    if count == 0 || body_len < count as u64 {
        return Err(format!(
            "results frame claims {count} outcomes in {body_len} bytes"
        ));
    }
    Ok(WorkerFrame::Results {
        id: get_u64(payload, 0),
        first: get_u32(payload, 8) as usize,
        count,
        elapsed_ns: get_u64(payload, 16),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Rng;

    #[test]
    fn arbitrary_frames_decode_or_fail_typed_never_panic() {
        let mut rng = Rng(0x5eed_f00d);
        let kinds = [
            K_RESULTS,
            K_RESULTS | OOB,
            K_INIT_FAILED,
            K_INIT_FAILED | OOB,
        ];
        let (mut ok, mut bad) = (0, 0);
        for case in 0..50_000 {
            let kind = if case % 5 == 0 {
                rng.next() as u32
            } else {
                kinds[rng.below(4) as usize]
            };
            let len = rng.below(80) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if case % 3 == 0 && p.len() >= 16 {
                // A small count, so some frames are valid.
                p[12..16].copy_from_slice(&(rng.below(4) as u32).to_le_bytes());
            }
            match decode_result_frame(kind, &p) {
                Ok(WorkerFrame::Results { count, body, .. }) => {
                    ok += 1;
                    assert!(count >= 1);
                    match body {
                        Body::Inline(b) => assert!(b.len() >= count),
                        Body::OutOfBand(n) => assert!(n <= MAX_OOB && n >= count as u64),
                    }
                }
                Ok(WorkerFrame::InitFailed(Body::OutOfBand(n))) => {
                    ok += 1;
                    assert!(n <= MAX_OOB)
                }
                Ok(WorkerFrame::InitFailed(Body::Inline(_))) => ok += 1,
                Err(msg) => {
                    bad += 1;
                    assert!(!msg.is_empty())
                }
            }
        }
        // Both outcomes were exercised, not just one.
        assert!(ok > 1000 && bad > 1000, "ok {ok} bad {bad}");
    }

    #[test]
    fn frames_the_worker_writes_decode() {
        let mut h = [0u8; RESULTS_HDR];
        put_u64(&mut h, 0, 7);
        put_u32(&mut h, 8, 2);
        put_u32(&mut h, 12, 3);
        let mut p = h.to_vec();
        p.extend_from_slice(&[1, 1, 0, 5]);
        assert_eq!(
            decode_result_frame(K_RESULTS, &p).unwrap(),
            WorkerFrame::Results {
                id: 7,
                first: 2,
                count: 3,
                elapsed_ns: 0,
                body: Body::Inline(&[1, 1, 0, 5])
            }
        );
        let mut p = h.to_vec();
        p.extend_from_slice(&(MAX_OOB + 1).to_le_bytes());
        assert!(decode_result_frame(K_RESULTS | OOB, &p).is_err());
        assert!(decode_result_frame(K_TASK, &p).is_err());
    }
}
