//! The classic experiment of every Python multiprocessing tutorial, in Rust.

use std::time::{Duration, Instant};

use multiproc::{Executor, ProcessPool, Result, ThreadPool};

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn wait_on_child(secs: u64) -> bool {
    std::process::Command::new("sleep")
        .arg(secs.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

pub(crate) fn run(n: u64, sleep: u64) -> Result<()> {
    let cpus = multiproc::cpu_count();
    const TASKS: usize = 5;
    println!("multiproc tour: threads or processes?  ({cpus} CPUs, {TASKS} tasks per row)\n");

    let inputs = vec![n; TASKS];
    let serial = time(|| Ok(inputs.iter().map(|&x| fib(x)).collect::<Vec<_>>()))?;
    let threads = ThreadPool::new(cpus)?;
    let procs = ProcessPool::new(cpus)?;
    let on_threads = time(|| threads.map(fib, inputs.clone()))?;
    let on_procs = time(|| procs.map(fib, inputs.clone()))?;

    let io_threads = ThreadPool::new(TASKS)?;
    let io_procs = ProcessPool::new(TASKS)?;
    let io_inputs = vec![sleep; TASKS];
    let io_serial = Duration::from_secs(sleep * TASKS as u64);
    let io_on_threads = time(|| io_threads.map(wait_on_child, io_inputs.clone()))?;
    let io_on_procs = time(|| io_procs.map(wait_on_child, io_inputs.clone()))?;

    let row = |what: &str, how: &str, d: Duration, base: Duration| {
        println!(
            "{what:<34} {how:<22} {:>9.3} s {:>8.2}x",
            d.as_secs_f64(),
            base.as_secs_f64() / d.as_secs_f64()
        );
    };
    println!(
        "{:<34} {:<22} {:>11} {:>9}",
        "work", "run on", "wall", "speed-up"
    );
    println!("{}", "-".repeat(80));
    row(&format!("CPU: fib({n})"), "serial", serial, serial);
    row(
        &format!("CPU: fib({n})"),
        &format!("ThreadPool({cpus})"),
        on_threads,
        serial,
    );
    row(
        &format!("CPU: fib({n})"),
        &format!("ProcessPool({cpus})"),
        on_procs,
        serial,
    );
    row(
        &format!("I/O: wait on `sleep {sleep}`"),
        "serial (computed)",
        io_serial,
        io_serial,
    );
    row(
        &format!("I/O: wait on `sleep {sleep}`"),
        &format!("ThreadPool({TASKS})"),
        io_on_threads,
        io_serial,
    );
    row(
        &format!("I/O: wait on `sleep {sleep}`"),
        &format!("ProcessPool({TASKS})"),
        io_on_procs,
        io_serial,
    );
    println!(
        "\nPython's lesson is \"threads for I/O, processes for CPU\", because the GIL lets one\n\
         thread run Python code at a time. Rust has no GIL: threads run CPU work in parallel\n\
         too, as the table shows. Use processes in Rust for what threads cannot give:\n\
         a task that segfaults, aborts, leaks or hangs costs one worker, never the program."
    );
    Ok(())
}
