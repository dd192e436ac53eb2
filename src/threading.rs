//! `Thread`, `Timer`, `enumerate`, `current_thread`: Python's `threading` module.
//!
//! A [`Thread`] is created, then started, as in Python, and stays a handle that can be
//! cloned, asked [`is_alive`](Thread::is_alive) and joined from anywhere, even after it
//! ended. Threads started here are listed by [`enumerate`] while they run, and at normal
//! exit of the program the non-daemon ones are waited for (daemon ones are abandoned), as
//! Python's interpreter does.
//!
//! ## Exit
//!
//! Returning from `main` and [`std::process::exit`] both run the C `exit`, which waits for
//! every non-daemon thread before anything else multiproc does at exit (joining child
//! processes): this is Python's `sys.exit`. `std::process::abort`, a signal, or `_exit`
//! skip it (Python's `os._exit`): non-daemon threads die where they are. A thread that calls
//! `std::process::exit` itself waits for every *other* non-daemon thread.
//!
//! ## `threading.local`
//!
//! Rust's [`thread_local!`] is the answer: a `static` with one value per thread, created on
//! first use in each thread and dropped when that thread ends.
//!
//! ```
//! use std::cell::Cell;
//! thread_local!(static COUNT: Cell<u32> = const { Cell::new(0) });
//! COUNT.set(5);
//! let t = multiproc::Thread::new(|| assert_eq!(COUNT.get(), 0)); // its own value
//! t.start().unwrap();
//! t.join().unwrap();
//! assert_eq!(COUNT.get(), 5);
//! ```

use std::cell::{Cell, OnceCell};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, TaskError};

type Target = Box<dyn FnOnce() + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Created by [`Thread::new`] and friends.
    Started,
    /// The program's first thread.
    Main,
    /// A thread multiproc did not start, seen through [`current_thread`].
    Dummy,
}

enum State {
    New,
    Running,
    Done(std::result::Result<(), TaskError>),
}

struct Inner {
    name: String,
    daemon: bool,
    kind: Kind,
    target: Mutex<Option<Target>>,
    state: Mutex<State>,
    cv: Condvar,
    /// `(ident, native_id)`, known once it runs.
    ids: OnceLock<(u64, u32)>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// A thread of this process (Python's `threading.Thread`): created, then
/// [`start`](Thread::start)ed, then [`join`](Thread::join)ed.
///
/// A `Thread` is a handle: clones refer to the same thread. A panic in it is printed, as
/// Python prints an uncaught exception, and returned by `join` as
/// [`TaskError::Panicked`] with its message.
///
/// ```
/// use multiproc::Thread;
/// fn print_sum(pair: (i32, i32)) { println!("{}", pair.0 + pair.1); }
/// let t = Thread::with_arg(print_sum, (1, 2));
/// assert_eq!(t.ident(), None);
/// t.start().unwrap();
/// t.join().unwrap();
/// assert!(!t.is_alive());
/// assert!(t.name().starts_with("Thread-"));
///
/// let t = Thread::builder().name("worker").daemon(true).target(|| panic!("boom"));
/// t.start().unwrap();
/// let err = t.join().unwrap_err();
/// assert!(err.to_string().contains("boom"));
/// assert!(t.start().is_err(), "a thread starts only once");
/// ```
#[derive(Clone)]
pub struct Thread {
    inner: Arc<Inner>,
}

impl PartialEq for Thread {
    fn eq(&self, other: &Thread) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Thread {}

impl std::hash::Hash for Thread {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.inner).hash(state)
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match &*lock(&self.inner.state) {
            State::New => "initial",
            State::Running => "started",
            State::Done(_) => "stopped",
        };
        let mut d = f.debug_struct("Thread");
        d.field("name", &self.inner.name).field("status", &status);
        if self.inner.daemon {
            d.field("daemon", &true);
        }
        if let Some((ident, _)) = self.inner.ids.get() {
            d.field("ident", ident);
        }
        d.finish()
    }
}

/// Options for a new [`Thread`] or [`Timer`]: name and daemon flag.
#[derive(Debug, Clone, Default)]
pub struct ThreadBuilder {
    name: Option<String>,
    daemon: Option<bool>,
}

impl ThreadBuilder {
    /// Its name (default `Thread-N`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon thread is abandoned, not waited for, when the program exits. The default,
    /// as in Python, is the daemon flag of the [`Thread`] that creates it, so `false` from
    /// `main`. From a thread multiproc did not start it is `false` too (Python would say
    /// `true`, because it counts such threads as daemons only since it cannot join them).
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// A thread that will run `f()` once started.
    pub fn target(self, f: impl FnOnce() + Send + 'static) -> Thread {
        let name = self
            .name
            .unwrap_or_else(|| format!("Thread-{}", NAMES.fetch_add(1, Ordering::Relaxed)));
        let daemon = self.daemon.unwrap_or_else(|| {
            let creator = current_thread();
            creator.inner.kind == Kind::Started && creator.daemon()
        });
        Thread::make(name, daemon, Kind::Started, Some(Box::new(f)), State::New)
    }

    /// A thread that will run `f(arg)` once started (Python's `Thread(target=f, args=...)`;
    /// use a tuple for several arguments).
    pub fn target_arg<A: Send + 'static>(
        self,
        f: impl FnOnce(A) + Send + 'static,
        arg: A,
    ) -> Thread {
        self.target(move || f(arg))
    }

    /// A [`Timer`] with these options.
    pub fn timer(self, interval: Duration, f: impl FnOnce() + Send + 'static) -> Timer {
        Timer::from_builder(self, interval, Box::new(f))
    }
}

/// For `Thread-N` names, counting from 1 as Python does.
static NAMES: AtomicU64 = AtomicU64::new(1);
/// For `Dummy-N` names of threads multiproc did not start.
static DUMMIES: AtomicU64 = AtomicU64::new(1);
/// Next [`get_ident`] value; 1 is the main thread's.
static IDENTS: AtomicU64 = AtomicU64::new(2);
/// Threads started here that have not ended, in start order.
static LIVE: Mutex<Vec<Thread>> = Mutex::new(Vec::new());
static MAIN: OnceLock<Thread> = OnceLock::new();

thread_local! {
    static IDENT: Cell<u64> = const { Cell::new(0) };
    static CURRENT: OnceCell<Thread> = const { OnceCell::new() };
}

/// Locks, ignoring poison: every critical section here leaves the data consistent, and a
/// panic in user code never happens under these locks.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_main_os_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

fn native_id() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

impl Thread {
    fn make(name: String, daemon: bool, kind: Kind, target: Option<Target>, state: State) -> Self {
        Thread {
            inner: Arc::new(Inner {
                name,
                daemon,
                kind,
                target: Mutex::new(target),
                state: Mutex::new(state),
                cv: Condvar::new(),
                ids: OnceLock::new(),
                handle: Mutex::new(None),
            }),
        }
    }

    /// A thread that will run `f()` once started (default name and daemon flag).
    pub fn new(f: impl FnOnce() + Send + 'static) -> Thread {
        ThreadBuilder::default().target(f)
    }

    /// A thread that will run `f(arg)` once started.
    pub fn with_arg<A: Send + 'static>(f: impl FnOnce(A) + Send + 'static, arg: A) -> Thread {
        ThreadBuilder::default().target_arg(f, arg)
    }

    /// Options: name, daemon.
    pub fn builder() -> ThreadBuilder {
        ThreadBuilder::default()
    }

    /// Starts it, and returns once it runs (so [`ident`](Thread::ident) is known). A
    /// second call is an error, as in Python.
    pub fn start(&self) -> Result<()> {
        let target = {
            let mut state = lock(&self.inner.state);
            let target = match (&*state, self.inner.kind) {
                (State::New, Kind::Started) => lock(&self.inner.target).take(),
                _ => None,
            };
            let Some(target) = target else {
                return Err(Error::InvalidArgument(format!(
                    "thread {:?} was already started: threads can only be started once",
                    self.inner.name
                )));
            };
            *state = State::Running;
            target
        };
        // Registered before it runs: `enumerate` lists it as soon as `start` returns.
        lock(&LIVE).push(self.clone());
        crate::sys::atexit::at_exit_first(join_threads_at_exit);
        crate::bootstrap::task::capture_panics();
        let ident = IDENTS.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(self.inner.name.clone())
            .spawn(move || me.run(ident, target));
        match spawned {
            Ok(h) => {
                *lock(&self.inner.handle) = Some(h);
                let mut state = lock(&self.inner.state);
                while self.inner.ids.get().is_none() && matches!(*state, State::Running) {
                    state = self.inner.cv.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                Ok(())
            }
            Err(e) => {
                lock(&LIVE).retain(|t| t != self);
                *lock(&self.inner.state) = State::New;
                Err(Error::io(format!("start thread {:?}", self.inner.name), e))
            }
        }
    }

    /// The body of the OS thread.
    fn run(self, ident: u64, target: Target) {
        IDENT.set(ident);
        let _ = CURRENT.with(|c| c.set(self.clone()));
        {
            let _g = lock(&self.inner.state);
            let _ = self.inner.ids.set((ident, native_id()));
        }
        self.inner.cv.notify_all();
        let outcome = catch_unwind(AssertUnwindSafe(target)).map_err(|p| {
            let (message, location) = crate::bootstrap::task::take_panic(&*p);
            TaskError::Panicked {
                index: None,
                message,
                location,
                pid: std::process::id(),
            }
        });
        // Off the list before it reads as ended: after `join`, `enumerate` never shows it.
        lock(&LIVE).retain(|t| t != &self);
        *lock(&self.inner.state) = State::Done(outcome);
        self.inner.cv.notify_all();
    }

    /// Why it cannot be joined from here, if it cannot.
    fn unjoinable(&self) -> Option<Error> {
        let why = match (self.inner.kind, &*lock(&self.inner.state)) {
            (Kind::Dummy, _) => "it was not started by multiproc",
            (Kind::Main, _) => "it is the main thread",
            (_, State::New) => "it was not started",
            _ if *self == current_thread() => "it is the current thread (that would deadlock)",
            _ => return None,
        };
        Some(Error::InvalidArgument(format!(
            "cannot join thread {:?}: {why}",
            self.inner.name
        )))
    }

    /// Waits until done or `deadline`; returns whether it is done.
    fn wait_done(&self, deadline: Option<Instant>) -> bool {
        let mut state = lock(&self.inner.state);
        loop {
            if matches!(*state, State::Done(_)) {
                break;
            }
            state = match deadline {
                None => self.inner.cv.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    self.inner
                        .cv
                        .wait_timeout(state, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        drop(state);
        // Reap the OS thread too (it is past its last step, so this is immediate).
        if let Some(h) = lock(&self.inner.handle).take() {
            let _ = h.join();
        }
        true
    }

    /// Waits for it to end. Returns the panic that ended it, if one did, as
    /// [`TaskError::Panicked`] (every call, from every handle). Joining a thread that was
    /// not started, the current thread, the main thread or one multiproc did not start is
    /// an [`Error::InvalidArgument`].
    pub fn join(&self) -> Result<()> {
        if let Some(e) = self.unjoinable() {
            return Err(e);
        }
        self.wait_done(None);
        match &*lock(&self.inner.state) {
            State::Done(Err(e)) => Err(Error::Task(e.clone())),
            _ => Ok(()),
        }
    }

    /// Waits at most `timeout`; returns whether it has ended (then [`join`](Thread::join)
    /// returns at once with its outcome). `false` at once where `join` would be an error.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.unjoinable().is_none() && self.wait_done(Some(Instant::now() + timeout))
    }

    /// Whether it has started and not ended (true for the main thread and for threads
    /// multiproc did not start).
    pub fn is_alive(&self) -> bool {
        match self.inner.kind {
            Kind::Started => matches!(*lock(&self.inner.state), State::Running),
            Kind::Main | Kind::Dummy => true,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether it is a daemon thread.
    pub fn daemon(&self) -> bool {
        self.inner.daemon
    }

    /// Python's `ident`: a number unique among the threads of this process (what
    /// [`get_ident`] returns in it), `None` before it started.
    pub fn ident(&self) -> Option<u64> {
        self.inner.ids.get().map(|i| i.0)
    }

    /// The operating system's id of the thread (Linux `gettid`), `None` before it started.
    pub fn native_id(&self) -> Option<u32> {
        self.inner.ids.get().map(|i| i.1)
    }
}

/// The main thread (Python's `threading.main_thread()`), named `"MainThread"`.
///
/// ```
/// let main = multiproc::main_thread();
/// assert_eq!(main.name(), "MainThread");
/// assert!(main.is_alive());
/// ```
pub fn main_thread() -> Thread {
    MAIN.get_or_init(|| {
        let t = Thread::make("MainThread".into(), false, Kind::Main, None, State::Running);
        let _ = t.inner.ids.set((1, std::process::id()));
        t
    })
    .clone()
}

/// The thread this code runs on (Python's `threading.current_thread()`). A thread that
/// multiproc did not start (`std::thread::spawn`, a pool's thread) gets a handle of its own,
/// a daemon named after the thread (or `Dummy-N`), as Python's dummy threads.
///
/// ```
/// use multiproc::{Thread, current_thread};
/// let t = Thread::builder().name("me").target(|| assert_eq!(current_thread().name(), "me"));
/// t.start().unwrap();
/// t.join().unwrap();
/// ```
pub fn current_thread() -> Thread {
    if let Some(t) = CURRENT.with(|c| c.get().cloned()) {
        return t;
    }
    if is_main_os_thread() {
        return main_thread();
    }
    let t = CURRENT.with(|c| {
        c.get_or_init(|| {
            let name = std::thread::current()
                .name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("Dummy-{}", DUMMIES.fetch_add(1, Ordering::Relaxed)));
            Thread::make(name, true, Kind::Dummy, None, State::Running)
        })
        .clone()
    });
    let _ = t.inner.ids.set((get_ident(), native_id()));
    t
}

/// Handles to the main thread and every thread started through [`Thread`] that has not
/// ended (Python's `threading.enumerate()`). Threads started otherwise (`std::thread`, a
/// [`ThreadPool`](crate::ThreadPool)'s) are not listed; Python lists its dummy threads.
///
/// ```
/// use multiproc::{Event, Thread};
/// let stop = Event::new().unwrap();
/// let s = stop.clone();
/// let t = Thread::new(move || { s.wait(); });
/// t.start().unwrap();
/// assert!(multiproc::enumerate().contains(&t));
/// stop.set();
/// t.join().unwrap();
/// assert!(!multiproc::enumerate().contains(&t));
/// ```
pub fn enumerate() -> Vec<Thread> {
    let mut all = vec![main_thread()];
    all.extend(lock(&LIVE).iter().cloned());
    all
}

/// The number of threads [`enumerate`] lists (Python's `threading.active_count()`).
///
/// ```
/// assert!(multiproc::active_count() >= 1);
/// ```
pub fn active_count() -> usize {
    1 + lock(&LIVE).len()
}

/// A number that identifies the calling thread among the threads of this process
/// (Python's `threading.get_ident()`): 1 on the main thread.
///
/// ```
/// assert_eq!(multiproc::get_ident(), multiproc::current_thread().ident().unwrap());
/// ```
pub fn get_ident() -> u64 {
    let id = IDENT.get();
    if id != 0 {
        return id;
    }
    let id = if is_main_os_thread() {
        1
    } else {
        IDENTS.fetch_add(1, Ordering::Relaxed)
    };
    IDENT.set(id);
    id
}

/// Waits for every non-daemon thread started here (except the caller), including those
/// they start meanwhile. Runs at normal exit of the program and of a [`Process`] child.
///
/// [`Process`]: crate::Process
pub(crate) fn join_threads_at_exit() {
    let me = get_ident();
    loop {
        let pending: Vec<Thread> = lock(&LIVE)
            .iter()
            .filter(|t| !t.inner.daemon && t.ident() != Some(me))
            .cloned()
            .collect();
        if pending.is_empty() {
            return;
        }
        for t in pending {
            t.wait_done(None);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerState {
    Waiting,
    Cancelled,
    Fired,
}

struct TimerCtl {
    state: Mutex<TimerState>,
    cv: Condvar,
}

/// Runs a function after a delay, on its own thread, unless [`cancel`](Timer::cancel)
/// comes first (Python's `threading.Timer`).
///
/// ```
/// use multiproc::Timer;
/// use std::time::Duration;
/// let t = Timer::new(Duration::from_secs(60), || panic!("never runs"));
/// t.start().unwrap();
/// assert!(t.cancel());
/// t.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Timer {
    thread: Thread,
    ctl: Arc<TimerCtl>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("thread", &self.thread)
            .field("state", &*lock(&self.ctl.state))
            .finish()
    }
}

impl Timer {
    /// A timer that will run `f()` `interval` after it starts.
    pub fn new(interval: Duration, f: impl FnOnce() + Send + 'static) -> Timer {
        ThreadBuilder::default().timer(interval, f)
    }

    fn from_builder(b: ThreadBuilder, interval: Duration, f: Target) -> Timer {
        let ctl = Arc::new(TimerCtl {
            state: Mutex::new(TimerState::Waiting),
            cv: Condvar::new(),
        });
        let c = ctl.clone();
        let thread = b.target(move || {
            let deadline = Instant::now() + interval;
            let mut st = lock(&c.state);
            loop {
                if *st == TimerState::Cancelled {
                    return;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st =
                    c.cv.wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
            }
            *st = TimerState::Fired;
            drop(st);
            f();
        });
        Timer { thread, ctl }
    }

    /// Starts the countdown.
    pub fn start(&self) -> Result<()> {
        self.thread.start()
    }

    /// Stops the timer if it is still waiting (before or after `start`). Returns whether
    /// the function is now sure not to run (`false` if it already started running).
    pub fn cancel(&self) -> bool {
        let mut st = lock(&self.ctl.state);
        if *st == TimerState::Fired {
            return false;
        }
        *st = TimerState::Cancelled;
        drop(st);
        self.ctl.cv.notify_all();
        true
    }

    /// Waits for its thread to end (after the function ran, or at once after `cancel`).
    pub fn join(&self) -> Result<()> {
        self.thread.join()
    }

    /// Waits at most `timeout`; returns whether its thread has ended.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.thread.join_timeout(timeout)
    }

    /// Whether its thread is running (waiting, or running the function).
    pub fn is_alive(&self) -> bool {
        self.thread.is_alive()
    }

    /// Its thread: name, ident, daemon flag.
    pub fn thread(&self) -> &Thread {
        &self.thread
    }
}
