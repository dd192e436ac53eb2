//! `ProcessPool`: the Executor API on worker processes (Python's `multiprocessing.Pool`
//! and `ProcessPoolExecutor`), where a task that crashes costs one worker, never the pool.

mod bell;
mod dispatcher;
pub(crate) mod layout;
pub(crate) mod sink;
mod worker;

pub(crate) use worker::test_corrupt_result_ring;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::bell::Bell;
use self::dispatcher::{Dispatcher, Job, Msg, Slot, start_worker};
use self::layout::*;
use crate::bootstrap::{Child, StartMethod};
use crate::error::{Error, Result, TaskError};
use crate::executor::{Executor, MapState, Payload, PoolFn};
use crate::future::{FutureState, PoolLink, TaskFuture};
use crate::sys::{AbortIfPanic, SharedMapping};

/// Options fixed when the pool is built.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub workers: usize,
    pub start_method: StartMethod,
    pub task_timeout: Option<Duration>,
    pub max_tasks_per_child: Option<u64>,
    pub memory_limit: Option<u64>,
    pub retries: u32,
    pub initializer: Option<(i64, Vec<u8>)>,
    /// Fds of the connections/queues inside the initializer's argument (see `wire::fdctx`);
    /// each worker gets duplicates.
    pub initializer_fds: Vec<std::sync::Arc<std::os::fd::OwnedFd>>,
    pub executable: Option<PathBuf>,
    pub progress: bool,
    pub start_timeout: Duration,
}

/// What the pool's handle and its dispatcher share.
pub(crate) struct Inner {
    pub cfg: Config,
    pub map: Arc<SharedMapping>,
    pub bell: Bell,
    pub tx: Sender<Msg>,
    pub rx: Receiver<Msg>,
    pub next_id: AtomicU64,
    /// Per slot: a replacement worker is starting (the dispatcher must wake when it is ready).
    pub awaiting: Vec<AtomicBool>,
    closed: AtomicBool,
}

impl Inner {
    /// The count of callers collecting results themselves (`POOL_HELPERS`).
    fn helpers(&self) -> &std::sync::atomic::AtomicU32 {
        self.map.atomic_u32(POOL_HELPERS)
    }

    pub(crate) fn send(&self, msg: Msg) -> Result<()> {
        self.tx.send(msg).map_err(|_| Error::ShutDown)?;
        self.bell.ring();
        Ok(())
    }

    /// Whether the dispatcher has anything to do: a message, a result, or a replacement
    /// worker that became ready. Checked before it sleeps, without its lock.
    fn has_work(&self) -> bool {
        !self.rx.is_empty()
            || (0..self.cfg.workers).any(|i| {
                crate::ring::spsc::has_data_at(&*self.map, result_ring(i), RING_CAP)
                    || (self.awaiting[i].load(Ordering::Relaxed)
                        && self
                            .map
                            .atomic_u32(slot_base(i) + STATE)
                            .load(Ordering::Acquire)
                            != STATE_STARTING)
            })
    }
}

/// What futures hold (weakly) to reach their pool.
struct Link {
    inner: Arc<Inner>,
    core: Arc<Mutex<Dispatcher>>,
}

impl PoolLink for Link {
    fn cancel(&self, task_id: u64) {
        let _ = self.inner.send(Msg::Cancel(task_id));
    }

    fn help(&self) {
        if self.inner.has_work() {
            self.try_round(&mut None);
        }
    }

    fn start_helping(&self) {
        let cpu = self.inner.map.atomic_u32(POOL_HELPER_CPU);
        cpu.store(crate::sys::sched::current_cpu(), Ordering::Relaxed);
        Bell::start_helping(self.inner.helpers());
    }

    fn stop_helping(&self) {
        let inner = &self.inner;
        inner
            .bell
            .stop_helping(inner.helpers(), || inner.has_work());
    }
}

impl Link {
    /// Runs a dispatcher round on this thread unless another thread is running one,
    /// taking `job` first (after the messages already sent, so order holds; it stays in
    /// `job` if the round did not run): then the round only places it, collecting nothing
    /// (`Dispatcher::place_round`). Returns the round's timeout (`Some` while something
    /// must be watched: task timeouts, closing), or `None` when it did not run.
    fn try_round(&self, job: &mut Option<Job>) -> Option<Option<Duration>> {
        let mut d = self.core.try_lock().ok()?;
        let guard = AbortIfPanic("a process pool's dispatcher round");
        let timeout = match job.take() {
            Some(job) => {
                d.intake();
                d.take(Msg::Job(job));
                d.place_round()
            }
            None => d.round().1,
        };
        guard.disarm();
        Some(timeout)
    }
}

/// The dispatcher's spin before it sleeps: `spin_loop` hints only, no yields. A yielding
/// dispatcher on a CPU it shares with the caller and a worker (a pinned pool, and its
/// short slice makes it so more often) stays awake and takes two turns per round trip from
/// them: `multiproc bench --filter pool.roundtrip` 18–20 µs with 300 rounds (64 hints, then
/// yields), 9.2–9.3 with these 64. Callers and workers help meanwhile: the dispatcher need
/// not catch the next task itself.
const DISPATCHER_SPIN: u32 = 64;

/// The dispatcher thread: rounds of work, sleeping on the pool bell when there is none.
/// Callers waiting on a future run rounds too (see `Link::help`).
///
/// Every call into user code inside a round (decoding results, done-callbacks) catches its
/// own panics, so the lock is never poisoned by user code; a panic of the dispatcher's own
/// code aborts loudly (`AbortIfPanic`) instead of leaving every caller hanging.
fn dispatcher_loop(inner: Arc<Inner>, core: Arc<Mutex<Dispatcher>>) {
    loop {
        let (progress, timeout) = {
            let mut d = core.lock().unwrap();
            let guard = AbortIfPanic("a process pool's dispatcher round");
            let r = d.round();
            let finished = d.finished();
            guard.disarm();
            if finished {
                return;
            }
            r
        };
        if !progress {
            inner
                .bell
                .wait(DISPATCHER_SPIN, timeout, || inner.has_work());
        }
    }
}

/// A pool of worker processes behind the [`Executor`] API.
///
/// Each worker is a process of this same program, so a task that panics, aborts,
/// segfaults, exits, runs out of memory or runs past its timeout costs only itself: its
/// future gets a precise [`TaskError`], a fresh worker replaces the old one, and every other
/// task completes. Workers die with the program, even when it is SIGKILLed.
///
/// The program must call [`init`](crate::init) first thing in `main` (or, in a test file,
/// use [`test_support!`](crate::test_support)).
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Executor, ProcessPool};
/// fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
/// let pool = ProcessPool::new(2).unwrap();
/// assert_eq!(pool.submit(fib, 20).unwrap().result().unwrap(), 6765);
/// assert_eq!(pool.map(fib, 0..8).unwrap(), vec![0, 1, 1, 2, 3, 5, 8, 13]);
/// ```
pub struct ProcessPool {
    inner: Arc<Inner>,
    /// Keeps the link alive; futures hold `weak_link`.
    _link: Arc<Link>,
    weak_link: std::sync::Weak<dyn PoolLink>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    pids: Vec<u32>,
}

impl std::fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("workers", &self.inner.cfg.workers)
            .finish()
    }
}

/// Options for a [`ProcessPool`]; see [`ProcessPool::builder`].
#[derive(Debug)]
pub struct ProcessPoolBuilder {
    cfg: Config,
    init_error: Option<Error>,
}

impl ProcessPoolBuilder {
    /// Number of worker processes (default: [`cpu_count`](crate::cpu_count)).
    pub fn workers(mut self, n: usize) -> Self {
        self.cfg.workers = n.max(1);
        self
    }

    /// How workers start (default [`StartMethod::ForkServer`]).
    pub fn start_method(mut self, m: StartMethod) -> Self {
        self.cfg.start_method = m;
        self
    }

    /// Runs `f(arg)` once in every worker before it takes tasks. If it panics (or fails
    /// otherwise), `build` returns [`Error::InitializerFailed`] and no process is left.
    pub fn initializer<F, A>(mut self, f: F, arg: A) -> Self
    where
        F: Fn(A) + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
    {
        // Queues and connections in `arg` travel as fds with each worker's start request.
        // Framed like every task argument (the worker runs it through the same thunk); the
        // user's `Serialize` may panic, which `encode_framed` turns into an error.
        let (bytes, fds) = crate::wire::fdctx::collect_fds(|| {
            let mut v = Vec::new();
            crate::bootstrap::task::encode_framed(&arg, &mut v).map(|_| v)
        });
        match bytes {
            Ok(_) if fds.len() > crate::wire::fdctx::MAX_CHILD_FDS - 2 => {
                self.init_error = Some(Error::InvalidArgument(format!(
                    "an initializer argument can carry at most {} queues or connections",
                    crate::wire::fdctx::MAX_CHILD_FDS - 2
                )))
            }
            Ok(bytes) => {
                self.cfg.initializer = Some((crate::bootstrap::ship_task(f), bytes));
                self.cfg.initializer_fds = fds.into_iter().map(std::sync::Arc::new).collect();
            }
            Err(message) => {
                self.init_error = Some(Error::Serialize {
                    type_name: std::any::type_name::<A>(),
                    message,
                })
            }
        }
        self
    }

    /// Kills a task's worker when the task runs longer than this; the task fails with
    /// [`TaskError::TimedOut`] and a fresh worker takes over.
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.cfg.task_timeout = Some(d);
        self
    }

    /// Replaces each worker after it has run this many tasks (leaky native code).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.cfg.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// Caps each worker's address space (`RLIMIT_AS`). A task whose allocation fails past
    /// it fails with [`TaskError::MemoryLimit`]; any other abort (the task's own `abort()`,
    /// a C `assert`) is [`TaskError::WorkerDied`]. An allocation failure in C code that
    /// then aborts is also `WorkerDied`: only Rust's allocation-failure path is recognised.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.cfg.memory_limit = Some(bytes);
        self
    }

    /// Runs a task again, up to `n` times, when its worker died under it (not for
    /// timeouts, cancellation or panics).
    pub fn retries(mut self, n: u32) -> Self {
        self.cfg.retries = n;
        self
    }

    /// Shows a progress bar (indicatif, on stderr) on map-style calls: items done of the
    /// total, tasks per second and the ETA; the count and the rate when the input's length
    /// is unknown (`imap` over an iterator).
    pub fn progress(mut self, on: bool) -> Self {
        self.cfg.progress = on;
        self
    }

    /// Runs workers from another executable (Python's `set_executable`). It must be the very
    /// same build; otherwise `build` fails with [`Error::BinaryMismatch`].
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.cfg.executable = Some(path.into());
        self
    }

    /// Starts the workers and waits until each is ready (its initializer done).
    pub fn build(self) -> Result<ProcessPool> {
        if let Some(e) = self.init_error {
            return Err(e);
        }
        ProcessPool::start(self.cfg)
    }
}

impl ProcessPool {
    /// A pool of `workers` processes with default options.
    pub fn new(workers: usize) -> Result<ProcessPool> {
        ProcessPool::builder().workers(workers).build()
    }

    /// Options for a new pool.
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            cfg: Config {
                workers: crate::cpu_count(),
                start_method: StartMethod::default(),
                task_timeout: None,
                max_tasks_per_child: None,
                memory_limit: None,
                retries: 0,
                initializer: None,
                initializer_fds: Vec::new(),
                executable: None,
                progress: false,
                start_timeout: Duration::from_secs(30),
            },
            init_error: None,
        }
    }

    fn start(cfg: Config) -> Result<ProcessPool> {
        let n = cfg.workers;
        // Sealed: a worker must not be able to resize what the parent maps.
        let memfd = crate::sys::mem::sealed_memfd("multiproc-pool", total_size(n) as u64)?;
        let map = Arc::new(SharedMapping::map(&memfd, total_size(n))?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let inner = Arc::new(Inner {
            bell: Bell::new(map.clone(), POOL_BELL),
            map: map.clone(),
            tx: tx.clone(),
            rx,
            awaiting: (0..n).map(|_| AtomicBool::new(false)).collect(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            cfg,
        });
        let mut started: Vec<(Child, OwnedFd)> = Vec::with_capacity(n);
        // When each worker was asked for (`insights`' starting time).
        let mut spawned = Vec::with_capacity(n);
        let cleanup = |started: &[(Child, OwnedFd)]| {
            for (c, _) in started {
                let _ = c.signal(libc::SIGKILL);
            }
            for (c, _) in started {
                c.wait();
            }
        };
        for i in 0..n {
            spawned.push(worker::now_ns());
            match start_worker(&inner.cfg, &map, &memfd, &tx, i, 0) {
                Ok(x) => started.push(x),
                Err(e) => {
                    cleanup(&started);
                    return Err(e);
                }
            }
        }
        if let Err(e) = Self::await_ready(&inner, &started) {
            cleanup(&started);
            return Err(e);
        }
        let pids = started.iter().map(|(c, _)| c.pid()).collect();
        let slots: Vec<Slot> = started
            .into_iter()
            .enumerate()
            .map(|(i, (c, s))| Slot::new(&map, i, c, s, spawned[i]))
            .collect();
        let core = Arc::new(Mutex::new(Dispatcher::new(inner.clone(), slots, memfd)));
        let link = Arc::new(Link {
            inner: inner.clone(),
            core: core.clone(),
        });
        let i2 = inner.clone();
        let handle = std::thread::Builder::new()
            .name("multiproc-dispatcher".into())
            .spawn(move || {
                // It passes results on to sleeping callers: see `sys::sched`.
                crate::sys::sched::short_slices();
                dispatcher_loop(i2, core)
            })
            .map_err(|e| Error::io("spawn the dispatcher thread", e))?;
        let weak_link: std::sync::Weak<dyn PoolLink> = Arc::downgrade(&link) as _;
        Ok(ProcessPool {
            inner,
            _link: link,
            weak_link,
            dispatcher: Mutex::new(Some(handle)),
            pids,
        })
    }

    /// Waits until every worker reports ready, or one fails or dies.
    fn await_ready(inner: &Inner, started: &[(Child, OwnedFd)]) -> Result<()> {
        let deadline = Instant::now() + inner.cfg.start_timeout;
        let state = |i: usize| {
            inner
                .map
                .atomic_u32(slot_base(i) + STATE)
                .load(Ordering::Acquire)
        };
        loop {
            let mut all = true;
            for (i, (c, _)) in started.iter().enumerate() {
                match state(i) {
                    STATE_READY => {}
                    STATE_INIT_FAILED => {
                        let mut buf = Vec::new();
                        let ring = crate::ring::spsc::Ring::new(
                            inner.map.clone(),
                            result_ring(i),
                            RING_CAP,
                        );
                        let err = match ring.pop(&mut buf) {
                            Some(K_INIT_FAILED) => postcard::from_bytes::<TaskError>(&buf).ok(),
                            _ => None,
                        };
                        let err = err.unwrap_or(TaskError::PoolClosed {
                            index: None,
                            reason: "the initializer failed".into(),
                        });
                        return Err(Error::InitializerFailed(Box::new(err)));
                    }
                    _ => {
                        if let Some(st) = c.status() {
                            return Err(Error::StartFailed(format!(
                                "worker {} {st} before it was ready{}",
                                c.pid(),
                                if inner.cfg.memory_limit.is_some() {
                                    " (is the memory limit too low?)"
                                } else {
                                    ""
                                }
                            )));
                        }
                        all = false;
                    }
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::StartFailed(format!(
                    "workers not ready after {:?}",
                    inner.cfg.start_timeout
                )));
            }
            inner.bell.wait(200, Some(Duration::from_millis(10)), || {
                (0..started.len()).all(|i| state(i) != STATE_STARTING)
            });
        }
    }

    /// What each worker did so far: tasks done, time working, waiting and starting,
    /// restarts and their causes, and the slowest tasks (mpire's worker insights). Costs
    /// nothing while tasks run: the dispatcher adds up the times workers already report.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// use multiproc::{Executor, ProcessPool, RestartCause};
    /// fn id(x: u32) -> u32 { x }
    /// let pool = ProcessPool::builder().workers(1).max_tasks_per_child(2).build().unwrap();
    /// pool.map(id, 0..4u32).unwrap();
    /// pool.close();
    /// pool.join().unwrap();
    /// let w = &pool.insights().workers[0];
    /// assert_eq!(w.tasks, 4);
    /// assert!(w.restarts.iter().all(|r| r.cause == RestartCause::MaxTasksPerChild));
    /// assert!(!w.restarts.is_empty());
    /// ```
    pub fn insights(&self) -> crate::Insights {
        self._link.core.lock().unwrap().insights()
    }

    /// Pids of the workers the pool started with (replacements get new pids).
    pub fn initial_pids(&self) -> &[u32] {
        &self.pids
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::ShutDown)
        } else {
            Ok(())
        }
    }

    /// Schedules `f(arg)` in a worker. An argument that fails to serialize is an error
    /// here, before anything is sent. (Not an inherent `submit`: that would shadow
    /// [`Executor::submit`] and make `use multiproc::Executor` look unused.)
    fn submit_one<F, A, R>(&self, f: F, arg: A) -> Result<TaskFuture<R>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        self.check_open()?;
        let mut data = Vec::with_capacity(crate::executor::encoded_room::<A>(1));
        crate::bootstrap::task::encode_framed(&arg, &mut data).map_err(|message| {
            Error::Serialize {
                type_name: std::any::type_name::<A>(),
                message,
            }
        })?;
        if let Some(message) = crate::executor::debug_check_decodes::<A>(&data[4..]) {
            return Err(Error::Serialize {
                type_name: std::any::type_name::<A>(),
                message,
            });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let state = FutureState::<R>::new(None);
        state.set_link(self.weak_link.clone(), id);
        let job = Job {
            id,
            thunk: crate::bootstrap::ship_task(f),
            data,
            count: 1,
            start: 0,
            sink: state.clone(),
            attempts: 0,
        };
        self.send_job(job)?;
        Ok(TaskFuture::from_state(state))
    }

    fn dispatch<F, A, R>(&self, f: F, start: usize, items: &[A], sink: &Arc<MapState<R>>)
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        let thunk = crate::bootstrap::ship_task(f);
        crate::executor::encode_chunk(items, start, sink, |data, offsets, first| {
            let job = Job {
                id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
                thunk,
                data,
                count: offsets.len(),
                start: first,
                sink: sink.clone(),
                attempts: 0,
            };
            let n = job.count;
            if self.check_open().is_err() || self.inner.tx.send(Msg::Job(job)).is_err() {
                let why = "the pool is shut down".to_string();
                sink.deliver(
                    first,
                    (0..n)
                        .map(|k| {
                            Err(TaskError::PoolClosed {
                                index: Some(first + k),
                                reason: why.clone(),
                            })
                        })
                        .collect(),
                );
            }
        });
        self.inner.bell.ring();
    }

    /// Queues a job whose function and arguments are already encoded (`count` items, each
    /// framed with its length, in `data`, numbered from 0): how an MPI rank runs the work
    /// another rank shipped.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn submit_encoded(
        &self,
        thunk: i64,
        data: Vec<u8>,
        count: usize,
        sink: Arc<dyn sink::ByteSink>,
    ) -> Result<()> {
        self.check_open()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (start, attempts) = (0, 0);
        let job = Job {
            id,
            thunk,
            data,
            count,
            start,
            sink,
            attempts,
        };
        self.send_job(job)
    }

    /// Hands a job to the dispatcher. While the dispatcher's thread sleeps, this thread
    /// runs the round that places the job, and hands it over under the lock rather than
    /// through the channel: waking that thread would cost a system call here and a wake-up
    /// there (tens of µs on a small VM), more than a short task. The bell still rings when
    /// the round leaves something to watch (a task timeout, a close): a sleeping
    /// dispatcher does not know of the new deadline. A job the round could not place waits
    /// for what frees room (a result, a worker turning ready), and each of those rings.
    fn send_job(&self, job: Job) -> Result<()> {
        let mut job = Some(job);
        // A round that ran took the job; one that left a deadline to watch still rings.
        if self.inner.bell.has_sleeper() && self._link.try_round(&mut job) == Some(None) {
            return Ok(());
        }
        if let Some(job) = job {
            self.inner
                .tx
                .send(Msg::Job(job))
                .map_err(|_| Error::ShutDown)?;
        }
        self.inner.bell.ring();
        Ok(())
    }

    /// Stops taking tasks. With `cancel_pending`, tasks not yet started fail as
    /// `Cancelled`; running ones finish. With `wait`, returns once every worker has exited.
    pub fn shutdown(&self, wait: bool, cancel_pending: bool) {
        let first = !self.inner.closed.swap(true, Ordering::AcqRel);
        if first || cancel_pending {
            let _ = self.inner.send(Msg::Shutdown { cancel_pending });
        }
        if wait {
            self.join_dispatcher();
        }
    }

    /// Python's `Pool.close()`: stops taking tasks; those already submitted still run.
    /// Then [`join`](ProcessPool::join) waits for them and for the workers to exit. (The
    /// same as `shutdown(false, false)`.)
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// use multiproc::{Executor, Pool};
    /// fn double(x: u32) -> u32 { x * 2 }
    /// let pool = Pool::new(2).unwrap();
    /// let fut = pool.submit(double, 21).unwrap();
    /// pool.close();
    /// assert!(pool.submit(double, 1).is_err());
    /// pool.join().unwrap();
    /// assert_eq!(fut.result().unwrap(), 42);
    /// ```
    pub fn close(&self) {
        self.shutdown(false, false)
    }

    /// Python's `Pool.join()`: waits until every task has finished and every worker has
    /// exited. Only after [`close`](ProcessPool::close) or
    /// [`terminate`](ProcessPool::terminate), as in Python; otherwise an
    /// [`Error::InvalidArgument`] (joining a running pool would wait forever).
    pub fn join(&self) -> Result<()> {
        if !self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument(
                "the pool is still running: call close() or terminate() before join()".into(),
            ));
        }
        self.join_dispatcher();
        Ok(())
    }

    /// Kills every worker now: running and pending tasks fail with
    /// [`TaskError::PoolClosed`]. Returns once every worker has exited.
    pub fn terminate(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _ = self.inner.send(Msg::Terminate);
        self.join_dispatcher();
    }

    fn join_dispatcher(&self) {
        let h = self.dispatcher.lock().unwrap().take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }
}

impl Drop for ProcessPool {
    /// Finishes every submitted task, then stops and reaps every worker.
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl Executor for ProcessPool {
    fn workers(&self) -> usize {
        self.inner.cfg.workers
    }

    fn progress(&self) -> bool {
        self.inner.cfg.progress
    }

    fn submit<F, A, R>(&self, f: F, arg: A) -> Result<TaskFuture<R>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        crate::sys::code::assert_shippable!(F);
        self.submit_one(f, arg)
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
        self.dispatch(f, start, items, sink)
    }
}
