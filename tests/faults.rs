//! The fault matrix: every pool × every step a task passes through × every fault.
//!
//! One task of eight (index [`FAULTY`]) carries an [`Item`] whose `Serialize`, `Deserialize`
//! or task body injects the fault at the chosen step; the other seven must give their exact
//! results. A codec fault strikes halfway through the item (half of it written or read),
//! and the faulty item is [`BIG`], so it and its chunk travel out of band (in a memfd).
//! Each worker-side cell runs three ways: eight `submit`s; `imap_chunked` in chunks of four
//! (the faulty item inside a chunk); `imap_unordered_chunked` in chunks of three (it ends
//! one). After each cell the pool still runs a clean round, is dropped, and nothing may be
//! left: no process or zombie below this one, no fd, no `/dev/shm` segment. Cells take
//! [`CELL`] in turn so these counts are exact; each runs under its own hard deadline, and
//! a column's test names every failing cell.
//!
//! Steps: argument encode (parent), argument decode (worker), the task's run (worker),
//! result encode (worker), result decode (parent), the done-callback (parent).
//!
//! ## Expected outcome per cell (`ProcessPool`, both start methods)
//!
//! | fault \ step     | arg encode (P)   | arg decode (W) | run (W)        | result encode (W) | result decode (P) | callback (P)     |
//! |------------------|------------------|----------------|----------------|-------------------|-------------------|------------------|
//! | returned error   | `Serialize`      | `Deserialize`  | `Ok(Err(user))`| `Serialize`       | `Deserialize`     | n/a (1)          |
//! | panic            | `Serialize`      | `Deserialize`  | `Panicked`     | `Serialize`       | `Deserialize`     | result intact (2)|
//! | abort()          | parent dies (3)  | `WorkerDied` 6 | `WorkerDied` 6 | `WorkerDied` 6    | parent dies (3)   | parent dies (3)  |
//! | segfault         | parent dies (3)  | `WorkerDied` 11| `WorkerDied` 11| `WorkerDied` 11   | parent dies (3)   | parent dies (3)  |
//! | exit(0), exit(3) | parent dies (3)  | `WorkerDied` c | `WorkerDied` c | `WorkerDied` c    | parent dies (3)   | parent dies (3)  |
//! | SIGKILL outside  | n/a (4)          | `WorkerDied` 9 | `WorkerDied` 9 | `WorkerDied` 9    | n/a (4)           | n/a (4)          |
//! | SIGSTOP, timeout | n/a (5)          | `TimedOut`     | `TimedOut`     | `TimedOut`        | n/a (5)           | n/a (5)          |
//! | loop, timeout    | n/a (5)          | `TimedOut`     | `TimedOut`     | `TimedOut`        | n/a (5)           | n/a (5)          |
//! | 1 GiB, mem limit | n/a (6)          | `MemoryLimit`  | `MemoryLimit`  | `MemoryLimit`     | n/a (6)           | n/a (6)          |
//!
//! `c` is the exit code: a worker that exits, even with 0, has died under its task. A
//! `submit` whose argument fails to encode returns `Error::Serialize` at once (nothing
//! was queued); in `imap` the item is `TaskError::Serialize` with its index. A returned
//! codec error keeps its variant and type name but not the user's text: postcard's
//! `Error::custom` drops it ("Serde Serialization Error"); a panic's message is kept.
//!
//! ## `ThreadPool`
//!
//! A thread pool never encodes or decodes (`trust_boundaries::a_thread_pool_never_serializes`),
//! so the four codec columns do not exist. Run: returned error `Ok(Err(user))`, panic
//! `Panicked`, abort / segfault / exit: the process dies (3), since the task *is* the
//! caller's process. Callback: as for `ProcessPool`. SIGKILL, SIGSTOP, loop and memory
//! limit: n/a (7).
//!
//! ## Why the n/a and "parent dies" cells are what they are
//!
//! 1. A done-callback returns nothing: there is no error to return.
//! 2. The future's result is unaffected, the pool goes on, and the next callback of the
//!    same future still runs; the panic is reported on stderr.
//! 3. This is the user's own code running in the user's own process (the caller's thread
//!    or the pool's dispatcher thread in it): abort, a segfault or exit end that process,
//!    which is correct, and no library can or should prevent it. [`parent_dies`] shows each
//!    of these cells in a child process (under spawn, abort only: the start method changes
//!    nothing here): it dies with exactly that signal or exit code, and every worker of its
//!    pool dies with it.
//! 4. SIGKILL "from outside" aimed at the parent is parent death, covered by
//!    `process_pool::sigkill_of_the_parent_leaves_no_worker_or_fork_server`.
//! 5. Task timeouts apply to workers, which can be killed; code looping or stopped in the
//!    caller's own process runs on the caller's thread, with no one to stop it.
//! 6. `memory_limit` caps workers; the parent's own allocations are not limited.
//! 7. A thread cannot be killed, stopped alone, timed out or capped in memory: these are
//!    the reasons to use processes (DESIGN.md §1). SIGSTOP or SIGKILL reach the whole
//!    process, which is parent death.
//!
//! Cells that other files already hold, left there: `process_pool.rs`
//! (`every_fault_costs_only_its_own_task`: run × panic, abort, segfault, exit(3), loop in
//! one map; `a_worker_killed_from_outside_fails_only_its_task`; `memory_limit_fails_the_task_not_the_pool`),
//! `trust_boundaries.rs` (panicking `Serialize`/`Deserialize` of arguments and results in
//! `map`, initializers), `worker_faults.rs` (blame under racing timeouts and cancels,
//! protocol violations, every way of allocating past the limit, aborts under a limit).
//!
//! ## `MpiPool`
//!
//! Each rank runs its tasks in a local `ProcessPool`, so the worker-side cells are the ones
//! above. The MPI subset runs under `mpirun` in `mpi.rs`:
//! `crashes_aborts_exits_panics_and_timeouts_on_other_ranks_fail_only_their_tasks` (run ×
//! segfault, abort, timeout, exit(3), panic, and a result whose `Deserialize` panics on
//! rank 0, each with its rank and host, the ranks serving on after) and
//! `memory_limit_max_tasks_per_child_and_retries_hold_on_every_rank`.

mod common;
use common::deadline;
use multiproc::{Chunksize, Error, Executor, ProcessPool, StartMethod, TaskError, ThreadPool};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

multiproc::test_support!();

/// Tasks per cell.
const N: u64 = 8;
/// The one that carries the fault: the second item of the second chunk of four.
const FAULTY: u64 = 5;
const TIMEOUT: Duration = Duration::from_millis(300);
const MEMORY_LIMIT: u64 = 256 << 20;
/// The faulty item's size: past a quarter of a worker's ring, so it travels in a memfd.
const BIG: usize = 512 << 10;

/// Where a fault strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Step {
    ArgEncode,
    ArgDecode,
    Run,
    ResultEncode,
    ResultDecode,
    Callback,
}

/// What strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Fault {
    Error,
    Panic,
    Abort,
    Segfault,
    Exit0,
    Exit3,
    Kill,
    Stop,
    Loop,
    Alloc,
}

const FAULTS: [Fault; 10] = [
    Fault::Error,
    Fault::Panic,
    Fault::Abort,
    Fault::Segfault,
    Fault::Exit0,
    Fault::Exit3,
    Fault::Kill,
    Fault::Stop,
    Fault::Loop,
    Fault::Alloc,
];

/// The pool a cell runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Thread,
    Process(Method),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Method {
    ForkServer,
    Spawn,
}

/// What a cell must end with.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// The task's own `Err`, delivered as its result.
    UserError,
    Panicked,
    /// `Error::Serialize` from `submit`, `TaskError::Serialize` in `imap`.
    Serialize(&'static str),
    Deserialize(&'static str),
    Died {
        signal: Option<i32>,
        code: Option<i32>,
    },
    TimedOut,
    MemoryLimit,
    /// The fault is in the callback: the future's result is intact.
    ResultIntact,
    /// The process running the step is the caller's: it dies with this `exitcode`.
    ParentDies(i32),
    NotApplicable,
}

fn on_worker(step: Step) -> bool {
    matches!(step, Step::ArgDecode | Step::Run | Step::ResultEncode)
}

/// The table in the module docs.
fn expect(kind: Kind, step: Step, fault: Fault) -> Expect {
    use Expect::*;
    let codec = |ser: bool, msg: &'static str| {
        if ser {
            Serialize(msg)
        } else {
            Deserialize(msg)
        }
    };
    let is_ser = matches!(step, Step::ArgEncode | Step::ResultEncode);
    let thread = kind == Kind::Thread;
    if thread && !matches!(step, Step::Run | Step::Callback) {
        return NotApplicable;
    }
    match fault {
        Fault::Error => match step {
            Step::Run => UserError,
            Step::Callback => NotApplicable,
            // postcard's `Error::custom` keeps no message ("Serde Serialization Error"):
            // the variant and type name say what failed, the user's text is lost.
            _ => codec(is_ser, "Serde"),
        },
        Fault::Panic => match step {
            Step::Run => Panicked,
            Step::Callback => ResultIntact,
            _ => codec(is_ser, "injected panic"),
        },
        Fault::Abort | Fault::Segfault | Fault::Exit0 | Fault::Exit3 => {
            let (signal, code) = match fault {
                Fault::Abort => (Some(libc::SIGABRT), None),
                Fault::Segfault => (Some(libc::SIGSEGV), None),
                Fault::Exit0 => (None, Some(0)),
                _ => (None, Some(3)),
            };
            if on_worker(step) && !thread {
                Died { signal, code }
            } else {
                ParentDies(code.unwrap_or_else(|| -signal.unwrap()))
            }
        }
        Fault::Kill if on_worker(step) && !thread => Died {
            signal: Some(libc::SIGKILL),
            code: None,
        },
        Fault::Stop | Fault::Loop if on_worker(step) && !thread => TimedOut,
        Fault::Alloc if on_worker(step) && !thread => MemoryLimit,
        _ => NotApplicable,
    }
}

/// A task's argument and result. `Serialize`, `Deserialize` and the task inject `fault`
/// when `step` is theirs: `ArgEncode`/`ArgDecode` for an argument, `ResultEncode`/
/// `ResultDecode` for a result.
#[derive(Clone, PartialEq)]
struct Item {
    value: u64,
    is_result: bool,
    /// The pid that ran the task (results only).
    pid: u32,
    inject: Option<(Step, Fault)>,
    /// Where an injected `Kill` announces the pid to kill.
    marker: String,
    /// Bytes that make the faulty item [`BIG`]: it and its chunk travel out of band.
    pad: Vec<u8>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("value", &self.value)
            .field("is_result", &self.is_result)
            .field("pid", &self.pid)
            .field("inject", &self.inject)
            .field("pad_len", &self.pad.len())
            .finish()
    }
}

impl Item {
    fn strikes(&self, at: Step) -> Option<Fault> {
        self.inject.filter(|&(s, _)| s == at).map(|(_, f)| f)
    }
}

/// Fields before the point where a fault strikes, then the padding: a fault in
/// `Serialize` leaves half an item written, one in `Deserialize` half an item read.
const FIELDS: usize = 6;

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let at = if self.is_result {
            Step::ResultEncode
        } else {
            Step::ArgEncode
        };
        let mut t = s.serialize_tuple(FIELDS)?;
        t.serialize_element(&self.value)?;
        t.serialize_element(&self.is_result)?;
        t.serialize_element(&self.pid)?;
        t.serialize_element(&self.inject)?;
        t.serialize_element(&self.marker)?;
        if let Some(f) = self.strikes(at) {
            inject(f, &self.marker).map_err(serde::ser::Error::custom)?;
        }
        t.serialize_element(serde_bytes::Bytes::new(&self.pad))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an Item")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Item, A::Error> {
                use serde::de::Error;
                let mut next = || Error::custom("an Item is too short");
                let value = a.next_element()?.ok_or_else(&mut next)?;
                let is_result: bool = a.next_element()?.ok_or_else(&mut next)?;
                let pid = a.next_element()?.ok_or_else(&mut next)?;
                let inject_: Option<(Step, Fault)> = a.next_element()?.ok_or_else(&mut next)?;
                let marker: String = a.next_element()?.ok_or_else(&mut next)?;
                let at = if is_result {
                    Step::ResultDecode
                } else {
                    Step::ArgDecode
                };
                if inject_.is_some_and(|(s, _)| s == at) {
                    inject(inject_.unwrap().1, &marker).map_err(A::Error::custom)?;
                }
                let pad: serde_bytes::ByteBuf = a.next_element()?.ok_or_else(&mut next)?;
                Ok(Item {
                    value,
                    is_result,
                    pid,
                    inject: inject_,
                    marker,
                    pad: pad.into_vec(),
                })
            }
        }
        d.deserialize_tuple(FIELDS, V)
    }
}

/// Crashes this process with SIGSEGV, as a bug in native code does.
fn segfault() -> ! {
    // SAFETY: none, on purpose: a write through a null pointer is undefined behaviour, and
    // this test wants exactly what the kernel does with it (SIGSEGV ends the process).
    unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) };
    unreachable!("the null write did not fault")
}

/// Does `fault` here and now. Only `Error` returns, and `Alloc` where nothing limits it.
fn inject(fault: Fault, marker: &str) -> Result<(), String> {
    match fault {
        Fault::Error => Err("injected error".into()),
        Fault::Panic => panic!("injected panic"),
        Fault::Abort => std::process::abort(),
        Fault::Segfault => segfault(),
        Fault::Exit0 => std::process::exit(0),
        Fault::Exit3 => std::process::exit(3),
        Fault::Kill => {
            // Announce who to kill, then wait for it (the cell kills from outside).
            let tmp = format!("{marker}.tmp");
            std::fs::write(&tmp, std::process::id().to_string()).unwrap();
            std::fs::rename(&tmp, marker).unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Fault::Stop => {
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP)
                .unwrap();
            // Continued by someone: still never finish; the timeout must end it.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Fault::Loop => loop {
            std::hint::spin_loop()
        },
        Fault::Alloc => {
            let v = vec![1u8; 1 << 30];
            std::hint::black_box(&v);
            Ok(())
        }
    }
}

fn value_of(x: u64) -> u64 {
    x * 3 + 1
}

/// The task: its own fault at `Run`, else `value_of` its argument.
fn task(arg: Item) -> Result<Item, String> {
    if let Some(f) = arg.strikes(Step::Run) {
        inject(f, &arg.marker)?;
    }
    Ok(Item {
        value: value_of(arg.value),
        is_result: true,
        pid: std::process::id(),
        inject: arg.inject,
        marker: arg.marker,
        pad: arg.pad,
    })
}

fn pad(x: u64) -> Vec<u8> {
    (0..BIG).map(|i| (i as u64 * 31 + x) as u8).collect()
}

type Outcome = Result<Result<Item, String>, TaskError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Eight `submit`s.
    Submit,
    /// `imap_chunked` in chunks of four: the faulty item is inside a chunk.
    Chunked,
    /// `imap_unordered_chunked` in chunks of three: the faulty item ends a chunk.
    Unordered,
}

/// Runs one cell on `pool` and checks every task's outcome. Returns the pids seen (of
/// workers that ran a task or died), for the leftover check.
fn run_cell<E: Executor>(pool: &E, kind: Kind, step: Step, fault: Fault, mode: Mode) -> Vec<u32> {
    let marker = std::env::temp_dir()
        .join(format!(
            "mp-faults-{}-{kind:?}-{step:?}-{fault:?}-{mode:?}",
            std::process::id()
        ))
        .display()
        .to_string();
    let _ = std::fs::remove_file(&marker);
    let m = marker.clone();
    let items = (0..N).map(move |x| Item {
        value: x,
        is_result: false,
        pid: 0,
        inject: (x == FAULTY).then_some((step, fault)),
        marker: m.clone(),
        pad: if x == FAULTY { pad(x) } else { Vec::new() },
    });
    let killer = (fault == Fault::Kill).then(|| {
        let marker = marker.clone();
        std::thread::spawn(move || kill_when_announced(&marker))
    });
    let callbacks_ran = Arc::new(Mutex::new(Vec::new()));
    let outcomes: Vec<Outcome> = match mode {
        Mode::Submit => {
            let futs: Vec<_> = items
                .map(|item| {
                    let x = item.value;
                    let f = pool.submit(task, item)?;
                    if step == Step::Callback {
                        let ran = callbacks_ran.clone();
                        f.add_done_callback(move |_| {
                            ran.lock().unwrap().push(x);
                            if x == FAULTY {
                                let _ = inject(fault, "");
                            }
                        });
                        let ran = callbacks_ran.clone();
                        // A second callback of the same future runs after a faulty first.
                        f.add_done_callback(move |_| ran.lock().unwrap().push(100 + x));
                    }
                    Ok(f)
                })
                .collect();
            futs.into_iter()
                .map(|f: Result<_, Error>| match f {
                    Ok(f) => f.result(),
                    Err(Error::Serialize { type_name, message }) => Err(TaskError::Serialize {
                        index: None,
                        type_name: type_name.into(),
                        message,
                    }),
                    Err(e) => panic!("submit failed: {e:?}"),
                })
                .collect()
        }
        Mode::Chunked => pool
            .imap_chunked(task, items, Chunksize::Fixed(4))
            .collect(),
        Mode::Unordered => {
            // Put back in input order, by what each outcome says it is.
            let mut by_index: Vec<Option<Outcome>> = (0..N).map(|_| None).collect();
            for out in pool.imap_unordered_chunked(task, items, Chunksize::Fixed(3)) {
                let x = match &out {
                    Ok(Ok(item)) => ((item.value - 1) / 3) as usize,
                    Ok(Err(_)) => FAULTY as usize,
                    Err(e) => e.index().expect("an imap error has its index"),
                };
                assert!(by_index[x].replace(out).is_none(), "item {x} twice");
            }
            by_index
                .into_iter()
                .enumerate()
                .map(|(x, o)| o.unwrap_or_else(|| panic!("item {x} never came")))
                .collect()
        }
    };
    if let Some(k) = killer {
        k.join().unwrap();
    }
    let _ = std::fs::remove_file(&marker);
    assert_eq!(outcomes.len(), N as usize);
    let want = expect(kind, step, fault);
    let mut pids = Vec::new();
    for (x, out) in (0..N).zip(outcomes) {
        let what = format!("item {x} of {kind:?} {step:?} {fault:?} {mode:?}: {out:?}");
        if x != FAULTY || matches!(want, Expect::ResultIntact) {
            let r = out.unwrap_or_else(|e| panic!("{what}: {e}"));
            let r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.value, value_of(x), "{what}");
            assert!(
                r.pad == if x == FAULTY { pad(x) } else { Vec::new() },
                "{what}"
            );
            assert!(r.is_result, "{what}");
            pids.push(r.pid);
            continue;
        }
        let index = match mode {
            Mode::Chunked | Mode::Unordered => Some(x as usize),
            Mode::Submit => None,
        };
        match (&want, out) {
            (Expect::UserError, Ok(Err(e))) => assert_eq!(e, "injected error", "{what}"),
            (
                Expect::Panicked,
                Err(TaskError::Panicked {
                    index: i,
                    message,
                    pid,
                    ..
                }),
            ) => {
                assert_eq!(message, "injected panic", "{what}");
                assert_eq!(i, index, "{what}");
                pids.push(pid);
            }
            (
                Expect::Serialize(m),
                Err(TaskError::Serialize {
                    index: i, message, ..
                }),
            )
            | (
                Expect::Deserialize(m),
                Err(TaskError::Deserialize {
                    index: i, message, ..
                }),
            ) => {
                assert!(message.contains(m), "{what}");
                // A submit's argument that does not encode has no index: nothing was sent.
                if !(mode == Mode::Submit && step == Step::ArgEncode) {
                    assert_eq!(i, index, "{what}");
                }
            }
            (
                Expect::Died { signal, code },
                Err(TaskError::WorkerDied {
                    index: i,
                    pid,
                    status,
                }),
            ) => {
                assert_eq!((status.signal, status.code), (*signal, *code), "{what}");
                assert_eq!(i, index, "{what}");
                assert!(pid > 0, "{what}");
                pids.push(pid);
            }
            (
                Expect::TimedOut,
                Err(TaskError::TimedOut {
                    index: i,
                    timeout,
                    pid,
                }),
            ) => {
                assert_eq!(timeout, TIMEOUT, "{what}");
                assert_eq!(i, index, "{what}");
                pids.push(pid);
            }
            (
                Expect::MemoryLimit,
                Err(TaskError::MemoryLimit {
                    index: i,
                    limit,
                    pid,
                }),
            ) => {
                assert_eq!(limit, MEMORY_LIMIT, "{what}");
                assert_eq!(i, index, "{what}");
                pids.push(pid);
            }
            (want, _) => panic!("{what}: expected {want:?}"),
        }
    }
    if step == Step::Callback {
        // Every callback ran, the faulty one's second too, each exactly once.
        let mut ran = callbacks_ran.lock().unwrap().clone();
        ran.sort_unstable();
        let all: Vec<u64> = (0..N).chain((0..N).map(|x| 100 + x)).collect();
        assert_eq!(ran, all, "callbacks of {kind:?} {fault:?}");
    }
    pids
}

/// Waits for an injected `Kill` to announce its pid, then SIGKILLs it from here.
fn kill_when_announced(marker: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    let pid: i32 = loop {
        if let Some(p) = std::fs::read_to_string(marker)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            break p;
        }
        assert!(
            Instant::now() < end,
            "the faulty task never announced itself"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

fn process_pool(method: Method, fault: Fault) -> ProcessPool {
    let mut b = ProcessPool::builder()
        .workers(2)
        .start_method(match method {
            Method::ForkServer => StartMethod::ForkServer,
            Method::Spawn => StartMethod::Spawn,
        })
        .memory_limit(MEMORY_LIMIT);
    // Only where the fault needs one: a timeout on every cell could fire on a task slowed
    // by a loaded machine, or on a `Kill` cell before the kill lands.
    if matches!(fault, Fault::Stop | Fault::Loop) {
        b = b.task_timeout(TIMEOUT);
    }
    b.build().unwrap()
}

/// Cells run one at a time, so the leftover counts below belong to one cell.
static CELL: Mutex<()> = Mutex::new(());

/// What this process has that a cell could leak.
#[derive(Debug)]
struct Snapshot {
    fds: usize,
    procs: BTreeSet<u32>,
    shm: BTreeSet<String>,
}

/// Every process below this one, zombies included.
fn descendants() -> BTreeSet<u32> {
    common::descendants(std::process::id())
        .into_iter()
        .collect()
}

fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn snapshot() -> Snapshot {
    Snapshot {
        fds: common::fd_count(),
        procs: descendants(),
        shm: shm_entries(),
    }
}

/// Waits (5 s at most) until the processes, fds and segments are back to `before`, and
/// every pid in `seen` is gone. Segments count if a pid of ours or of a worker made them.
fn assert_no_leftover(before: &Snapshot, seen: &[u32], cell: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    let mut owners: BTreeSet<u32> = seen.iter().copied().collect();
    owners.insert(std::process::id());
    loop {
        let now = snapshot();
        let procs: Vec<u32> = now.procs.difference(&before.procs).copied().collect();
        let alive: Vec<u32> = seen
            .iter()
            .copied()
            .filter(|&p| p != std::process::id() && !before.procs.contains(&p) && !common::dead(p))
            .collect();
        owners.extend(&procs);
        let shm: Vec<&String> = now
            .shm
            .difference(&before.shm)
            .filter(|n| {
                owners
                    .iter()
                    .any(|p| n.starts_with(&format!("mp-{p}-")) || n.contains(&format!("-{p}-")))
            })
            .collect();
        let clean = procs.is_empty() && alive.is_empty() && now.fds <= before.fds && shm.is_empty();
        if clean {
            return;
        }
        if Instant::now() > end {
            let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            let l = std::fs::read_link(e.path()).unwrap_or_default();
                            format!("{}={}", e.file_name().to_string_lossy(), l.display())
                        })
                        .collect()
                })
                .unwrap_or_default();
            panic!(
                "{cell} left behind: processes {procs:?}, live pids {alive:?}, fds {} -> {} \
                 ({fds:?}), segments {shm:?}",
                before.fds, now.fds
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Takes the cell lock and, the first time, starts what lives as long as the program
/// (the fork server, the pools' manager thread, lazily opened files), so it is not counted
/// as a leak of the first cell.
fn cell_lock() -> std::sync::MutexGuard<'static, ()> {
    static WARM: std::sync::Once = std::sync::Once::new();
    let g = CELL.lock().unwrap_or_else(|e| e.into_inner());
    WARM.call_once(|| {
        for m in [Method::ForkServer, Method::Spawn] {
            for fault in [Fault::Alloc, Fault::Loop] {
                let pool = process_pool(m, fault);
                run_cell(
                    &pool,
                    Kind::Process(m),
                    Step::Run,
                    Fault::Error,
                    Mode::Chunked,
                );
            }
        }
        let pool = ThreadPool::new(2).unwrap();
        run_cell(&pool, Kind::Thread, Step::Run, Fault::Error, Mode::Submit);
        fn nothing(_: ()) {}
        let p = multiproc::Process::start(nothing, ()).unwrap();
        p.join();
    });
    g
}

/// Runs every fault at `step` on `kind`; collects every failing cell, then fails naming
/// them all. "Parent dies" cells run in a child process ([`parent_dies`]).
fn column(kind: Kind, step: Step) {
    let mut failed = Vec::new();
    for fault in FAULTS {
        let want = expect(kind, step, fault);
        // Kept to what each cell can reveal, so the file runs in well under a minute: a
        // parent's death does not depend on how its workers started (shown for every
        // fault under the fork server, for abort under spawn); a timeout or a memory limit
        // ends in the same death path as the other deaths (shown unordered).
        let modes: &[Mode] = match want {
            Expect::NotApplicable => &[],
            Expect::ParentDies(_) if kind == SPAWN && fault != Fault::Abort => &[],
            Expect::ParentDies(_) | Expect::ResultIntact => &[Mode::Submit],
            _ if step == Step::Callback => &[Mode::Submit],
            _ if matches!(fault, Fault::Stop | Fault::Loop | Fault::Alloc) => {
                &[Mode::Submit, Mode::Chunked]
            }
            _ => &[Mode::Submit, Mode::Chunked, Mode::Unordered],
        };
        for &mode in modes {
            let cell = format!("{kind:?} {step:?} {fault:?} {mode:?}");
            let _g = cell_lock();
            let want = want.clone();
            let r = std::panic::catch_unwind(move || {
                deadline(30, move || {
                    let before = snapshot();
                    let seen = match want {
                        Expect::ParentDies(code) => parent_dies(kind, step, fault, code),
                        _ => match kind {
                            Kind::Thread => {
                                let pool = ThreadPool::new(2).unwrap();
                                run_cell(&pool, kind, step, fault, mode)
                            }
                            Kind::Process(m) => {
                                let pool = process_pool(m, fault);
                                let mut seen = pool.initial_pids().to_vec();
                                seen.extend(run_cell(&pool, kind, step, fault, mode));
                                // The pool goes on after the fault, with replaced workers.
                                let again = run_cell(&pool, kind, Step::Run, Fault::Error, mode);
                                seen.extend(again);
                                seen
                            }
                        },
                    };
                    assert_no_leftover(
                        &before,
                        &seen,
                        &format!("{kind:?} {step:?} {fault:?} {mode:?}"),
                    );
                })
            });
            if let Err(p) = r {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{cell}: {msg}"));
            }
        }
    }
    assert!(failed.is_empty(), "failing cells:\n{}", failed.join("\n"));
}

/// Runs the cell in a child process whose pool it is; the child must die with `code`
/// (Python's `exitcode`: `-signal` or the exit code), and so must its workers. Returns
/// the pids it reported.
fn parent_dies(kind: Kind, step: Step, fault: Fault, code: i32) -> Vec<u32> {
    let report = std::env::temp_dir()
        .join(format!(
            "mp-faults-child-{}-{kind:?}-{step:?}-{fault:?}",
            std::process::id()
        ))
        .display()
        .to_string();
    let _ = std::fs::remove_file(&report);
    let child =
        multiproc::Process::start(doomed_parent, (kind, step, fault, report.clone())).unwrap();
    if !child.join_timeout(Duration::from_secs(20)) {
        let _ = child.kill();
        child.join();
        panic!("the child running {kind:?} {step:?} {fault:?} did not die");
    }
    let pids: Vec<u32> = std::fs::read_to_string(&report)
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let _ = std::fs::remove_file(&report);
    assert_eq!(
        child.exitcode(),
        Some(code),
        "the child running {kind:?} {step:?} {fault:?}"
    );
    if kind != Kind::Thread {
        assert!(!pids.is_empty(), "the child reported no worker");
    }
    // Orphaned by the child's death, the workers are init's to reap (this machine's init
    // takes about a second): dead is enough here; a zombie still below this process would
    // be caught by the leftover check.
    let end = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| !common::dead(p)) {
        assert!(
            Instant::now() < end,
            "workers outlived the child that owned them: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    pids
}

/// The child of [`parent_dies`]: reports its pool's workers, runs the cell (which must kill
/// it), and exits 77 if it survived.
fn doomed_parent((kind, step, fault, report): (Kind, Step, Fault, String)) {
    let pids = match kind {
        Kind::Thread => {
            std::fs::write(&report, "").unwrap();
            let pool = ThreadPool::new(2).unwrap();
            run_cell(&pool, kind, step, fault, Mode::Submit)
        }
        Kind::Process(m) => {
            let pool = process_pool(m, fault);
            let pids: Vec<String> = pool.initial_pids().iter().map(|p| p.to_string()).collect();
            std::fs::write(&report, pids.join(" ")).unwrap();
            run_cell(&pool, kind, step, fault, Mode::Submit)
        }
    };
    eprintln!("survived {kind:?} {step:?} {fault:?}: {pids:?}");
    std::process::exit(77)
}

macro_rules! columns {
    ($($name:ident: $kind:expr, $step:expr;)*) => {
        $(
            #[test]
            fn $name() {
                column($kind, $step);
            }
        )*
    };
}

const FS: Kind = Kind::Process(Method::ForkServer);
const SPAWN: Kind = Kind::Process(Method::Spawn);

columns! {
    forkserver_arg_encode: FS, Step::ArgEncode;
    forkserver_arg_decode: FS, Step::ArgDecode;
    forkserver_run: FS, Step::Run;
    forkserver_result_encode: FS, Step::ResultEncode;
    forkserver_result_decode: FS, Step::ResultDecode;
    forkserver_callback: FS, Step::Callback;
    spawn_arg_encode: SPAWN, Step::ArgEncode;
    spawn_arg_decode: SPAWN, Step::ArgDecode;
    spawn_run: SPAWN, Step::Run;
    spawn_result_encode: SPAWN, Step::ResultEncode;
    spawn_result_decode: SPAWN, Step::ResultDecode;
    spawn_callback: SPAWN, Step::Callback;
    thread_run: Kind::Thread, Step::Run;
    thread_callback: Kind::Thread, Step::Callback;
}

/// The table itself: every cell has an outcome, and the n/a cells are exactly the ones the
/// module docs explain.
#[test]
fn the_table_matches_the_docs() {
    let steps = [
        Step::ArgEncode,
        Step::ArgDecode,
        Step::Run,
        Step::ResultEncode,
        Step::ResultDecode,
        Step::Callback,
    ];
    let count = |kind: Kind, e: fn(&Expect) -> bool| {
        steps
            .iter()
            .flat_map(|&s| FAULTS.iter().map(move |&f| (s, f)))
            .filter(|&(s, f)| e(&expect(kind, s, f)))
            .count()
    };
    // ProcessPool: 3 worker steps × 10 faults, 2 codec steps × 2 (error, panic) + 1
    // callback panic = 35 checked in place, 3 × 4 parent deaths, the rest n/a.
    let in_place = |e: &Expect| !matches!(e, Expect::NotApplicable | Expect::ParentDies(_));
    assert_eq!(count(FS, in_place), 35);
    assert_eq!(count(FS, |e| matches!(e, Expect::ParentDies(_))), 12);
    assert_eq!(count(FS, |e| matches!(e, Expect::NotApplicable)), 60 - 47);
    // ThreadPool: run error and panic, callback panic; 2 × 4 deaths.
    assert_eq!(count(Kind::Thread, in_place), 3);
    assert_eq!(
        count(Kind::Thread, |e| matches!(e, Expect::ParentDies(_))),
        8
    );
}
