//! Experiment 6: a `Pool` of 6 workers maps x⁵ over 1..=12 with a short sleep per task,
//! telling which pid computed which value; then one `Process` per value.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use multiproc::{Executor, Pool, Process, Queue, Result};
use serde_json::{Value, json};

use super::report::f;
use super::{Cell, Ctx, Experiment, Row, timed};

const WORKERS: usize = 6;

fn power5((x, seconds): (u64, f64)) -> (u64, u64, u32) {
    std::thread::sleep(Duration::from_secs_f64(seconds));
    (x, x.pow(5), multiproc::current_process().pid())
}

fn power5_to_queue((x, seconds, queue): (u64, f64, Queue<(u64, u64, u32)>)) {
    queue.put(&power5((x, seconds))).expect("send the result");
}

fn summary(results: &[(u64, u64, u32)], wall: f64) -> Value {
    let pids: BTreeSet<u32> = results.iter().map(|r| r.2).collect();
    json!({
        "wall_s": wall,
        "results": results,
        "distinct_pids": pids.len(),
        "all_correct": results.iter().all(|&(x, y, _)| y == x.pow(5)),
    })
}

pub(super) fn run(ctx: &Ctx) -> Result<Experiment> {
    let seconds = if ctx.quick { 0.02 } else { 0.1 };
    let inputs: Vec<(u64, f64)> = (1..=12).map(|x| (x, seconds)).collect();

    ctx.step("Rust: Pool(6).map(x^5, 1..=12)");
    let pool = Pool::new(WORKERS)?;
    let (pooled, pool_s) = timed(|| pool.map(power5, inputs.clone()))?;
    pool.close();
    pool.join()?;
    let insights = ctx.insights.then(|| pool.insights());

    ctx.step("Rust: one Process per value");
    let queue: Queue<(u64, u64, u32)> = Queue::new()?;
    let t = Instant::now();
    let ps: Vec<Process> = inputs
        .iter()
        .map(|&(x, s)| Process::start(power5_to_queue, (x, s, queue.clone())))
        .collect::<Result<_>>()?;
    let mut one_each = ps.iter().map(|_| queue.get()).collect::<Result<Vec<_>>>()?;
    for p in &ps {
        p.join();
    }
    let procs_s = t.elapsed().as_secs_f64();
    one_each.sort();

    let mut lines = Vec::new();
    for (&(x, y, pid), &(_, _, own)) in pooled.iter().zip(&one_each) {
        lines.push(format!(
            "{x:>2}^5 = {y:>6}   Pool: pid {pid:<8} one Process each: pid {own}"
        ));
    }
    let mut rust = json!({
        "sleep_s": seconds,
        "pool": summary(&pooled, pool_s.as_secs_f64()),
        "processes": summary(&one_each, procs_s),
    });
    if let Some(ins) = &insights {
        rust["pool"]["insights"] = serde_json::to_value(ins).unwrap_or(Value::Null);
    }
    lines.push(format!(
        "Rust: the Pool's {} workers computed all 12; 12 Processes had {} pids",
        rust["pool"]["distinct_pids"], rust["processes"]["distinct_pids"]
    ));
    if let Some(ins) = &insights {
        lines.push(
            "Rust: the Pool's worker insights (pool.insights(), mpire's worker insights):".into(),
        );
        lines.extend(ins.to_string().lines().map(|l| format!("  {l}")));
    }
    let py = ctx.python("pool_map.py", &[seconds.to_string()]);
    if let Some(p) = &py {
        lines.push(format!(
            "Python: the Pool used {} pids; 12 Processes had {} pids",
            p["pool"]["distinct_pids"], p["processes"]["distinct_pids"]
        ));
    }
    let rows = vec![
        Row::new(
            "Pool(6).map over 12 values",
            rust["pool"]["wall_s"].as_f64().map(Cell::new),
            f(&py, &["pool", "wall_s"]).map(Cell::new),
        ),
        Row::new(
            "one Process per value (12)",
            rust["processes"]["wall_s"].as_f64().map(Cell::new),
            f(&py, &["processes", "wall_s"]).map(Cell::new),
        ),
    ];
    Ok(Experiment {
        id: 6,
        title: format!("Pool of 6 workers: x^5 over 1..=12, each task sleeps {seconds} s"),
        lesson: "a Pool keeps 6 worker processes and hands each several values (the same pids \
                 recur), so 12 tasks take two rounds of sleep; one Process per value pays a \
                 process start each but runs all 12 at once."
            .into(),
        lines,
        rows,
        bars: None,
        rust,
        python: py,
    })
}
