//! Experiment 2: the life of a `Thread` and of a `Process`. Three of each start, nap, and
//! are joined; `is_alive()` before and after `join`, then `threading::enumerate()` and
//! `active_children()` once all are done.

use std::time::{Duration, Instant};

use multiproc::{Process, Result, Thread};
use serde_json::{Value, json};

use super::report::f;
use super::{Cell, Ctx, Experiment, Row};

fn nap(seconds: f64) {
    std::thread::sleep(Duration::from_secs_f64(seconds));
}

fn threads(lines: &mut Vec<String>, seconds: f64) -> Result<Value> {
    let ts: Vec<Thread> = (1..=3)
        .map(|i| {
            Thread::builder()
                .name(format!("Thread-{i}"))
                .target(move || nap(seconds))
        })
        .collect();
    let t = Instant::now();
    for th in &ts {
        th.start()?;
    }
    let mut rows = Vec::new();
    for th in &ts {
        rows.push(json!({
            "name": th.name(),
            "ident": th.ident(),
            "alive_before_join": th.is_alive(),
        }));
    }
    for (th, row) in ts.iter().zip(&mut rows) {
        th.join()?;
        row["alive_after_join"] = th.is_alive().into();
        lines.push(format!(
            "{:<9} ident {:<16} is_alive() {} before join, {} after",
            th.name(),
            th.ident().unwrap_or(0),
            row["alive_before_join"],
            row["alive_after_join"],
        ));
    }
    let wall = t.elapsed().as_secs_f64();
    let names: Vec<String> = multiproc::enumerate()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    lines.push(format!(
        "threading::enumerate() when all are done: {names:?}"
    ));
    Ok(json!({ "wall_s": wall, "threads": rows, "enumerate": names }))
}

fn processes(lines: &mut Vec<String>, seconds: f64) -> Result<Value> {
    let t = Instant::now();
    let ps: Vec<Process> = (1..=3)
        .map(|i| {
            Process::builder()
                .name(format!("Process-{i}"))
                .start(nap, seconds)
        })
        .collect::<Result<_>>()?;
    let mut rows: Vec<Value> = ps
        .iter()
        .map(|p| json!({ "name": p.name(), "pid": p.pid(), "alive_before_join": p.is_alive() }))
        .collect();
    for (p, row) in ps.iter().zip(&mut rows) {
        p.join();
        row["alive_after_join"] = p.is_alive().into();
        row["exitcode"] = p.exitcode().into();
        lines.push(format!(
            "{:<9} pid {:<20} is_alive() {} before join, {} after (exitcode {})",
            p.name(),
            p.pid(),
            row["alive_before_join"],
            row["alive_after_join"],
            row["exitcode"],
        ));
    }
    let wall = t.elapsed().as_secs_f64();
    let children: Vec<String> = multiproc::active_children()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    lines.push(format!("active_children() when all are done: {children:?}"));
    Ok(json!({ "wall_s": wall, "processes": rows, "active_children": children }))
}

pub(super) fn run(ctx: &Ctx) -> Result<Experiment> {
    let seconds = if ctx.quick { 0.1 } else { 0.3 };
    let mut lines = Vec::new();
    ctx.step("Rust: three Threads");
    let on_threads = threads(&mut lines, seconds)?;
    ctx.step("Rust: three Processes");
    let on_procs = processes(&mut lines, seconds)?;
    let py = ctx.python("lifecycle.py", &[seconds.to_string()]);
    if let Some(p) = &py {
        lines.push(format!(
            "Python: enumerate() {} / active_children() {} when all are done",
            p["threads"]["enumerate"], p["processes"]["active_children"]
        ));
    }
    let rows = vec![
        Row::new(
            "start, nap, join 3 threads",
            on_threads["wall_s"].as_f64().map(Cell::new),
            f(&py, &["threads", "wall_s"]).map(Cell::new),
        ),
        Row::new(
            "start, nap, join 3 processes",
            on_procs["wall_s"].as_f64().map(Cell::new),
            f(&py, &["processes", "wall_s"]).map(Cell::new),
        ),
    ];
    Ok(Experiment {
        id: 2,
        title: format!("Thread and Process life cycles (each naps {seconds} s)"),
        lesson: "a thread has an ident inside this process, a process has its own pid; both \
                 are alive until joined, and once joined neither enumerate() nor \
                 active_children() lists them: nothing is left running."
            .into(),
        lines,
        rows,
        bars: None,
        rust: json!({ "sleep_s": seconds, "threads": on_threads, "processes": on_procs }),
        python: py,
    })
}
