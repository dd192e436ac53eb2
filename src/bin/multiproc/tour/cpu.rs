//! Experiment 3: CPU-bound. The same recursive Fibonacci five times: serially, on 5 threads
//! and on 5 processes. Rust has no GIL, so threads scale like processes.

use std::hint::black_box;

use multiproc::{Executor, ProcessPool, Result, ThreadPool};
use serde_json::json;

use super::report::three_ways;
use super::{Ctx, Experiment, timed};

const TASKS: usize = 5;

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

/// One task: `black_box` hides the argument, so the compiler cannot compute the answer
/// while building (every task's input is the same constant).
fn task(n: u64) -> u64 {
    fib(black_box(n))
}

pub(super) fn run(ctx: &Ctx) -> Result<Experiment> {
    // Chosen so one task takes about 0.2 s in each language (0.02 s with --quick).
    let (n, py_n) = if ctx.quick { (36, 27) } else { (40, 32) };
    let tasks = vec![n; TASKS];

    ctx.step(format!("Rust: fib({n}) x {TASKS}, serially"));
    let (serial, serial_s) = timed(|| Ok(tasks.iter().map(|&x| task(x)).collect::<Vec<_>>()))?;
    let threads = ThreadPool::new(TASKS)?;
    ctx.step(format!("Rust: fib({n}) x {TASKS} on {TASKS} threads"));
    let (on_threads, threads_s) = timed(|| threads.map(task, tasks.clone()))?;
    drop(threads);
    let procs = ProcessPool::new(TASKS)?;
    ctx.step(format!("Rust: fib({n}) x {TASKS} on {TASKS} processes"));
    let (on_procs, procs_s) = timed(|| procs.map(task, tasks.clone()))?;
    drop(procs);
    assert!(serial == on_threads && serial == on_procs, "fib differs");

    let rust = json!({
        "n": n, "tasks": TASKS, "result": serial[0],
        "serial_s": serial_s.as_secs_f64(),
        "threads_s": threads_s.as_secs_f64(),
        "processes_s": procs_s.as_secs_f64(),
    });
    let py = ctx.python("cpu.py", &[py_n.to_string()]);
    let (rows, bars) = three_ways("CPU-bound (fib)", "5", &rust, &py);
    Ok(Experiment {
        id: 3,
        title: format!(
            "CPU-bound: fib({n}) five times in Rust, fib({py_n}) in Python (about {} s a task each)",
            if ctx.quick { 0.02 } else { 0.2 }
        ),
        lesson: format!(
            "Python's GIL runs one thread at a time, so its threads are no faster than serial \
             and only processes use more cores; Rust has no GIL, so threads and processes \
             both scale (up to the {} CPUs here).",
            multiproc::cpu_count()
        ),
        lines: Vec::new(),
        rows,
        bars: Some(bars),
        rust,
        python: py,
    })
}
