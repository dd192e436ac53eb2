//! What every rank runs: the jobs rank 0 ships, on a local `ProcessPool` (a crash costs
//! one task) or, if asked, on a local `ThreadPool`. Results leave as [`Up`] frames through
//! `out`, which goes over MPI on a serving rank and straight to the bookkeeping on rank 0.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result, TaskError};
use crate::mpi::wire::{self, Down, Up};
use crate::process_pool::sink::ByteSink;
use crate::{ProcessPool, ThreadPool};

/// Where a rank's `Up` frames go.
pub(crate) type Out = Arc<dyn Fn(Vec<u8>) + Send + Sync>;

/// The local options of a rank (the builder's, read on each rank from its own program).
#[derive(Debug, Clone)]
pub(crate) struct LocalConfig {
    pub workers: Option<usize>,
    pub threads: bool,
    pub task_timeout: Option<std::time::Duration>,
    pub retries: u32,
    pub max_tasks_per_child: Option<u64>,
    pub memory_limit: Option<u64>,
}

enum Local {
    Procs(ProcessPool),
    Threads(ThreadPool),
}

/// A rank's local executor and the jobs it was told to drop.
pub(crate) struct Server {
    local: Local,
    workers: usize,
    out: Out,
    cancelled: Arc<Mutex<HashSet<u64>>>,
}

/// What [`Server::handle`] found in a frame.
pub(crate) enum Handled {
    Continue,
    Shutdown { cancel_pending: bool },
}

impl Server {
    pub(crate) fn start(cfg: &LocalConfig, out: Out) -> Result<Server> {
        let workers = cfg.workers.unwrap_or_else(crate::cpu_count).max(1);
        let local = if cfg.threads {
            if cfg.task_timeout.is_some() || cfg.memory_limit.is_some() {
                return Err(Error::InvalidArgument(
                    "task_timeout and memory_limit need local worker processes; \
                     drop .threads(true) to use them"
                        .into(),
                ));
            }
            Local::Threads(ThreadPool::new(workers)?)
        } else {
            let mut b = ProcessPool::builder().workers(workers).retries(cfg.retries);
            if let Some(t) = cfg.task_timeout {
                b = b.task_timeout(t);
            }
            if let Some(n) = cfg.max_tasks_per_child {
                b = b.max_tasks_per_child(n);
            }
            if let Some(m) = cfg.memory_limit {
                b = b.memory_limit(m);
            }
            Local::Procs(b.build()?)
        };
        Ok(Server {
            local,
            workers,
            out,
            cancelled: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Acts on one frame from rank 0. A malformed frame is reported and dropped: it came
    /// from another process.
    pub(crate) fn handle(&self, frame: &[u8]) -> Handled {
        match wire::unframe::<Down>(frame) {
            Some((Down::Job { id, thunk, offsets }, data)) => {
                self.run(id, thunk, data.to_vec(), offsets);
                Handled::Continue
            }
            Some((Down::Cancel(id), _)) => {
                self.cancelled.lock().unwrap().insert(id);
                Handled::Continue
            }
            Some((Down::Shutdown { cancel_pending }, _)) => Handled::Shutdown { cancel_pending },
            None => {
                eprintln!(
                    "multiproc: dropped a malformed MPI frame ({} bytes)",
                    frame.len()
                );
                Handled::Continue
            }
        }
    }

    /// Queues job `id` on the local executor.
    pub(crate) fn run(&self, id: u64, thunk: i64, data: Vec<u8>, offsets: Vec<u32>) {
        let n = offsets.len();
        let sink = Arc::new(RankSink {
            id,
            out: self.out.clone(),
            cancelled: self.cancelled.clone(),
            remaining: AtomicUsize::new(n),
        });
        if !wire::offsets_valid(&offsets, data.len()) {
            sink.fail_from(0, n, || TaskError::Deserialize {
                index: None,
                type_name: "a job frame".into(),
                message: "item offsets out of bounds".into(),
            });
            return;
        }
        let sent = match &self.local {
            Local::Procs(p) => p.submit_encoded(thunk, data, offsets.len(), sink.clone()),
            Local::Threads(t) => run_on_threads(t, thunk, data, offsets, sink.clone()),
        };
        if sent.is_err() {
            sink.fail_from(0, n, || TaskError::PoolClosed {
                index: None,
                reason: "the rank's local pool is shut down".into(),
            });
        }
    }

    /// Finishes (or cancels) everything queued, then stops the local workers. Every job has
    /// been answered through `out` when this returns.
    pub(crate) fn finish(&self, cancel_pending: bool) {
        match &self.local {
            Local::Procs(p) => p.shutdown(true, cancel_pending),
            Local::Threads(t) => t.shutdown(true, cancel_pending),
        }
    }
}

/// Runs a shipped job on a thread: the same thunk a worker process would run, so a panic is
/// caught and reported per item (a segfault, though, takes the rank down: threads share it).
fn run_on_threads(
    pool: &ThreadPool,
    thunk: i64,
    data: Vec<u8>,
    offsets: Vec<u32>,
    sink: Arc<RankSink>,
) -> Result<()> {
    let s2 = sink.clone();
    let n = offsets.len();
    let fut = pool.submit(
        move |()| {
            if s2.is_cancelled() {
                s2.fail_from(0, n, || TaskError::Cancelled { index: None });
                return;
            }
            crate::bootstrap::task::set_quiet(true);
            // The offset came from rank 0 after the start-up check that every rank runs
            // this very build (see `mpi::MpiPool::world`).
            let f = crate::bootstrap::unship_task(thunk);
            let ctx = crate::bootstrap::TaskCtx {
                pid: std::process::id(),
            };
            let mut out = Vec::new();
            for k in 0..n {
                let end = offsets.get(k + 1).map_or(data.len(), |&e| e as usize);
                let mut input = &data[offsets[k] as usize..end];
                let tag_at = out.len();
                out.push(0);
                let ok = f(&mut input, &mut out, &ctx);
                out[tag_at] = ok as u8;
            }
            s2.deliver(0, n, &out);
        },
        (),
    )?;
    // Cancelled before it ran (shutdown with cancel_pending), or the runner itself failed.
    fut.add_done_callback(move |r| {
        if let Err(e) = r {
            let left = sink.remaining.load(Ordering::Acquire);
            if left > 0 {
                sink.fail_from(n - left, n, || e.clone());
            }
        }
    });
    Ok(())
}

/// Receives one job's results from the local executor and sends them to rank 0.
struct RankSink {
    id: u64,
    out: Out,
    cancelled: Arc<Mutex<HashSet<u64>>>,
    /// Items not answered yet; at zero, the job is forgotten.
    remaining: AtomicUsize,
}

impl RankSink {
    fn answered(&self, count: usize) {
        if self.remaining.fetch_sub(count, Ordering::AcqRel) == count {
            self.cancelled.lock().unwrap().remove(&self.id);
        }
    }

    fn fail_from(&self, from: usize, to: usize, err: impl Fn() -> TaskError) {
        for k in from..to {
            self.fail(k, err());
        }
    }
}

impl ByteSink for RankSink {
    fn deliver(&self, start: usize, count: usize, bytes: &[u8]) {
        if count == 0 {
            return;
        }
        if bytes.len() + 64 > wire::MAX_FRAME {
            for k in start..start + count {
                self.fail(k, wire::too_large("the results", bytes.len()));
            }
            return;
        }
        let h = Up::Results {
            id: self.id,
            first: start as u32,
            count: count as u32,
        };
        (self.out)(wire::frame(&h, bytes));
        self.answered(count);
    }

    fn fail(&self, start: usize, error: TaskError) {
        let h = Up::Fail {
            id: self.id,
            item: start as u32,
            error,
        };
        (self.out)(wire::frame(&h, &[]));
        self.answered(1);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.lock().unwrap().contains(&self.id)
    }
}
