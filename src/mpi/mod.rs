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
mod server;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mpi::Threading;
use serde::de::DeserializeOwned;

use self::server::{Handled, LocalConfig, Out, Server};
use self::wire::{Down, Hello, Ready, Start, TAG_DOWN, TAG_START, TAG_UP, Up};
use crate::error::{Error, Result, TaskError};
use crate::executor::{Executor, MapState, Payload, PoolFn};
use crate::future::{FutureState, PoolLink, TaskFuture};
use crate::process_pool::sink::decode;

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
            serve(&self, &world, rank, hello);
            drop(universe);
            Ok(None)
        }
    }
}

/// A serving rank's life: check in, start the local pool, run jobs until told to stop.
fn serve(cfg: &MpiPoolBuilder, world: &mpi::topology::SimpleCommunicator, rank: i32, hello: Hello) {
    comm::send(world, 0, TAG_START, &wire::frame(&hello, &[]));
    // Rank 0 answers at once unless it is slow to start: wait for it, politely, but not
    // forever (a rank 0 that never answers has died, and then mpirun ends the job).
    let answer = comm::recv_timeout(world, 0, TAG_START, cfg.start_timeout * 2);
    match answer.as_deref().and_then(wire::unframe::<Start>) {
        Some((Start::Go, _)) => {}
        Some((Start::Abort(_), _)) => return,
        None => {
            eprintln!("multiproc: MPI rank {rank}: rank 0 did not start the pool; giving up");
            return;
        }
    }
    if cfg.bench_pings > 0 && rank == 1 {
        for _ in 0..cfg.bench_pings {
            let (b, _) = comm::recv_any_blocking(world, 0);
            comm::send(world, 0, TAG_START, &b);
        }
    }
    // Results go to rank 0 straight from the thread that has them (the local pool's
    // dispatcher): no hand-over to another thread. This cannot deadlock: rank 0's receiver
    // thread is always receiving, and this rank's main thread is, too.
    let out: Out = Arc::new(|frame| comm::send(&comm::world(), 0, TAG_UP, &frame));
    let server = Server::start(&cfg.local, out.clone());
    let ready = Ready {
        workers: match &server {
            Ok(s) => Ok(s.workers() as u32),
            Err(e) => Err(e.to_string()),
        },
    };
    comm::send(world, 0, TAG_START, &wire::frame(&ready, &[]));
    let mut idle = comm::Backoff::new();
    let cancel_pending = loop {
        match comm::try_recv(world, Some(0), TAG_DOWN) {
            Some((_, frame)) => {
                idle.reset();
                let Ok(s) = &server else {
                    // No local pool: only a shutdown is expected.
                    if let Some((Down::Shutdown { cancel_pending }, _)) =
                        wire::unframe::<Down>(&frame)
                    {
                        break cancel_pending;
                    }
                    continue;
                };
                if let Handled::Shutdown { cancel_pending } = s.handle(&frame) {
                    break cancel_pending;
                }
            }
            None => idle.wait(),
        }
    };
    if let Ok(s) = &server {
        s.finish(cancel_pending);
    }
    // Every job's answer was sent before `finish` returned, and MPI keeps the order of
    // messages between two ranks, so `Bye` arrives last.
    out(wire::frame(&Up::Bye, &[]));
    drop(server);
}

/// Where the results of one job go on rank 0 (a future or a map), typed.
trait Deliver: Send + Sync {
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

struct ToFuture<R>(Arc<FutureState<R>>);

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

struct ToMap<R> {
    state: Arc<MapState<R>>,
    /// Map index of the job's first item.
    start: usize,
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

struct Pending {
    rank: i32,
    remaining: usize,
    sink: Arc<dyn Deliver>,
    cancel_sent: bool,
}

/// What rank 0's handle, its two MPI threads and its futures share.
struct Shared {
    ranks: Vec<RankInfo>,
    /// Items sent to each rank and not answered yet.
    load: Vec<AtomicUsize>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    cancel_pending: AtomicBool,
    /// Serving ranks (other than 0) that said `Bye`.
    byes: Mutex<usize>,
    bye_cv: Condvar,
    stop: AtomicBool,
    /// To the sender thread: (rank, frame); rank -1 stops it.
    tx: Sender<(i32, Vec<u8>)>,
    /// Rank 0's own local pool, if it serves.
    local: OnceLock<Server>,
}

impl Shared {
    fn place(&self, rank: i32) -> impl Fn(TaskError) -> TaskError + '_ {
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
    fn handle_up(&self, rank: i32, frame: &[u8]) {
        match wire::unframe::<Up>(frame) {
            Some((Up::Results { id, first, count }, payload)) => {
                let (first, count) = (first as usize, count as usize);
                if let Some(sink) = self.answered(rank, id, count) {
                    sink.bytes(first, count, payload, &self.place(rank));
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
    fn answered(&self, rank: i32, id: u64, count: usize) -> Option<Arc<dyn Deliver>> {
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
    fn pick(&self, n: usize) -> i32 {
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
    fn send_job(
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

    fn cancel(&self, id: u64) {
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

    fn send_cancel(&self, rank: i32, id: u64) {
        if rank == 0 {
            if let Some(l) = self.local.get() {
                l.handle(&wire::frame(&Down::Cancel(id), &[]));
            }
        } else {
            let _ = self.tx.send((rank, wire::frame(&Down::Cancel(id), &[])));
        }
    }

    /// Tells ranks about maps whose consumer went away, so they skip what has not started.
    fn forward_cancellations(&self) {
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

struct Link(Weak<Shared>);

impl PoolLink for Link {
    fn cancel(&self, task_id: u64) {
        if let Some(s) = self.0.upgrade() {
            s.cancel(task_id);
        }
    }
    fn help(&self) {}
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

    fn start_root(
        cfg: MpiPoolBuilder,
        universe: mpi::environment::Universe,
        world: &mpi::topology::SimpleCommunicator,
        size: i32,
        hello: Hello,
    ) -> Result<MpiPool> {
        // 1. Every rank checks in; all must run this very build, or code offsets would
        //    point at the wrong functions.
        let mut hellos = vec![hello];
        for r in 1..size {
            let got = comm::recv_timeout(world, r, TAG_START, cfg.start_timeout);
            match got.as_deref().and_then(wire::unframe::<Hello>) {
                Some((h, _)) => hellos.push(h),
                None => {
                    // A rank that never checks in cannot be finalized with: end the job.
                    eprintln!(
                        "multiproc: MPI rank {r} did not check in within {:?}; aborting the job",
                        cfg.start_timeout
                    );
                    mpi::topology::Communicator::abort(world, 1);
                }
            }
        }
        let mine = hellos[0].build_id.clone();
        if let Some((r, h)) = hellos.iter().enumerate().find(|(_, h)| h.build_id != mine) {
            let err = Error::BinaryMismatch {
                path: format!("{} (MPI rank {r} on host {})", h.exe, h.host),
                expected: mine.clone(),
                found: h.build_id.clone(),
            };
            let msg = Start::Abort(err.to_string());
            for r in 1..size {
                comm::send(world, r, TAG_START, &wire::frame(&msg, &[]));
            }
            return Err(err);
        }
        for r in 1..size {
            comm::send(world, r, TAG_START, &wire::frame(&Start::Go, &[]));
        }
        let round_trip = (cfg.bench_pings > 0 && size > 1).then(|| {
            let mut times = Vec::with_capacity(cfg.bench_pings);
            for _ in 0..cfg.bench_pings {
                let t = Instant::now();
                comm::send(world, 1, TAG_START, &[0u8]);
                let _ = comm::recv_any_blocking(world, 1);
                times.push(t.elapsed());
            }
            times.sort();
            times[times.len() / 2]
        });

        // 2. Every rank starts its local workers (rank 0 too, if it serves).
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut ranks: Vec<RankInfo> = hellos
            .iter()
            .enumerate()
            .map(|(r, h)| RankInfo {
                rank: r as i32,
                host: h.host.clone(),
                workers: 0,
            })
            .collect();
        let shared_slot: Arc<OnceLock<Weak<Shared>>> = Arc::new(OnceLock::new());
        let slot = shared_slot.clone();
        let out: Out = Arc::new(move |frame| {
            if let Some(s) = slot.get().and_then(Weak::upgrade) {
                s.handle_up(0, &frame);
            }
        });
        let mut failures = Vec::new();
        let local = if cfg.root_serves || size == 1 {
            match Server::start(&cfg.local, out) {
                Ok(s) => {
                    ranks[0].workers = s.workers();
                    Some(s)
                }
                Err(e) => {
                    failures.push(format!("rank 0 on host {}: {e}", ranks[0].host));
                    None
                }
            }
        } else {
            None
        };
        let mut up = Vec::new();
        for r in 1..size {
            let got = comm::recv_timeout(world, r, TAG_START, cfg.start_timeout);
            match got.as_deref().and_then(wire::unframe::<Ready>) {
                Some((Ready { workers: Ok(n) }, _)) => {
                    ranks[r as usize].workers = n as usize;
                    up.push(r);
                }
                Some((Ready { workers: Err(e) }, _)) => {
                    failures.push(format!("rank {r} on host {}: {e}", ranks[r as usize].host));
                    up.push(r);
                }
                None => {
                    eprintln!(
                        "multiproc: MPI rank {r} did not start its workers within {:?}; \
                         aborting the job",
                        cfg.start_timeout
                    );
                    mpi::topology::Communicator::abort(world, 1);
                }
            }
        }
        if !failures.is_empty() {
            // Stop the ranks that did start, and wait for their goodbyes, so MPI can
            // finalize cleanly.
            let stop = wire::frame(
                &Down::Shutdown {
                    cancel_pending: true,
                },
                &[],
            );
            for &r in &up {
                comm::send(world, r, TAG_DOWN, &stop);
            }
            for &r in &up {
                loop {
                    let got = comm::recv_timeout(world, r, TAG_UP, cfg.start_timeout);
                    match got.as_deref().and_then(wire::unframe::<Up>) {
                        Some((Up::Bye, _)) => break,
                        Some(_) => continue,
                        None => mpi::topology::Communicator::abort(world, 1),
                    }
                }
            }
            if let Some(l) = local {
                l.finish(true);
            }
            return Err(Error::StartFailed(format!(
                "local workers did not start on {}",
                failures.join("; ")
            )));
        }

        // 3. Running: a receiver and a sender thread carry the frames.
        let shared = Arc::new(Shared {
            load: (0..size).map(|_| AtomicUsize::new(0)).collect(),
            ranks,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            cancel_pending: AtomicBool::new(false),
            byes: Mutex::new(0),
            bye_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            tx,
            local: OnceLock::new(),
        });
        if let Some(l) = local {
            let _ = shared.local.set(l);
        }
        let _ = shared_slot.set(Arc::downgrade(&shared));
        let mut threads = Vec::new();
        if size > 1 {
            threads.push(spawn_receiver(shared.clone())?);
            threads.push(spawn_sender(rx)?);
        }
        let link = Arc::new(Link(Arc::downgrade(&shared)));
        let weak_link: Weak<dyn PoolLink> = Arc::downgrade(&link) as _;
        Ok(MpiPool {
            shared,
            weak_link,
            _link: link,
            threads: Mutex::new(threads),
            joined: AtomicBool::new(false),
            round_trip,
            _universe: universe,
        })
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
        postcard::to_stdvec(arg).map_err(|e| Error::Serialize {
            type_name: std::any::type_name::<A>(),
            message: e.to_string(),
        })
    }
}

fn spawn_receiver(shared: Arc<Shared>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("multiproc-mpi-recv".into())
        .spawn(move || {
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

fn spawn_sender(rx: Receiver<(i32, Vec<u8>)>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("multiproc-mpi-send".into())
        .spawn(move || {
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
        let thunk = crate::sys::code::ship_task(f);
        self.shared
            .send_job(id, thunk, data, vec![0], Arc::new(ToFuture(state.clone())));
        Ok(TaskFuture::from_state(state))
    }

    fn dispatch_chunk<F, A, R>(&self, f: F, start: usize, items: Vec<A>, sink: &Arc<MapState<R>>)
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        let thunk = crate::sys::code::ship_task(f);
        let (mut data, mut offsets, mut run) = (Vec::new(), Vec::new(), start);
        let flush = |data: &mut Vec<u8>, offsets: &mut Vec<u32>, run: usize| {
            if offsets.is_empty() {
                return;
            }
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let to = Arc::new(ToMap {
                state: sink.clone(),
                start: run,
            });
            self.shared
                .send_job(id, thunk, std::mem::take(data), std::mem::take(offsets), to);
        };
        for (k, a) in items.iter().enumerate() {
            let at = data.len();
            offsets.push(at as u32);
            if let Err(e) = postcard::to_io(a, &mut data) {
                // This item fails alone; the items around it still run.
                data.truncate(at);
                offsets.pop();
                flush(&mut data, &mut offsets, run);
                sink.deliver(
                    start + k,
                    vec![Err(TaskError::Serialize {
                        index: Some(start + k),
                        type_name: std::any::type_name::<A>().into(),
                        message: e.to_string(),
                    })],
                );
                run = start + k + 1;
            }
        }
        flush(&mut data, &mut offsets, run);
    }
}
