//! Experiment 1: three tasks that each sleep, then report a sum with a timestamp, on a
//! `ThreadPool` and on a `ProcessPool`. A sleeping task holds no core, so all three finish
//! in the same second either way.

use std::time::Duration;

use multiproc::{Executor, ProcessPool, Result, ThreadPool};
use serde_json::{Value, json};

use super::report::{f, secs};
use super::{Cell, Ctx, Experiment, Row, timed, unix_now};

const SIZES: [u64; 3] = [10, 100, 1000];

/// Sleeps, then sums 1..=n; returns the sum, when it finished, and who ran it.
fn task((n, seconds): (u64, f64)) -> (u64, f64, u32) {
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let sum = (1..=std::hint::black_box(n)).sum();
    (sum, unix_now(), multiproc::current_process().pid())
}

/// "16:02:03.456" (UTC) of a Unix time.
fn clock(t: f64) -> String {
    let ms = (t * 1000.0) as u64;
    let (h, m, s) = (ms / 3_600_000 % 24, ms / 60_000 % 60, ms / 1000 % 60);
    format!("{h:02}:{m:02}:{s:02}.{:03}", ms % 1000)
}

fn side(
    lines: &mut Vec<String>,
    how: &str,
    out: Vec<(u64, f64, u32)>,
    start: f64,
    wall: Duration,
) -> Value {
    let finished: Vec<f64> = out.iter().map(|&(_, t, _)| t - start).collect();
    for (&n, &(sum, t, pid)) in SIZES.iter().zip(&out) {
        lines.push(format!(
            "{how:<11} {} UTC (+{}) pid {pid}: sum(1..={n}) = {sum}",
            clock(t),
            secs(t - start)
        ));
    }
    let spread = finished.iter().cloned().fold(f64::MIN, f64::max)
        - finished.iter().cloned().fold(f64::MAX, f64::min);
    json!({
        "wall_s": wall.as_secs_f64(),
        "sums": out.iter().map(|o| o.0).collect::<Vec<_>>(),
        "finished_after_s": finished,
        "pids": out.iter().map(|o| o.2).collect::<Vec<_>>(),
        "spread_s": spread,
    })
}

pub(super) fn run(ctx: &Ctx) -> Result<Experiment> {
    let seconds = if ctx.quick { 0.2 } else { 1.0 };
    let inputs: Vec<(u64, f64)> = SIZES.iter().map(|&n| (n, seconds)).collect();
    let mut lines = Vec::new();

    ctx.step("Rust: 3 sleepers on a ThreadPool(3)");
    let threads = ThreadPool::new(3)?;
    let start = unix_now();
    let (out, wall) = timed(|| threads.map(task, inputs.clone()))?;
    let on_threads = side(&mut lines, "ThreadPool", out, start, wall);
    drop(threads);

    ctx.step("Rust: 3 sleepers on a ProcessPool(3)");
    let procs = ProcessPool::new(3)?;
    let start = unix_now();
    let (out, wall) = timed(|| procs.map(task, inputs.clone()))?;
    let on_procs = side(&mut lines, "ProcessPool", out, start, wall);
    drop(procs);

    let py = ctx.python("sleepers.py", &[seconds.to_string()]);
    let rust = json!({ "sleep_s": seconds, "threads": on_threads, "processes": on_procs });
    let cell = |v: &Value, k: &str| {
        Cell::with(
            v[k]["wall_s"].as_f64().unwrap_or(0.0),
            format!(
                "finished within {}",
                secs(v[k]["spread_s"].as_f64().unwrap_or(0.0))
            ),
        )
    };
    let pycell = |k: &str| {
        Some(Cell::with(
            f(&py, &[k, "wall_s"])?,
            format!("finished within {}", secs(f(&py, &[k, "spread_s"])?)),
        ))
    };
    let rows = vec![
        Row::new(
            "3 tasks on 3 threads",
            Some(cell(&rust, "threads")),
            pycell("threads"),
        ),
        Row::new(
            "3 tasks on 3 processes",
            Some(cell(&rust, "processes")),
            pycell("processes"),
        ),
    ];
    Ok(Experiment {
        id: 1,
        title: format!("Three tasks that each sleep {seconds} s, then print a sum"),
        lesson: format!(
            "a sleeping task holds no CPU, so three of them on three workers all finish \
             after about {seconds} s, threads or processes, Rust or Python."
        ),
        lines,
        rows,
        bars: None,
        rust,
        python: py,
    })
}
