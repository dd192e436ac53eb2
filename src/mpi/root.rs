//! Rank 0's bookkeeping: which job went to which rank, where its answers go, and the two
//! threads that carry frames to and from the other ranks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::de::DeserializeOwned;

use super::local::Server;
use super::wire::{self, Down, TAG_DOWN, TAG_UP, Up};
use super::{RankInfo, comm};
use crate::error::{Error, Result, TaskError};
use crate::executor::MapState;
use crate::future::{FutureState, PoolLink};
use crate::process_pool::sink::decode;

/// Where the results of one job go on rank 0 (a future or a map), typed.
pub(super) trait Deliver: Send + Sync {
    fn bytes(
        &self,
        first: usize,
        count: usize,
        bytes: &[u8],
        place: &dyn Fn(TaskError) -> TaskError,
    );
    fn fail(&self, item: usize, err: TaskError);
    fn cancelled(&self) -> bool;
}

pub(super) struct ToFuture<R>(pub(super) Arc<FutureState<R>>);

impl<R: DeserializeOwned + Send> Deliver for ToFuture<R> {
    fn bytes(&self, _: usize, count: usize, bytes: &[u8], place: &dyn Fn(TaskError) -> TaskError) {
        if let Some(r) = decode::<R>(0, count, bytes, false).pop() {
            self.0.complete(r.map_err(place));
        }
    }
    fn fail(&self, _: usize, err: TaskError) {
        self.0.complete(Err(err));
    }
    fn cancelled(&self) -> bool {
        self.0.is_done()
    }
}

pub(super) struct ToMap<R> {
    pub(super) state: Arc<MapState<R>>,
    /// Map index of the job's first item.
    pub(super) start: usize,
}

impl<R: DeserializeOwned + Send> Deliver for ToMap<R> {
    fn bytes(
        &self,
        first: usize,
        count: usize,
        bytes: &[u8],
        place: &dyn Fn(TaskError) -> TaskError,
    ) {
        let at = self.start + first;
        let v = decode::<R>(at, count, bytes, true)
            .into_iter()
            .map(|r| r.map_err(place))
            .collect();
        self.state.deliver(at, v);
    }
    fn fail(&self, item: usize, err: TaskError) {
        let at = self.start + item;
        self.state.deliver(at, vec![Err(err.with_index(at))]);
    }
    fn cancelled(&self) -> bool {
        self.state.is_cancelled()
    }
}

pub(super) struct Pending {
    pub(super) rank: i32,
    pub(super) remaining: usize,
    pub(super) sink: Arc<dyn Deliver>,
    pub(super) cancel_sent: bool,
}

/// What rank 0's handle, its two MPI threads and its futures share.
pub(super) struct Shared {
    pub(super) ranks: Vec<RankInfo>,
    /// Items sent to each rank and not answered yet.
    pub(super) load: Vec<AtomicUsize>,
    pub(super) pending: Mutex<HashMap<u64, Pending>>,
    pub(super) next_id: AtomicU64,
    pub(super) closed: AtomicBool,
    pub(super) cancel_pending: AtomicBool,
    /// Serving ranks (other than 0) that said `Bye`.
    pub(super) byes: Mutex<usize>,
    pub(super) bye_cv: Condvar,
    pub(super) stop: AtomicBool,
    /// To the sender thread: (rank, frame); rank -1 stops it.
    pub(super) tx: Sender<(i32, Vec<u8>)>,
    /// Rank 0's own local pool, if it serves.
    pub(super) local: OnceLock<Server>,
}

impl Shared {
    pub(super) fn place(&self, rank: i32) -> impl Fn(TaskError) -> TaskError + '_ {
        move |e| match e {
            TaskError::Cancelled { .. } => e,
            e => TaskError::OnRank {
                rank,
                host: self.ranks[rank as usize].host.clone(),
                error: Box::new(e),
            },
        }
    }

    /// Handles one frame from `rank` (over MPI, or from rank 0's own pool).
    pub(super) fn handle_up(&self, rank: i32, frame: &[u8]) {
        match wire::unframe::<Up>(frame) {
            Some((Up::Results { id, first, count }, payload)) => {
                let (first, count) = (first as usize, count as usize);
                if let Some(sink) = self.answered(rank, id, count) {
                    // Decoding runs the result type's `Deserialize`: user code. A panic there
                    // fails these items (nothing of them was delivered yet), not the pool.
                    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        sink.bytes(first, count, payload, &self.place(rank))
                    }));
                    if decoded.is_err() {
                        for k in first..first + count {
                            let e = TaskError::Deserialize {
                                index: None,
                                type_name: "the task's result".into(),
                                message: "its Deserialize implementation panicked".into(),
                            };
                            sink.fail(k, self.place(rank)(e));
                        }
                    }
                }
            }
            Some((Up::Fail { id, item, error }, _)) => {
                if let Some(sink) = self.answered(rank, id, 1) {
                    sink.fail(item as usize, self.place(rank)(error));
                }
            }
            Some((Up::Bye, _)) => {
                *self.byes.lock().unwrap() += 1;
                self.bye_cv.notify_all();
            }
            None => eprintln!(
                "multiproc: dropped a malformed MPI frame from rank {rank} ({} bytes)",
                frame.len()
            ),
        }
    }

    /// Books `count` answers of job `id` from `rank`; the sink to deliver them to, unless
    /// the frame does not match what was sent there (then it is dropped).
    pub(super) fn answered(&self, rank: i32, id: u64, count: usize) -> Option<Arc<dyn Deliver>> {
        let mut p = self.pending.lock().unwrap();
        let e = p.get_mut(&id)?;
        if e.rank != rank || count > e.remaining || count == 0 {
            return None;
        }
        e.remaining -= count;
        let sink = e.sink.clone();
        if e.remaining == 0 {
            p.remove(&id);
        }
        drop(p);
        self.load[rank as usize].fetch_sub(count, Ordering::Relaxed);
        Some(sink)
    }

    /// The serving rank with the least queued work per worker, counting `n` more items.
    pub(super) fn pick(&self, n: usize) -> i32 {
        let mut best = (u128::MAX, 0);
        for r in &self.ranks {
            if r.workers == 0 {
                continue;
            }
            let l = self.load[r.rank as usize].load(Ordering::Relaxed) + n;
            let score = (l as u128) * 1_000_000 / r.workers as u128;
            if score < best.0 {
                best = (score, r.rank);
            }
        }
        best.1
    }

    /// Ships one encoded job to a rank; its answers go to `sink`.
    pub(super) fn send_job(
        &self,
        id: u64,
        thunk: i64,
        data: Vec<u8>,
        offsets: Vec<u32>,
        sink: Arc<dyn Deliver>,
    ) {
        let n = offsets.len();
        let mut p = self.pending.lock().unwrap();
        // Checked under the lock that `shutdown` takes to send its messages, so a job is
        // either queued before every rank's shutdown message or refused.
        if self.closed.load(Ordering::Acquire) {
            drop(p);
            for k in 0..n {
                sink.fail(
                    k,
                    TaskError::PoolClosed {
                        index: None,
                        reason: "the pool is shut down".into(),
                    },
                );
            }
            return;
        }
        if data.len() + 16 * (n + 4) > wire::MAX_FRAME {
            drop(p);
            for k in 0..n {
                sink.fail(k, wire::too_large("the arguments", data.len()));
            }
            return;
        }
        let rank = self.pick(n);
        p.insert(
            id,
            Pending {
                rank,
                remaining: n,
                sink,
                cancel_sent: false,
            },
        );
        self.load[rank as usize].fetch_add(n, Ordering::Relaxed);
        if rank != 0 {
            let _ = self
                .tx
                .send((rank, wire::frame(&Down::Job { id, thunk, offsets }, &data)));
            return;
        }
        drop(p);
        // Rank 0's own pool answers through `handle_up`, which takes the lock.
        if let Some(l) = self.local.get() {
            l.run(id, thunk, data, offsets);
        }
    }

    pub(super) fn cancel(&self, id: u64) {
        let rank = {
            let mut p = self.pending.lock().unwrap();
            match p.get_mut(&id) {
                Some(e) if !e.cancel_sent => {
                    e.cancel_sent = true;
                    e.rank
                }
                _ => return,
            }
        };
        self.send_cancel(rank, id);
    }

    pub(super) fn send_cancel(&self, rank: i32, id: u64) {
        if rank == 0 {
            if let Some(l) = self.local.get() {
                l.handle(&wire::frame(&Down::Cancel(id), &[]));
            }
        } else {
            let _ = self.tx.send((rank, wire::frame(&Down::Cancel(id), &[])));
        }
    }

    /// Tells ranks about maps whose consumer went away, so they skip what has not started.
    pub(super) fn forward_cancellations(&self) {
        let mut todo = Vec::new();
        for (id, e) in self.pending.lock().unwrap().iter_mut() {
            if !e.cancel_sent && e.sink.cancelled() {
                e.cancel_sent = true;
                todo.push((e.rank, *id));
            }
        }
        for (rank, id) in todo {
            self.send_cancel(rank, id);
        }
    }
}

pub(super) struct Link(pub(super) Weak<Shared>);

impl PoolLink for Link {
    fn cancel(&self, task_id: u64) {
        if let Some(s) = self.0.upgrade() {
            s.cancel(task_id);
        }
    }
    fn help(&self) {}
}

pub(super) fn spawn_receiver(shared: Arc<Shared>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("multiproc-mpi-recv".into())
        .spawn(move || {
            // Polls and passes messages on: see `sys::sched`.
            crate::sys::sched::short_slices();
            let world = comm::world();
            let mut idle = comm::Backoff::new();
            let mut last_scan = Instant::now();
            loop {
                let mut got = false;
                while let Some((src, frame)) = comm::try_recv(&world, None, TAG_UP) {
                    if src > 0 && (src as usize) < shared.ranks.len() {
                        shared.handle_up(src, &frame);
                    }
                    got = true;
                }
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                if last_scan.elapsed() > Duration::from_millis(10) {
                    shared.forward_cancellations();
                    last_scan = Instant::now();
                }
                if got {
                    idle.reset();
                } else {
                    idle.wait();
                }
            }
        })
        .map_err(|e| Error::io("spawn the MPI receiver thread", e))
}

pub(super) fn spawn_sender(rx: Receiver<(i32, Vec<u8>)>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("multiproc-mpi-send".into())
        .spawn(move || {
            // Polls and passes messages on: see `sys::sched`.
            crate::sys::sched::short_slices();
            let world = comm::world();
            for (rank, frame) in rx {
                if rank < 0 {
                    return;
                }
                comm::send(&world, rank, TAG_DOWN, &frame);
            }
        })
        .map_err(|e| Error::io("spawn the MPI sender thread", e))
}
