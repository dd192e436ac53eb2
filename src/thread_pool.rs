//! `ThreadPool`: the Executor API on threads (Python's `ThreadPoolExecutor` and
//! `multiprocessing.pool.ThreadPool`). Takes capturing closures too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;

use crate::bootstrap::task::{set_quiet, take_panic};
use crate::error::{Error, Result, TaskError};
use crate::executor::{Chunksize, Executor, Imap, MapState, Payload, PoolFn, lazy_imap};
use crate::future::{Attached, FutureState, PoolLink, TaskFuture};
use crate::insights::{Insights, Slowest, WorkerInsights};

/// Runs a task; `true` means "cancelled: complete without running". A task that runs calls
/// [`Ran::record`] before it hands out its outcome.
type Task = Box<dyn FnOnce(bool, &Ran<'_>) + Send>;

enum Job {
    Run(Task),
    /// A `submit`: the call lives in its future's allocation.
    Call(Arc<dyn Submitted>),
    Stop,
}

/// A submitted call, kept in its future (`FutureState::job`) until a thread takes it.
type Call<F, A> = Mutex<Option<(F, A)>>;

impl<F: Send, A: Send> Attached for Call<F, A> {
    /// A thread pool cancels a call by taking it out: there is no pool to tell.
    fn link(&self) -> Option<&(std::sync::Weak<dyn PoolLink>, u64)> {
        None
    }
}

/// A future that holds its own call: what a thread runs for a `submit`.
trait Submitted: Send + Sync {
    /// As [`Task`]: `cancelled` means "complete without running".
    fn run(&self, cancelled: bool, ran: &Ran<'_>);
}

impl<F, A, R> Submitted for FutureState<R, Call<F, A>>
where
    F: FnOnce(A) -> R + Send + 'static,
    A: Send + 'static,
    R: Send + 'static,
{
    fn run(&self, cancelled: bool, ran: &Ran<'_>) {
        let call = self.job.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some((f, arg)) = call else { return };
        if cancelled {
            self.complete(Err(TaskError::Cancelled { index: None }));
        } else if !self.is_done() {
            self.set_running();
            let out = run_one(f, arg, None);
            ran.record(1, None);
            self.complete(out);
        }
    }
}

/// One thread's account for `insights`, written by that thread alone (relaxed loads and
/// stores, no read-modify-write: a snapshot may be a job behind, never torn). Each on its
/// own cache line (`CachePadded` in `Shared::logs`): two threads adding into one line cost
/// a cache-line transfer per task.
#[derive(Default)]
struct ThreadLog {
    tasks: AtomicU64,
    working_ns: AtomicU64,
    starting_ns: AtomicU64,
    /// Nanoseconds since the pool's epoch when the thread became ready / ended (0: not yet).
    ready_at: AtomicU64,
    ended_at: AtomicU64,
}

struct Shared {
    closed: AtomicBool,
    cancel_pending: AtomicBool,
    epoch: Instant,
    names: Vec<String>,
    logs: Vec<CachePadded<ThreadLog>>,
    slowest: Mutex<Slowest>,
    /// `slowest`'s floor, so a job faster than the fifth slowest takes no lock.
    slowest_floor: AtomicU64,
    /// Whether jobs are timed (`insights(true)`).
    timed: bool,
}

impl Shared {
    fn since_epoch(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }
}

/// A job that runs on thread `slot`, started at `t0` (timed only with `insights(true)`).
struct Ran<'a> {
    shared: &'a Shared,
    slot: usize,
    t0: Option<Instant>,
}

impl Ran<'_> {
    /// Adds the job (its `items`, the first one's map `index`) to the thread's account.
    fn record(&self, items: usize, index: Option<usize>) {
        let log = &self.shared.logs[self.slot];
        let add = |a: &AtomicU64, v: u64| a.store(a.load(Ordering::Relaxed) + v, Ordering::Relaxed);
        add(&log.tasks, items as u64);
        let Some(t0) = self.t0 else { return };
        let ns = t0.elapsed().as_nanos() as u64;
        add(&log.working_ns, ns);
        if ns > self.shared.slowest_floor.load(Ordering::Relaxed) {
            let mut s = self
                .shared
                .slowest
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            s.offer(ns, index, items, self.slot, std::process::id());
            self.shared
                .slowest_floor
                .store(s.floor_ns(), Ordering::Relaxed);
        }
    }
}

/// A pool of threads behind the [`Executor`] API.
///
/// Threads share memory, so a `ThreadPool` also accepts capturing closures and
/// non-serializable values through its own `submit`, `map` and `imap` methods. A panic in a
/// task becomes that task's [`TaskError::Panicked`]; the thread lives on.
///
/// ```
/// use multiproc::ThreadPool;
/// let offset = 10;
/// let pool = ThreadPool::new(2).unwrap();
/// let v = pool.map(move |x: i32| x + offset, vec![1, 2, 3]).unwrap();
/// assert_eq!(v, vec![11, 12, 13]);
/// ```
pub struct ThreadPool {
    tx: Sender<Job>,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
    progress: bool,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("workers", &self.workers)
            .finish()
    }
}

/// Options for a [`ThreadPool`].
pub struct ThreadPoolBuilder {
    workers: usize,
    name: String,
    initializer: Option<Arc<dyn Fn() + Send + Sync>>,
    progress: bool,
    insights: bool,
}

impl std::fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("workers", &self.workers)
            .field("name", &self.name)
            .field("initializer", &self.initializer.is_some())
            .field("progress", &self.progress)
            .field("insights", &self.insights)
            .finish()
    }
}

impl ThreadPoolBuilder {
    /// Number of threads (default: [`cpu_count`](crate::cpu_count)).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Name prefix of the threads.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Runs `f()` once in each thread before it takes tasks.
    pub fn initializer(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.initializer = Some(Arc::new(f));
        self
    }

    /// Shows a progress bar (indicatif, on stderr) on map-style calls: items done of the
    /// total, tasks per second and the ETA; the count and the rate when the input's length
    /// is unknown (`imap` over an iterator).
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Times every job for [`ThreadPool::insights`] (working and waiting time, the slowest
    /// tasks). Off by default: two clock reads per job are measurable beside a thread
    /// pool's ~0.2 µs per task. Task counts and starting times are kept either way.
    pub fn insights(mut self, on: bool) -> Self {
        self.insights = on;
        self
    }

    /// Starts the threads.
    pub fn build(self) -> Result<ThreadPool> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let names: Vec<String> = (0..self.workers)
            .map(|i| format!("{}-{i}", self.name))
            .collect();
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            cancel_pending: AtomicBool::new(false),
            epoch: Instant::now(),
            logs: (0..self.workers)
                .map(|_| CachePadded::new(ThreadLog::default()))
                .collect(),
            names: names.clone(),
            slowest: Mutex::new(Slowest::default()),
            slowest_floor: AtomicU64::new(0),
            timed: self.insights,
        });
        let mut threads = Vec::with_capacity(self.workers);
        // Each thread reports how its initializer went; a panic there is `build`'s error.
        let (init_tx, init_rx) = crossbeam_channel::unbounded::<Result<(), TaskError>>();
        let stop = |tx: Sender<Job>, threads: Vec<JoinHandle<()>>| {
            // With the sender gone, every thread's `recv` fails and it ends.
            drop(tx);
            for t in threads {
                let _ = t.join();
            }
        };
        for (i, name) in names.into_iter().enumerate() {
            let rx: Receiver<Job> = rx.clone();
            let shared = shared.clone();
            let init = self.initializer.clone();
            let init_tx = init_tx.clone();
            let asked = Instant::now();
            let t = std::thread::Builder::new().name(name).spawn(move || {
                set_quiet(true);
                let log = &shared.logs[i];
                let ended = || log.ended_at.store(shared.since_epoch(), Ordering::Relaxed);
                if let Some(init) = init {
                    let r = run_one(|()| init(), (), None);
                    let failed = r.is_err();
                    let _ = init_tx.send(r);
                    if failed {
                        log.starting_ns
                            .store(asked.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        return ended();
                    }
                }
                drop(init_tx);
                log.starting_ns
                    .store(asked.elapsed().as_nanos() as u64, Ordering::Relaxed);
                log.ready_at.store(shared.since_epoch(), Ordering::Relaxed);
                loop {
                    let job = match rx.recv() {
                        Ok(Job::Run(job)) => Ok(job),
                        Ok(Job::Call(call)) => Err(call),
                        Ok(Job::Stop) | Err(_) => break,
                    };
                    let ran = Ran {
                        shared: &shared,
                        slot: i,
                        t0: shared.timed.then(Instant::now),
                    };
                    let cancelled = shared.cancel_pending.load(Ordering::Relaxed);
                    // Tasks catch their own panics. One that gets here is a user's `Drop`
                    // run by this thread: of a cancelled call's function and argument, of
                    // a result whose future is gone, of a cancelled chunk's items. Each
                    // runs after its outcome was handed out, so only that value is lost,
                    // not the thread.
                    let run = AssertUnwindSafe(|| match job {
                        Ok(job) => job(cancelled, &ran),
                        Err(call) => call.run(cancelled, &ran),
                    });
                    if let Err(p) = catch_unwind(run) {
                        let (message, _) = take_panic(&*p);
                        eprintln!(
                            "multiproc: a value's Drop panicked on a pool thread ({message}); \
                             the thread goes on"
                        );
                    }
                }
                ended();
            });
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop(tx, threads);
                    return Err(Error::io("spawn a pool thread", e));
                }
            }
        }
        drop(init_tx);
        if self.initializer.is_some() {
            for _ in 0..self.workers {
                match init_rx.recv() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        stop(tx, threads);
                        return Err(Error::InitializerFailed(Box::new(e)));
                    }
                    Err(_) => break,
                }
            }
        }
        Ok(ThreadPool {
            tx,
            shared,
            threads: Mutex::new(threads),
            workers: self.workers,
            progress: self.progress,
        })
    }
}

fn run_one<A, R>(f: impl FnOnce(A) -> R, a: A, index: Option<usize>) -> Result<R, TaskError> {
    catch_unwind(AssertUnwindSafe(|| f(a))).map_err(|p| {
        let (message, location) = take_panic(&*p);
        TaskError::Panicked {
            index,
            message,
            location,
            pid: 0,
        }
    })
}

impl ThreadPool {
    /// A pool of `workers` threads.
    pub fn new(workers: usize) -> Result<ThreadPool> {
        ThreadPool::builder().workers(workers).build()
    }

    /// Options for a new pool.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            workers: crate::cpu_count(),
            name: "multiproc-thread".into(),
            initializer: None,
            progress: false,
            insights: false,
        }
    }

    /// Number of threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// What each thread did so far: tasks done and time starting; with
    /// [`insights(true)`](ThreadPoolBuilder::insights) also time working and waiting and
    /// the slowest tasks (two clock reads per job: a `submit`, or a chunk of a map). Threads
    /// never restart: a panic fails its task and the thread lives on.
    ///
    /// ```
    /// let pool = multiproc::ThreadPool::builder().workers(2).insights(true).build().unwrap();
    /// pool.map(|x: u64| x + 1, 0..50u64).unwrap();
    /// let insights = pool.insights();
    /// assert_eq!(insights.tasks(), 50);
    /// assert!(insights.workers.iter().all(|w| w.timed && w.restarts.is_empty()));
    /// ```
    pub fn insights(&self) -> Insights {
        let sh = &*self.shared;
        let now = sh.since_epoch();
        let workers = sh
            .logs
            .iter()
            .enumerate()
            .map(|(slot, log)| {
                let ns = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let working = ns(&log.working_ns);
                let (ready, ended) = (ns(&log.ready_at), ns(&log.ended_at));
                let until = if ended != 0 { ended } else { now };
                let alive = if ready != 0 {
                    until.saturating_sub(ready)
                } else {
                    0
                };
                WorkerInsights {
                    slot,
                    pids: vec![std::process::id()],
                    thread: Some(sh.names[slot].clone()),
                    tasks: ns(&log.tasks),
                    timed: sh.timed,
                    working: Duration::from_nanos(working),
                    waiting: Duration::from_nanos(alive.saturating_sub(working)),
                    starting: Duration::from_nanos(ns(&log.starting_ns)),
                    restarts: Vec::new(),
                }
            })
            .collect();
        let slowest = sh
            .slowest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sorted();
        Insights { workers, slowest }
    }

    fn send(&self, job: Job) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        self.tx.send(job).map_err(|_| Error::ShutDown)
    }

    /// Schedules `f(arg)`; `f` may capture anything `Send`.
    pub fn submit<F, A, R>(&self, f: F, arg: A) -> Result<TaskFuture<R>>
    where
        F: FnOnce(A) -> R + Send + 'static,
        A: Send + 'static,
        R: Send + 'static,
    {
        let state = FutureState::<R, Call<F, A>>::with_job(None, Mutex::new(Some((f, arg))));
        self.send(Job::Call(state.clone()))?;
        Ok(TaskFuture::from_state(state))
    }

    fn dispatch<F, A, R>(
        &self,
        f: &Arc<F>,
        start: usize,
        items: &mut Vec<A>,
        sink: &Arc<MapState<R>>,
    ) where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
    {
        let (f, sink2) = (f.clone(), sink.clone());
        let items = std::mem::take(items);
        let n = items.len();
        let job = Box::new(move |cancelled: bool, ran: &Ran<'_>| {
            let out = if cancelled || sink2.is_cancelled() {
                (0..n)
                    .map(|i| {
                        Err(TaskError::Cancelled {
                            index: Some(start + i),
                        })
                    })
                    .collect()
            } else {
                let f = &*f;
                let out = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| run_one(f, a, Some(start + i)))
                    .collect();
                ran.record(n, Some(start));
                out
            };
            sink2.deliver(start, out);
        });
        if self.send(Job::Run(job)).is_err() {
            let reason = "the pool is shut down".to_string();
            sink.deliver(
                start,
                (0..n)
                    .map(|i| {
                        Err(TaskError::PoolClosed {
                            index: Some(start + i),
                            reason: reason.clone(),
                        })
                    })
                    .collect(),
            );
        }
    }

    fn imap_arc<'a, F, A, R, It>(
        &'a self,
        f: F,
        iter: It,
        chunksize: Chunksize,
        ordered: bool,
    ) -> Imap<'a, R>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        It: Iterator<Item = A> + 'a,
    {
        let f = Arc::new(f);
        lazy_imap(
            iter,
            chunksize,
            ordered,
            self.workers,
            self.progress,
            move |start, items, sink| self.dispatch(&f, start, items, sink),
        )
    }

    /// Lazily applies `f` to every item; outcomes in input order.
    pub fn imap<F, A, R, I>(&self, f: F, iter: I) -> Imap<'_, R>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
    {
        self.imap_arc(f, iter.into_iter(), Chunksize::Auto, true)
    }

    /// Lazily applies `f` to every item; outcomes as they finish.
    pub fn imap_unordered<F, A, R, I>(&self, f: F, iter: I) -> Imap<'_, R>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
    {
        self.imap_arc(f, iter.into_iter(), Chunksize::Auto, false)
    }

    /// Applies `f` to every item: results in input order, or the first error.
    pub fn map<F, A, R, I>(&self, f: F, iter: I) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = iter.into_iter().collect();
        let mut out = Vec::with_capacity(items.len());
        self.imap_arc(f, items.into_iter(), Chunksize::Auto, true)
            .take_all_into(&mut out)?;
        Ok(out)
    }

    /// Stops accepting tasks. With `cancel_pending`, tasks not yet started complete as
    /// `Cancelled`; with `wait`, returns once every thread has finished.
    pub fn shutdown(&self, wait: bool, cancel_pending: bool) {
        if cancel_pending {
            self.shared.cancel_pending.store(true, Ordering::Relaxed);
        }
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            for _ in 0..self.workers {
                let _ = self.tx.send(Job::Stop);
            }
        }
        if wait {
            let threads = std::mem::take(&mut *self.threads.lock().unwrap());
            for t in threads {
                let _ = t.join();
            }
        }
    }

    /// Python's `Pool.close()`: stops taking tasks; those already submitted still run.
    /// Then [`join`](ThreadPool::join) waits for them. (The same as `shutdown(false, false)`.)
    ///
    /// ```
    /// let pool = multiproc::ThreadPool::new(2).unwrap();
    /// let fut = pool.submit(|x: u32| x * 2, 21).unwrap();
    /// pool.close();
    /// assert!(pool.submit(|x: u32| x, 1).is_err());
    /// pool.join().unwrap();
    /// assert!(fut.done());
    /// ```
    pub fn close(&self) {
        self.shutdown(false, false)
    }

    /// Python's `Pool.join()`: waits until every task has finished and every thread has
    /// ended. Only after [`close`](ThreadPool::close) or
    /// [`terminate`](ThreadPool::terminate), as in Python; otherwise an
    /// [`Error::InvalidArgument`] (joining a running pool would wait forever).
    pub fn join(&self) -> Result<()> {
        if !self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument(
                "the pool is still running: call close() or terminate() before join()".into(),
            ));
        }
        self.shutdown(true, false);
        Ok(())
    }

    /// Cancels every pending task and stops (threads cannot be killed: running tasks
    /// finish first).
    pub fn terminate(&self) {
        self.shutdown(true, true)
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

impl Executor for ThreadPool {
    fn workers(&self) -> usize {
        self.workers
    }

    fn progress(&self) -> bool {
        self.progress
    }

    fn submit<F, A, R>(&self, f: F, arg: A) -> Result<TaskFuture<R>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        ThreadPool::submit(self, f, arg)
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
        self.dispatch(&Arc::new(f), start, items, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of the one allocation a `submit` of `f` makes: its future's state with the call
    /// inside, and the `Arc`'s two counts.
    fn allocation<F: FnOnce(A) -> R, A, R>(_: &F) -> usize {
        std::mem::size_of::<FutureState<R, Call<F, A>>>() + 2 * std::mem::size_of::<usize>()
    }

    /// glibc frees a block of up to 120 requested bytes from any thread without the arena
    /// lock of the thread that allocated it (see `FutureState`): a small task's allocation
    /// must stay within that, also for a `String` in and out.
    #[test]
    fn a_submitted_call_fits_in_a_fast_bin() {
        fn ident(x: u64) -> u64 {
            x
        }
        fn shout(s: String) -> String {
            s.to_uppercase()
        }
        assert!(allocation(&ident) <= 120, "{} bytes", allocation(&ident));
        assert!(allocation(&shout) <= 120, "{} bytes", allocation(&shout));
        let captured = 7u64;
        let closure = move |x: u64| x + captured;
        assert!(
            allocation(&closure) <= 120,
            "{} bytes",
            allocation(&closure)
        );
    }
}
