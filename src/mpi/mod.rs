//! `MpiPool`: the [`Executor`] API over the ranks of an MPI job (the model is mpi4py's
//! `MPICommExecutor`), with crash containment on every rank.
//!
//! Every rank runs the same program. [`MpiPool::world`] returns `Some(pool)` on rank 0,
//! which drives; every other rank serves tasks inside `world()` and returns `None` once
//! rank 0 shuts the pool down. Each rank (rank 0 too, unless told otherwise) runs its
//! tasks in a local [`ProcessPool`](crate::ProcessPool), so a task that panics, segfaults,
//! aborts, exits or times out fails only its own future, with the rank and host in the
//! error ([`TaskError::OnRank`]). See `README.md` beside this file for the protocol.

mod comm;
mod local;
mod root;
mod serve;
mod start;
pub(crate) mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use mpi::Threading;

use self::local::LocalConfig;
use self::root::{Deliver, Link, Shared, ToFuture, ToMap};
use self::wire::{Down, Hello};
use crate::error::{Error, Result, TaskError};
use crate::executor::{Executor, MapState, Payload, PoolFn};
use crate::future::{FutureState, PoolLink, TaskFuture};

/// One rank of the job, as rank 0 sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankInfo {
    /// The rank.
    pub rank: i32,
    /// Its host (`MPI_Get_processor_name`).
    pub host: String,
    /// Its local workers (0 for rank 0 when it only drives).
    pub workers: usize,
}

/// Options for an [`MpiPool`]; see [`MpiPool::builder`]. Every rank runs the same
/// program, so every rank reads the same options from its own copy of it.
#[derive(Debug, Clone)]
pub struct MpiPoolBuilder {
    local: LocalConfig,
    root_serves: bool,
    start_timeout: Duration,
    bench_pings: usize,
}

impl MpiPoolBuilder {
    /// Local workers on each rank (default: the CPUs MPI lets that rank run on).
    pub fn workers(mut self, n: usize) -> Self {
        self.local.workers = Some(n.max(1));
        self
    }

    /// Runs each rank's tasks on threads instead of worker processes: no process start-up
    /// or copy, but a task that crashes takes its rank, and so the job, down, and
    /// `task_timeout` / `memory_limit` are refused.
    pub fn threads(mut self, on: bool) -> Self {
        self.local.threads = on;
        self
    }

    /// As [`ProcessPoolBuilder::task_timeout`](crate::ProcessPoolBuilder::task_timeout),
    /// on every rank.
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.local.task_timeout = Some(d);
        self
    }

    /// As [`ProcessPoolBuilder::retries`](crate::ProcessPoolBuilder::retries): a task whose
    /// worker died runs again, on the same rank, up to `n` times.
    pub fn retries(mut self, n: u32) -> Self {
        self.local.retries = n;
        self
    }

    /// As [`ProcessPoolBuilder::max_tasks_per_child`](crate::ProcessPoolBuilder::max_tasks_per_child).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.local.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// As [`ProcessPoolBuilder::memory_limit`](crate::ProcessPoolBuilder::memory_limit),
    /// for every local worker on every rank.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.local.memory_limit = Some(bytes);
        self
    }

    /// Whether rank 0 runs tasks too (default `true`). With `false` it only drives, as in
    /// mpi4py (unless it is the only rank).
    pub fn root_serves(mut self, on: bool) -> Self {
        self.root_serves = on;
        self
    }

    /// How long start-up waits for every rank to check in and start its workers
    /// (default 60 s).
    pub fn start_timeout(mut self, d: Duration) -> Self {
        self.start_timeout = d;
        self
    }

    /// Before the pool starts, ranks 0 and 1 bounce `n` one-byte messages with plain
    /// blocking MPI calls; [`MpiPool::bare_round_trip`] gives the median. For benchmarks.
    #[doc(hidden)]
    pub fn bench_round_trip(mut self, n: usize) -> Self {
        self.bench_pings = n;
        self
    }

    /// Starts MPI and the pool on every rank of `MPI_COMM_WORLD`: `Some(pool)` on rank 0;
    /// on every other rank, serves tasks until rank 0 shuts the pool down, then returns
    /// `None`. MPI is finalized when the pool (rank 0) or this call (other ranks) ends.
    ///
    /// Fails on rank 0 with [`Error::BinaryMismatch`], naming the rank and host, if any
    /// rank runs another build (the other ranks then return `None`); with
    /// [`Error::StartFailed`] if a rank's local workers cannot start.
    pub fn world(self) -> Result<Option<MpiPool>> {
        let (universe, level) =
            mpi::initialize_with_threading(Threading::Multiple).ok_or_else(|| {
                Error::StartFailed("MPI is already initialized: call MpiPool::world() once".into())
            })?;
        if level < Threading::Multiple {
            return Err(Error::StartFailed(format!(
                "this MPI library offers only {level:?} threading; MpiPool needs MPI_THREAD_MULTIPLE"
            )));
        }
        let world = comm::world();
        let (rank, size) = comm::rank_and_size(&world);
        let hello = Hello {
            build_id: crate::bootstrap::build_id::build_id().to_string(),
            host: comm::host(),
            exe: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };
        if rank == 0 {
            MpiPool::start_root(self, universe, &world, size, hello).map(Some)
        } else {
            serve::serve(&self, &world, rank, hello);
            drop(universe);
            Ok(None)
        }
    }
}

/// The [`Executor`] API over the ranks of an MPI job: change one constructor, and a
/// program written for a [`ProcessPool`](crate::ProcessPool) runs on a cluster.
///
/// Start the program on every rank (`mpirun -n 4 ./app`, `srun ./app`); call
/// [`MpiPool::world`] once, early, on every rank. A `map` is cut into chunks that go to
/// the least loaded rank, and each rank spreads them over its local workers. Functions and
/// arguments ship as in a `ProcessPool` (code offsets, postcard), so every host must run the
/// same build; start-up checks this.
///
/// Run without `mpirun`, the program is an MPI job of one rank, and the pool runs its tasks
/// in a local process pool:
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Executor, MpiPool};
/// fn square(x: u64) -> u64 { x * x }
/// let Some(pool) = MpiPool::builder().workers(2).world().unwrap() else {
///     return; // a serving rank: its work is done
/// };
/// assert_eq!(pool.map(square, 0..5).unwrap(), vec![0, 1, 4, 9, 16]);
/// ```
pub struct MpiPool {
    shared: Arc<Shared>,
    weak_link: Weak<dyn PoolLink>,
    _link: Arc<Link>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    joined: AtomicBool,
    round_trip: Option<Duration>,
    /// Declared last: dropping it finalizes MPI, after everything above is done.
    _universe: mpi::environment::Universe,
}

impl std::fmt::Debug for MpiPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiPool")
            .field("ranks", &self.shared.ranks)
            .finish()
    }
}

impl MpiPool {
    /// [`MpiPoolBuilder::world`] with default options.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// use multiproc::{Executor, MpiPool};
    /// fn double(x: u32) -> u32 { 2 * x }
    /// if let Some(pool) = MpiPool::world().unwrap() {
    ///     assert_eq!(pool.submit(double, 21).unwrap().result().unwrap(), 42);
    /// }
    /// ```
    pub fn world() -> Result<Option<MpiPool>> {
        MpiPool::builder().world()
    }

    /// Options for the pool.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// use std::time::Duration;
    /// use multiproc::{Executor, MpiPool, TaskError};
    /// fn stuck(_: u32) -> u32 { loop { std::thread::sleep(Duration::from_secs(1)) } }
    /// let Some(pool) = MpiPool::builder()
    ///     .workers(1)
    ///     .task_timeout(Duration::from_millis(300))
    ///     .world()
    ///     .unwrap()
    /// else {
    ///     return;
    /// };
    /// let err = pool.submit(stuck, 0).unwrap().result().unwrap_err();
    /// assert!(matches!(err, TaskError::OnRank { rank: 0, ref error, .. }
    ///     if matches!(**error, TaskError::TimedOut { .. })));
    /// ```
    pub fn builder() -> MpiPoolBuilder {
        MpiPoolBuilder {
            local: LocalConfig {
                workers: None,
                threads: false,
                task_timeout: None,
                retries: 0,
                max_tasks_per_child: None,
                memory_limit: None,
            },
            root_serves: true,
            start_timeout: Duration::from_secs(60),
            bench_pings: 0,
        }
    }

    /// The ranks of the job: host and local workers of each.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// let Some(pool) = multiproc::MpiPool::builder().workers(2).world().unwrap() else { return };
    /// assert_eq!(pool.ranks()[0].rank, 0);
    /// assert_eq!(pool.ranks()[0].workers, 2);
    /// ```
    pub fn ranks(&self) -> &[RankInfo] {
        &self.shared.ranks
    }

    /// Median of the bare MPI round trips asked for with `bench_round_trip`.
    #[doc(hidden)]
    pub fn bare_round_trip(&self) -> Option<Duration> {
        self.round_trip
    }

    /// Stops taking tasks. With `cancel_pending`, tasks not yet started fail as
    /// `Cancelled`; running ones finish. With `wait`, returns once every rank has answered
    /// every task and stopped its local workers.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// use multiproc::{Error, Executor, MpiPool};
    /// fn double(x: u32) -> u32 { 2 * x }
    /// let Some(pool) = MpiPool::builder().workers(1).world().unwrap() else { return };
    /// let f = pool.submit(double, 4).unwrap();
    /// pool.shutdown(true, false);
    /// assert_eq!(f.result().unwrap(), 8);
    /// assert!(matches!(pool.submit(double, 1), Err(Error::ShutDown)));
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_pending: bool) {
        let s = &self.shared;
        if cancel_pending {
            s.cancel_pending.store(true, Ordering::Release);
        }
        {
            let _p = s.pending.lock().unwrap();
            if !s.closed.swap(true, Ordering::AcqRel) {
                let stop = wire::frame(&Down::Shutdown { cancel_pending }, &[]);
                for r in 1..s.ranks.len() as i32 {
                    let _ = s.tx.send((r, stop.clone()));
                }
            }
        }
        if !wait || self.joined.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(l) = s.local.get() {
            l.finish(s.cancel_pending.load(Ordering::Acquire));
        }
        let serving = s.ranks.len() - 1;
        let mut byes = s.byes.lock().unwrap();
        while *byes < serving {
            byes = s.bye_cv.wait(byes).unwrap();
        }
        drop(byes);
        s.stop.store(true, Ordering::Release);
        let _ = s.tx.send((-1, Vec::new()));
        for t in std::mem::take(&mut *self.threads.lock().unwrap()) {
            let _ = t.join();
        }
        // Every rank has answered everything it was sent; a job that raced with the
        // shutdown and was never sent is refused here rather than left waiting.
        let left: Vec<(Arc<dyn Deliver>, usize, usize)> = s
            .pending
            .lock()
            .unwrap()
            .drain()
            .map(|(_, e)| {
                let n = e.remaining;
                (e.sink, n, 0)
            })
            .collect();
        for (sink, n, _) in left {
            for k in 0..n {
                sink.fail(
                    k,
                    TaskError::PoolClosed {
                        index: None,
                        reason: "the pool was shut down before the task was sent".into(),
                    },
                );
            }
        }
    }

    fn encode_one<A: Payload>(arg: &A) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        encode_item(arg, &mut data).map_err(|message| Error::Serialize {
            type_name: std::any::type_name::<A>(),
            message,
        })?;
        Ok(data)
    }
}

/// Appends one argument as a local `ProcessPool` job holds it (the worker's thunk reads it
/// back), so a rank can queue the bytes as they arrive. The one place that knows the item
/// encoding on this side.
fn encode_item<A: Payload>(arg: &A, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    crate::bootstrap::task::encode_framed(arg, out)
}

impl Drop for MpiPool {
    /// Finishes every submitted task on every rank, stops every local worker, lets the
    /// serving ranks return from `world()`, and finalizes MPI.
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl Executor for MpiPool {
    fn workers(&self) -> usize {
        self.shared
            .ranks
            .iter()
            .map(|r| r.workers)
            .sum::<usize>()
            .max(1)
    }

    fn submit<F, A, R>(&self, f: F, arg: A) -> Result<TaskFuture<R>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        let data = Self::encode_one(&arg)?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let state = FutureState::<R>::new(None);
        state.set_link(self.weak_link.clone(), id);
        let thunk = crate::bootstrap::ship_task(f);
        self.shared
            .send_job(id, thunk, data, vec![0], Arc::new(ToFuture(state.clone())));
        Ok(TaskFuture::from_state(state))
    }

    fn dispatch_chunk<F, A, R>(
        &self,
        f: F,
        start: usize,
        items: &mut Vec<A>,
        sink: &Arc<MapState<R>>,
    ) where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        let thunk = crate::bootstrap::ship_task(f);
        crate::executor::encode_chunk(items, start, sink, |data, offsets, first| {
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let to = Arc::new(ToMap {
                state: sink.clone(),
                start: first,
            });
            self.shared.send_job(id, thunk, data, offsets.to_vec(), to);
        });
    }
}
