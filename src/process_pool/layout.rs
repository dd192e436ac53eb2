//! The pool's shared memory: a header page, then one slot per worker.
//!
//! ```text
//! 0          pool bell (seq u32, sleeping u32): the dispatcher sleeps here
//! 4096 + i·S slot i: header page | task ring (parent → worker) | result ring (worker → parent)
//! ```

use serde::{Deserialize, Serialize};

use super::ring::RING_HEADER;

pub(crate) const PAGE: usize = 4096;
pub(crate) const POOL_BELL: usize = 0;

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
