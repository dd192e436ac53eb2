//! `TaskFuture`: the handle `submit` returns, and the free functions `wait` and
//! `as_completed` (Python's `concurrent.futures.Future`, `wait`, `as_completed`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::bootstrap::task::catch_loud;
use crate::error::{Error, TaskError};
use crate::sys::wait::Backoff;
use crate::sys::{EventCount, Spin};

/// A waiter's spin before it sleeps (bounded in time too: `sys::wait`).
const SPIN: Spin = Spin {
    spins: 200,
    rounds: 2000,
    grow: false,
};

const PENDING: u32 = 0;
const DONE: u32 = 1;
/// Done, and callbacks are running with the outcome: a thread that wants to take it waits
/// until they have finished (the callback's own thread gets an error instead of a deadlock).
const DELIVERING: u32 = 2;

/// What the outcome is, readable without a lock (also while callbacks run).
const OUT_NONE: u32 = 0;
const OUT_OK: u32 = 1;
const OUT_ERR: u32 = 2;
const OUT_CANCELLED: u32 = 3;

type Callback<R> = Box<dyn FnOnce(&Result<R, TaskError>) + Send>;

/// The pool behind a future, for what only it can do.
pub(crate) trait PoolLink: Send + Sync {
    /// Stops a task that may be running (a process pool kills the worker). Called after
    /// the future already reports `Cancelled`.
    fn cancel(&self, task_id: u64);
    /// Does a round of the pool's own work on this thread, if nobody else is: a waiting
    /// caller that collects its own result saves a cross-CPU wake-up.
    fn help(&self);
    /// A caller starts spinning on a future and will [`help`](Self::help) while it does:
    /// the pool need not wake its own thread for results meanwhile.
    fn start_helping(&self) {}
    /// That caller stops spinning (done, or going to sleep): the pool's own thread must
    /// see to whatever it left.
    fn stop_helping(&self) {}
}

/// A caller spinning on a future, announced to its pool for as long as this lives.
struct Helping<'a>(&'a dyn PoolLink);

impl<'a> Helping<'a> {
    fn new(link: &'a dyn PoolLink) -> Helping<'a> {
        link.start_helping();
        Helping(link)
    }
}

impl Drop for Helping<'_> {
    fn drop(&mut self) {
        self.0.stop_helping();
    }
}

/// What a future's allocation holds beside its outcome ([`FutureState::job`]): a thread
/// pool's submitted call, or the link to the pool that runs the task elsewhere.
pub(crate) trait Attached: Send + Sync {
    /// The pool to tell of a cancel, and the task's id there.
    fn link(&self) -> Option<&(Weak<dyn PoolLink>, u64)>;
}

/// The job of a task that runs elsewhere (a process pool, MPI, a `map_async`): its link,
/// set once when it is submitted.
pub(crate) type Linked = OnceLock<(Weak<dyn PoolLink>, u64)>;

impl Attached for Linked {
    fn link(&self) -> Option<&(Weak<dyn PoolLink>, u64)> {
        self.get()
    }
}

/// The outcome and callbacks of one task.
///
/// User code (done-callbacks, wakers, a dropped `R`) never runs under `inner`:
/// a callback gets the outcome while it is moved out of the slot (`Slot::Delivering`), so it
/// may call anything on this future, or on the pool, without deadlocking or poisoning.
///
/// Kept small: a thread pool's task is freed by whichever thread lets go of it last, often
/// not the one that allocated it, and glibc frees a block of up to 128 bytes from another
/// thread without taking the allocating thread's arena lock (its fast bins). Larger blocks
/// take that lock on every free, against the submitter's allocations: the bare channel pool
/// of `multiproc bench` costs 0.16 µs per task with 120-byte jobs and 0.42 with 232-byte
/// ones, which is what this state was. So the rarely used parts (callbacks, a waker) and an
/// error are boxed; `thread_pool`'s `a_submitted_call_fits_in_a_fast_bin` holds the line.
pub(crate) struct FutureState<R, J: ?Sized = Linked> {
    state: AtomicU32,
    /// The event count waiters sleep on (`seq`, `sleepers`): notified on every state change.
    seq: AtomicU32,
    sleepers: AtomicU32,
    outcome: AtomicU32,
    /// The outcome and what waits for it, under one lock (a task's completion takes it
    /// once).
    inner: Mutex<Inner<R>>,
    /// The task's index in its `map`, plus one (8 bytes, not the 16 of an `Option<usize>`).
    index_1: Option<std::num::NonZeroUsize>,
    /// A worker took the task (see [`TaskFuture::running`]).
    running: std::sync::atomic::AtomicBool,
    /// What runs to complete it, in the same allocation: a thread pool's submitted call
    /// (one allocation per task, not two); elsewhere the pool's link ([`Linked`]).
    pub(crate) job: J,
}

/// The type of [`FutureState::job`] a [`TaskFuture`] sees: any.
pub(crate) type AnyJob = dyn Attached;

enum Slot<R> {
    Empty,
    /// The outcome (an error boxed: most tasks succeed, and it is large).
    Value(R),
    Failed(Box<TaskError>),
    /// Moved out to the named thread, which runs callbacks with it and puts it back.
    Delivering(ThreadId),
    Taken,
}

impl<R> Slot<R> {
    fn ready(r: Result<R, TaskError>) -> Slot<R> {
        match r {
            Ok(v) => Slot::Value(v),
            Err(e) => Slot::Failed(Box::new(e)),
        }
    }

    /// The outcome, if the slot holds one (then it is left `Taken`).
    fn take_ready(&mut self) -> Option<Result<R, TaskError>> {
        match std::mem::replace(self, Slot::Taken) {
            Slot::Value(v) => Some(Ok(v)),
            Slot::Failed(e) => Some(Err(*e)),
            other => {
                *self = other;
                None
            }
        }
    }
}

struct Inner<R> {
    slot: Slot<R>,
    /// Done-callbacks and an async waker, allocated when the first one comes.
    waiting: Option<Box<Waiting<R>>>,
}

struct Waiting<R> {
    callbacks: Vec<Callback<R>>,
    waker: Option<Waker>,
}

impl<R> Inner<R> {
    fn waiting(&mut self) -> &mut Waiting<R> {
        self.waiting.get_or_insert_with(|| {
            Box::new(Waiting {
                callbacks: Vec::new(),
                waker: None,
            })
        })
    }

    fn has_callbacks(&self) -> bool {
        self.waiting
            .as_ref()
            .is_some_and(|w| !w.callbacks.is_empty())
    }

    fn take_callbacks(&mut self) -> Vec<Callback<R>> {
        self.waiting
            .as_mut()
            .map(|w| std::mem::take(&mut w.callbacks))
            .unwrap_or_default()
    }

    fn take_waker(&mut self) -> Option<Waker> {
        self.waiting.as_mut().and_then(|w| w.waker.take())
    }
}

/// What taking the outcome found.
enum Took<R> {
    Value(Result<R, TaskError>),
    AlreadyTaken,
    /// Asked from inside one of this future's own callbacks.
    OwnCallback,
    TimedOut,
}

fn outcome_of<R>(r: &Result<R, TaskError>) -> u32 {
    match r {
        Ok(_) => OUT_OK,
        Err(TaskError::Cancelled { .. }) => OUT_CANCELLED,
        Err(_) => OUT_ERR,
    }
}

fn run_callbacks<R>(cbs: Vec<Callback<R>>, r: &Result<R, TaskError>) {
    for cb in cbs {
        catch_loud("done-callback", || cb(r));
    }
}

impl<R> FutureState<R> {
    /// A pending future of a task that runs elsewhere (its link is set once submitted).
    pub(crate) fn new(index: Option<usize>) -> Arc<FutureState<R>> {
        FutureState::with_job(index, OnceLock::new())
    }

    pub(crate) fn set_link(&self, link: Weak<dyn PoolLink>, id: u64) {
        let _ = self.job.set((link, id));
    }
}

impl<R, J> FutureState<R, J> {
    /// A pending future whose allocation also holds `job`.
    pub(crate) fn with_job(index: Option<usize>, job: J) -> Arc<FutureState<R, J>> {
        Arc::new(FutureState {
            state: AtomicU32::new(PENDING),
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            outcome: AtomicU32::new(OUT_NONE),
            inner: Mutex::new(Inner {
                slot: Slot::Empty,
                waiting: None,
            }),
            index_1: index.and_then(|i| std::num::NonZeroUsize::new(i.wrapping_add(1))),
            running: std::sync::atomic::AtomicBool::new(false),
            job,
        })
    }
}

impl<R, J: Attached + ?Sized> FutureState<R, J> {
    /// The task's index in its `map`, if it has one.
    fn index(&self) -> Option<usize> {
        self.index_1.map(|i| i.get() - 1)
    }

    /// Done (also while its callbacks run).
    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) != PENDING
    }

    fn event(&self) -> EventCount<'_> {
        EventCount::new(&self.seq, &self.sleepers)
    }

    fn wake_sleepers(&self) {
        self.event().notify_all();
    }

    /// Sets the outcome. Returns false (and drops `r`) if it was already set (cancelled).
    ///
    /// The transition out of PENDING happens under `inner`, so a callback added
    /// concurrently is either taken here or runs after.
    pub(crate) fn complete(&self, r: Result<R, TaskError>) -> bool {
        let mut g = self.inner.lock().unwrap();
        if !matches!(g.slot, Slot::Empty) {
            drop(g);
            // The value is the user's: its `Drop` must not unwind through the pool.
            catch_loud("result's drop", || drop(r));
            return false;
        }
        self.outcome.store(outcome_of(&r), Ordering::Release);
        if !g.has_callbacks() {
            g.slot = Slot::ready(r);
            // Published before the event count's notify (whose fence orders it before the
            // look for sleepers), so a waiter that just announced itself sees it.
            self.state.swap(DONE, Ordering::SeqCst);
            let waker = g.take_waker();
            drop(g);
            self.wake_sleepers();
            if let Some(w) = waker {
                catch_loud("waker", || w.wake());
            }
            return true;
        }
        let cbs = g.take_callbacks();
        g.slot = Slot::Delivering(std::thread::current().id());
        self.state.swap(DELIVERING, Ordering::SeqCst);
        drop(g);
        self.deliver(cbs, r);
        true
    }

    /// Runs callbacks with `r` (moved out of the slot, which says `Delivering` by this
    /// thread), then any added meanwhile, then puts `r` back and marks the future DONE.
    fn deliver(&self, mut cbs: Vec<Callback<R>>, r: Result<R, TaskError>) {
        loop {
            run_callbacks(cbs, &r);
            let mut g = self.inner.lock().unwrap();
            if g.has_callbacks() {
                cbs = g.take_callbacks();
                continue;
            }
            g.slot = Slot::ready(r);
            self.state.swap(DONE, Ordering::SeqCst);
            let waker = g.take_waker();
            drop(g);
            self.wake_sleepers();
            if let Some(w) = waker {
                catch_loud("waker", || w.wake());
            }
            return;
        }
    }

    /// A worker took the task: it runs (or is next in that worker's queue).
    pub(crate) fn set_running(&self) {
        self.running.store(true, Ordering::Release);
    }

    /// Waits until done or the deadline passes; returns whether it is done.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        // Spin briefly: a cross-CPU wake-up costs far more than a short task here.
        // While spinning, help the pool collect results: then no other thread has to wake.
        // The spin is bounded in time too, and never outlasts the caller's deadline.
        let mut backoff = Backoff::new(SPIN, deadline);
        if self.is_done() {
            return true;
        }
        let link = self.job.link().and_then(|(l, _)| l.upgrade());
        let helping = link.as_deref().map(Helping::new);
        loop {
            // Each round: `help` first looks whether the pool has anything to collect (a
            // few loads), and runs a round only then; the look at the state right after it
            // (a round that collected this result returns at once, with no hint between).
            if let Some(l) = &link {
                l.help();
            }
            if self.is_done() {
                return true;
            }
            if !backoff.snooze() {
                break;
            }
        }
        // Off the helpers' count before sleeping (the pool's thread collects from here
        // on), and without the pool alive in this frame (a sleeper must not keep it).
        drop(helping);
        drop(link);
        self.sleep_while(PENDING, deadline)
    }

    /// Sleeps while the state is `value`; returns false if the deadline passed first.
    fn sleep_while(&self, value: u32, deadline: Option<Instant>) -> bool {
        self.event().sleep_until(deadline, None, || {
            self.state.load(Ordering::Acquire) != value
        })
    }

    /// Takes the outcome of a done future; while callbacks run on another thread, waits
    /// for them (until `deadline`).
    fn take(&self, deadline: Option<Instant>) -> Took<R> {
        loop {
            let mut g = self.inner.lock().unwrap();
            if let Some(r) = g.slot.take_ready() {
                return Took::Value(r);
            }
            match std::mem::replace(&mut g.slot, Slot::Taken) {
                Slot::Delivering(t) => {
                    g.slot = Slot::Delivering(t);
                    drop(g);
                    if t == std::thread::current().id() {
                        return Took::OwnCallback;
                    }
                    if !self.sleep_while(DELIVERING, deadline) {
                        return Took::TimedOut;
                    }
                }
                other => {
                    g.slot = other;
                    return Took::AlreadyTaken;
                }
            }
        }
    }
}

fn own_callback(index: Option<usize>) -> TaskError {
    TaskError::PoolClosed {
        index,
        reason: "the result cannot be taken inside this future's own done-callback \
                 (the callback's argument is the outcome); it is still in the future"
            .into(),
    }
}

/// The pending result of one submitted task (Python's `concurrent.futures.Future`).
///
/// Get the value with [`result`](TaskFuture::result), poll with
/// [`done`](TaskFuture::done), or `.await` it in async code.
///
/// ```
/// use multiproc::{Executor, ThreadPool};
/// let pool = ThreadPool::new(2).unwrap();
/// let fut = pool.submit(|x: u64| x * 2, 21).unwrap();
/// assert_eq!(fut.result().unwrap(), 42);
/// ```
pub struct TaskFuture<R> {
    pub(crate) state: Arc<FutureState<R, AnyJob>>,
}

impl<R> fmt::Debug for TaskFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFuture")
            .field("done", &self.done())
            .finish()
    }
}

impl<R> TaskFuture<R> {
    pub(crate) fn from_state<J: Attached + 'static>(
        state: Arc<FutureState<R, J>>,
    ) -> TaskFuture<R> {
        TaskFuture { state }
    }

    /// Whether the task has finished (with a value, an error or by cancellation).
    pub fn done(&self) -> bool {
        self.state.is_done()
    }

    /// Waits for the task and returns its outcome.
    pub fn result(self) -> Result<R, TaskError> {
        self.state.wait_until(None);
        match self.state.take(None) {
            Took::Value(r) => r,
            Took::OwnCallback => Err(own_callback(self.state.index())),
            Took::AlreadyTaken | Took::TimedOut => Err(already_taken(self.state.index())),
        }
    }

    /// Waits at most `timeout`. On timeout the future is still usable: the error is
    /// [`Error::Timeout`]. Otherwise the outcome is taken out of the future.
    pub fn result_timeout(&self, timeout: Duration) -> Result<R, Error> {
        let deadline = Instant::now() + timeout;
        if !self.state.wait_until(Some(deadline)) {
            return Err(Error::Timeout(timeout));
        }
        match self.state.take(Some(deadline)) {
            Took::Value(r) => r.map_err(Error::Task),
            Took::TimedOut => Err(Error::Timeout(timeout)),
            Took::OwnCallback => Err(Error::Task(own_callback(self.state.index()))),
            Took::AlreadyTaken => Err(Error::Task(already_taken(self.state.index()))),
        }
    }

    /// Waits at most `timeout` for the task to finish; returns whether it has.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.state.wait_until(Some(Instant::now() + timeout))
    }

    /// Cancels the task. A pending task is never run; a task running on a process pool has
    /// its worker killed (and replaced). Returns `false` if it had already finished.
    pub fn cancel(&self) -> bool {
        if !self.state.complete(Err(TaskError::Cancelled {
            index: self.state.index(),
        })) {
            return false;
        }
        if let Some((l, id)) = self.state.job.link()
            && let Some(l) = l.upgrade()
        {
            l.cancel(*id);
        }
        true
    }

    /// Whether a worker has taken the task and it has not finished (Python's `running()`).
    /// A process pool counts a task as running once it is sent to a worker.
    ///
    /// ```
    /// use multiproc::{Executor, ThreadPool};
    /// let pool = ThreadPool::new(1).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let busy = pool.submit(move |_: ()| { let _ = rx.recv(); }, ()).unwrap();
    /// let queued = pool.submit(|x: u8| x, 1).unwrap();
    /// while !busy.running() { std::thread::yield_now(); }
    /// assert!(!queued.running());
    /// drop(tx);
    /// assert!(busy.wait_timeout(std::time::Duration::from_secs(10)));
    /// assert!(!busy.running());
    /// ```
    pub fn running(&self) -> bool {
        self.state.running.load(Ordering::Acquire) && !self.done()
    }

    /// Waits for the task and returns its error, or `None` if it succeeded (Python's
    /// `exception()`). The value stays in the future for [`result`](TaskFuture::result).
    ///
    /// ```
    /// use multiproc::{Executor, TaskError, ThreadPool};
    /// let pool = ThreadPool::new(1).unwrap();
    /// let bad = pool.submit(|x: u32| if x > 1 { panic!("too big") } else { x }, 2).unwrap();
    /// assert!(matches!(bad.exception(), Some(TaskError::Panicked { .. })));
    /// let good = pool.submit(|x: u32| x, 1).unwrap();
    /// assert_eq!(good.exception(), None);
    /// assert_eq!(good.result().unwrap(), 1);
    /// ```
    pub fn exception(&self) -> Option<TaskError> {
        self.state.wait_until(None);
        match &self.state.inner.lock().unwrap().slot {
            Slot::Failed(e) => Some((**e).clone()),
            Slot::Value(_) => None,
            _ => Some(already_taken(self.state.index())),
        }
    }

    /// Whether it was cancelled.
    pub fn cancelled(&self) -> bool {
        self.state.is_done() && self.state.outcome.load(Ordering::Acquire) == OUT_CANCELLED
    }

    /// Calls `f` with the outcome once the task has finished (at once if it has). It runs
    /// on the thread that completes the task, after the future is done and with no lock
    /// held: it may look at this future (`done()` is true; its outcome is the argument) or
    /// submit to the pool. A panic in it is reported on stderr and costs only that callback.
    pub fn add_done_callback(&self, f: impl FnOnce(&Result<R, TaskError>) + Send + 'static) {
        {
            let mut g = self.state.inner.lock().unwrap();
            if self.state.state.load(Ordering::Acquire) != DONE {
                // Pending, or callbacks running: the thread delivering runs it too.
                g.waiting().callbacks.push(Box::new(f));
                return;
            }
        }
        self.run_now(Box::new(f));
    }

    fn run_now(&self, f: Callback<R>) {
        let st = &self.state;
        let mut g = st.inner.lock().unwrap();
        if let Some(r) = g.slot.take_ready() {
            // Become the delivering thread for the length of the call.
            g.slot = Slot::Delivering(std::thread::current().id());
            st.state.swap(DELIVERING, Ordering::SeqCst);
            let mut cbs = g.take_callbacks();
            cbs.push(f);
            drop(g);
            st.deliver(cbs, r);
            return;
        }
        match std::mem::replace(&mut g.slot, Slot::Taken) {
            Slot::Delivering(t) => {
                // Another callback is running with it (maybe on this thread, one frame up):
                // the delivering loop runs this one next.
                g.slot = Slot::Delivering(t);
                g.waiting().callbacks.push(f);
            }
            other => {
                g.slot = other;
                drop(g);
                let err = Err(already_taken(st.index()));
                catch_loud("done-callback", || f(&err));
            }
        }
    }
}

fn already_taken(index: Option<usize>) -> TaskError {
    TaskError::PoolClosed {
        index,
        reason: "the result was already taken from this future".into(),
    }
}

impl<R> Future for TaskFuture<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Pending, or its callbacks still running: the end of either wakes the waker.
        if self.state.state.load(Ordering::Acquire) != DONE {
            let mut g = self.state.inner.lock().unwrap();
            if self.state.state.load(Ordering::Acquire) != DONE {
                g.waiting().waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        Poll::Ready(match self.state.take(None) {
            Took::Value(r) => r,
            Took::OwnCallback => Err(own_callback(self.state.index())),
            Took::AlreadyTaken | Took::TimedOut => Err(already_taken(self.state.index())),
        })
    }
}

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// As soon as any future finishes.
    FirstCompleted,
    /// As soon as any future fails (or all finish).
    FirstException,
    /// When all have finished.
    AllCompleted,
}

/// Indices of futures that are done and not done, as [`wait`] returns them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Waited {
    /// Indices (into the slice given to `wait`) of finished futures.
    pub done: Vec<usize>,
    /// Indices of futures still running.
    pub not_done: Vec<usize>,
}

fn failed<R>(f: &TaskFuture<R>) -> bool {
    f.done()
        && matches!(
            f.state.outcome.load(Ordering::Acquire),
            OUT_ERR | OUT_CANCELLED
        )
}

/// Waits for futures (Python's `concurrent.futures.wait`). Returns which are done.
///
/// ```
/// use multiproc::{Executor, Return, ThreadPool, wait};
/// let pool = ThreadPool::new(2).unwrap();
/// let futs: Vec<_> = (0..4u64).map(|i| pool.submit(|x: u64| x + 1, i).unwrap()).collect();
/// let w = wait(&futs, Return::AllCompleted, None);
/// assert_eq!(w.done.len(), 4);
/// ```
pub fn wait<R: Send + 'static>(
    futs: &[TaskFuture<R>],
    when: Return,
    timeout: Option<Duration>,
) -> Waited {
    let deadline = timeout.map(|t| Instant::now() + t);
    let (tx, rx) = crossbeam_channel::unbounded::<usize>();
    for (i, f) in futs.iter().enumerate() {
        let tx = tx.clone();
        f.add_done_callback(move |_| {
            let _ = tx.send(i);
        });
    }
    drop(tx);
    let satisfied = |futs: &[TaskFuture<R>]| {
        let done = futs.iter().filter(|f| f.done()).count();
        match when {
            Return::AllCompleted => done == futs.len(),
            Return::FirstCompleted => done > 0 || futs.is_empty(),
            Return::FirstException => {
                done == futs.len() || futs.iter().any(|f| f.done() && failed(f))
            }
        }
    };
    while !satisfied(futs) {
        let got = match deadline {
            None => rx.recv().ok(),
            Some(d) => rx.recv_deadline(d).ok(),
        };
        if got.is_none() {
            break;
        }
    }
    let (done, not_done) = (0..futs.len()).partition(|&i| futs[i].done());
    Waited { done, not_done }
}

/// Yields futures as they finish (Python's `concurrent.futures.as_completed`).
///
/// ```
/// use multiproc::{Executor, ThreadPool, as_completed};
/// let pool = ThreadPool::new(2).unwrap();
/// let futs: Vec<_> = (0..4u64).map(|i| pool.submit(|x: u64| x * x, i).unwrap()).collect();
/// let mut all: Vec<u64> = as_completed(futs).map(|f| f.result().unwrap()).collect();
/// all.sort();
/// assert_eq!(all, vec![0, 1, 4, 9]);
/// ```
pub fn as_completed<R: Send + 'static>(futs: Vec<TaskFuture<R>>) -> AsCompleted<R> {
    let (tx, rx) = crossbeam_channel::unbounded::<usize>();
    for (i, f) in futs.iter().enumerate() {
        let tx = tx.clone();
        f.add_done_callback(move |_| {
            let _ = tx.send(i);
        });
    }
    let futs = futs.into_iter().map(Some).collect();
    AsCompleted { futs, rx }
}

/// The iterator [`as_completed`] returns.
pub struct AsCompleted<R> {
    futs: Vec<Option<TaskFuture<R>>>,
    rx: crossbeam_channel::Receiver<usize>,
}

impl<R> fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("pending", &self.futs.iter().filter(|f| f.is_some()).count())
            .finish()
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = TaskFuture<R>;

    fn next(&mut self) -> Option<TaskFuture<R>> {
        loop {
            let i = self.rx.recv().ok()?;
            if let Some(f) = self.futs.get_mut(i).and_then(Option::take) {
                return Some(f);
            }
        }
    }
}
