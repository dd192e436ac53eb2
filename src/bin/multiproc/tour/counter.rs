//! Experiment 5: a shared counter. Two workers each add 1 `COUNT` times, four ways: threads
//! with no lock (lost updates), threads with a lock, processes counting locally and sending
//! their sums through a `Queue`, processes adding into `SharedMemory` under a `Semaphore`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::{Barrier, Process, Queue, Result, Semaphore, SharedMemory, Thread};
use serde_json::{Value, json};

use super::report::{secs, thousands};
use super::{Cell, Ctx, Experiment, Row};

/// How long a worker waits at the start gate for the other one.
const GATE: Duration = Duration::from_secs(30);

/// Starts two threads running `body`, joins them; the wall time. Both pass a gate before
/// counting, so the two loops really overlap (a thread that started late could otherwise
/// count alone, and a race would not show).
fn on_two_threads(body: impl Fn() + Send + Sync + 'static) -> Result<f64> {
    let body = Arc::new(body);
    let gate = Arc::new(std::sync::Barrier::new(2));
    let ts: Vec<Thread> = (0..2)
        .map(|_| {
            let (b, g) = (body.clone(), gate.clone());
            Thread::new(move || {
                g.wait();
                b()
            })
        })
        .collect();
    let t = Instant::now();
    for th in &ts {
        th.start()?;
    }
    for th in &ts {
        th.join()?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Python's `counter += 1` with no lock: read, add, write back, as three steps. In Rust a
/// plain `u64` written by two threads would be a data race (undefined behaviour, and
/// rejected by the compiler); relaxed atomic loads and stores are well defined, and the
/// load-then-store pair loses updates exactly as the unlocked Python code can.
fn threads_no_lock(n: u64) -> Result<Value> {
    let counter = Arc::new(AtomicU64::new(0));
    let c = counter.clone();
    let wall = on_two_threads(move || {
        for _ in 0..black_box(n) {
            let v = c.load(Ordering::Relaxed);
            c.store(black_box(v) + 1, Ordering::Relaxed);
        }
    })?;
    Ok(json!({ "count_per_worker": n, "total": counter.load(Ordering::SeqCst), "wall_s": wall }))
}

/// The same with the counter behind a lock, taken for every addition.
fn threads_lock(n: u64) -> Result<Value> {
    let counter = Arc::new(Mutex::new(0u64));
    let c = counter.clone();
    let wall = on_two_threads(move || {
        for _ in 0..black_box(n) {
            let mut v = c.lock().unwrap_or_else(|p| p.into_inner());
            *v = black_box(*v) + 1;
        }
    })?;
    let total = *counter.lock().unwrap_or_else(|p| p.into_inner());
    Ok(json!({ "count_per_worker": n, "total": total, "wall_s": wall }))
}

/// Each process counts in a local variable and sends its sum once.
fn count_locally((n, queue, gate): (u64, Queue<u64>, Barrier)) {
    let _ = gate.wait_timeout(GATE);
    let mut local = 0u64;
    for _ in 0..black_box(n) {
        local = black_box(local) + 1;
    }
    queue.put(&local).expect("send the local count");
}

fn processes_queue(n: u64) -> Result<Value> {
    let queue: Queue<u64> = Queue::new()?;
    let gate = Barrier::new(2)?;
    let t = Instant::now();
    let ps: Vec<Process> = (0..2)
        .map(|_| Process::start(count_locally, (n, queue.clone(), gate.clone())))
        .collect::<Result<_>>()?;
    let total = queue.get()? + queue.get()?;
    for p in &ps {
        p.join();
    }
    Ok(json!({ "count_per_worker": n, "total": total, "wall_s": t.elapsed().as_secs_f64() }))
}

/// Adds 1 to the shared `u64`, `n` times, each under the semaphore.
fn add_shared((n, shm, sem, gate): (u64, SharedMemory, Semaphore, Barrier)) {
    let _ = gate.wait_timeout(GATE);
    // A plain load then store (not an atomic add): only the semaphore keeps the two
    // processes from losing each other's updates, as in the Python original.
    let cell = &shm.atomic_u64s()[0];
    for _ in 0..black_box(n) {
        let _permit = sem.acquire();
        cell.store(
            black_box(cell.load(Ordering::Relaxed)) + 1,
            Ordering::Relaxed,
        );
    }
}

fn processes_shared_memory(n: u64) -> Result<Value> {
    let shm = SharedMemory::create(8)?;
    let sem = Semaphore::new(1)?;
    let gate = Barrier::new(2)?;
    let t = Instant::now();
    let ps: Vec<Process> = (0..2)
        .map(|_| {
            Process::start(
                add_shared,
                (n, shm.clone_handle()?, sem.clone(), gate.clone()),
            )
        })
        .collect::<Result<_>>()?;
    for p in &ps {
        p.join();
    }
    let wall = t.elapsed().as_secs_f64();
    let exit_ok = ps.iter().all(|p| p.exitcode() == Some(0));
    let total = shm.atomic_u64s()[0].load(Ordering::Relaxed);
    Ok(json!({ "count_per_worker": n, "total": total, "wall_s": wall, "workers_ok": exit_ok }))
}

const VARIANTS: [(&str, &str); 4] = [
    ("threads_no_lock", "2 threads, no lock"),
    ("threads_lock", "2 threads, a lock per addition"),
    ("processes_queue", "2 processes, local sums sent by Queue"),
    (
        "processes_shared_memory",
        "2 processes, SharedMemory + Semaphore",
    ),
];

fn cell(v: Option<&Value>) -> Option<Cell> {
    let v = v?;
    let n = v["count_per_worker"].as_u64()?;
    let total = v["total"].as_u64()?;
    let exact = 2 * n;
    let mut note = format!("{} x 2 = {}", thousands(n), thousands(total));
    if total != exact {
        note += &format!(" (lost {})", thousands(exact.saturating_sub(total)));
    }
    Some(Cell::with(v["wall_s"].as_f64()?, note))
}

pub(super) fn run(ctx: &Ctx) -> Result<Experiment> {
    let n: u64 = if ctx.quick { 1_000_000 } else { 50_000_000 };
    // One lock per addition costs Python about 0.2 µs with a threading.Lock and 0.5 µs with
    // a Semaphore over shared memory: at full size that alone would be a minute, so Python's
    // locked variants add a tenth as many times (the rows say how many).
    let py_locked = n / 10;

    ctx.step(format!(
        "Rust: 2 threads x {} additions, no lock",
        thousands(n)
    ));
    let a = threads_no_lock(n)?;
    ctx.step(format!(
        "Rust: 2 threads x {} additions, with a lock",
        thousands(n)
    ));
    let b = threads_lock(n)?;
    ctx.step(format!(
        "Rust: 2 processes x {} additions, Queue",
        thousands(n)
    ));
    let c = processes_queue(n)?;
    ctx.step(format!(
        "Rust: 2 processes x {} additions, SharedMemory",
        thousands(n)
    ));
    let d = processes_shared_memory(n)?;
    let rust = json!({
        "threads_no_lock": a, "threads_lock": b,
        "processes_queue": c, "processes_shared_memory": d,
    });
    let py = ctx.python("counter.py", &[n.to_string(), py_locked.to_string()]);

    let rows = VARIANTS
        .iter()
        .map(|(k, what)| {
            Row::new(
                *what,
                cell(rust.get(k)),
                cell(py.as_ref().and_then(|p| p.get(k))),
            )
        })
        .collect();
    let mut lines = Vec::new();
    let lost = 2 * n - rust["threads_no_lock"]["total"].as_u64().unwrap_or(0);
    lines.push(format!(
        "Rust, no lock: {} of {} additions lost: both threads read the same value and \
         both wrote back value + 1",
        thousands(lost),
        thousands(2 * n)
    ));
    if let Some(total) = py
        .as_ref()
        .and_then(|p| p["threads_no_lock"]["total"].as_u64())
    {
        lines.push(format!(
            "Python, no lock: {} of {} additions lost (in {})",
            thousands((2 * n).saturating_sub(total)),
            thousands(2 * n),
            secs(
                py.as_ref()
                    .and_then(|p| p["threads_no_lock"]["wall_s"].as_f64())
                    .unwrap_or(0.0)
            )
        ));
    }
    Ok(Experiment {
        id: 5,
        title: format!(
            "A shared counter: two workers each add 1, {} times",
            thousands(n)
        ),
        lesson: "`counter += 1` is read, add, write: two threads with no lock lose updates; \
                 CPython 3.10+ hides it because it switches threads only at a call or a \
                 loop's jump back, never between the read and the write (free-threaded 3.13t \
                 loses them again); a lock makes every total exact and costs every addition, \
                 so counting locally and sending one sum through a Queue is both exact and \
                 fastest."
            .into(),
        lines,
        rows,
        bars: None,
        rust,
        python: py,
    })
}
