//! Experiment 4: I/O-bound. Five tasks that each run the external command `sleep S` and
//! wait for it: serially (measured), on 5 threads and on 5 processes.

use multiproc::{Executor, ProcessPool, Result, ThreadPool};
use serde_json::json;

use super::report::three_ways;
use super::{Ctx, Experiment, timed};

const TASKS: usize = 5;

/// Runs `sleep <seconds>` and waits for it: a task that only waits on the operating system.
fn wait_on_child(seconds: String) -> bool {
    std::process::Command::new("sleep")
        .arg(seconds)
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn run(ctx: &Ctx) -> Result<Experiment> {
    let seconds = if ctx.quick { "0.2" } else { "2" };
    let tasks = vec![seconds.to_string(); TASKS];

    ctx.step(format!("Rust: `sleep {seconds}` x {TASKS}, serially"));
    let (serial, serial_s) =
        timed(|| Ok(tasks.iter().cloned().map(wait_on_child).collect::<Vec<_>>()))?;
    let threads = ThreadPool::new(TASKS)?;
    ctx.step(format!(
        "Rust: `sleep {seconds}` x {TASKS} on {TASKS} threads"
    ));
    let (on_threads, threads_s) = timed(|| threads.map(wait_on_child, tasks.clone()))?;
    drop(threads);
    let procs = ProcessPool::new(TASKS)?;
    ctx.step(format!(
        "Rust: `sleep {seconds}` x {TASKS} on {TASKS} processes"
    ));
    let (on_procs, procs_s) = timed(|| procs.map(wait_on_child, tasks.clone()))?;
    drop(procs);
    let all_ok = [serial, on_threads, on_procs]
        .iter()
        .flatten()
        .all(|&ok| ok);

    let rust = json!({
        "sleep_s": seconds.parse::<f64>().unwrap_or(0.0), "tasks": TASKS, "all_succeeded": all_ok,
        "serial_s": serial_s.as_secs_f64(),
        "threads_s": threads_s.as_secs_f64(),
        "processes_s": procs_s.as_secs_f64(),
    });
    let py = ctx.python("io.py", &[seconds.to_string()]);
    let (rows, bars) = three_ways("I/O-bound (sleep)", "5", &rust, &py);
    Ok(Experiment {
        id: 4,
        title: format!("I/O-bound: five tasks that each run `sleep {seconds}` and wait for it"),
        lesson: format!(
            "a task that waits holds no core (and Python releases the GIL while it waits), so \
             five waits on five threads or five processes take about {seconds} s instead of \
             five times that, in both languages."
        ),
        lines: if all_ok {
            Vec::new()
        } else {
            vec!["(a `sleep` command failed)".into()]
        },
        rows,
        bars: Some(bars),
        rust,
        python: py,
    })
}
