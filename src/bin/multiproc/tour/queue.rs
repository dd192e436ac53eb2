//! Experiment 7: a producer and a consumer process through a `Queue`; `None` is the
//! sentinel that tells the consumer to stop.

use std::time::Instant;

use multiproc::{Process, Queue, Result};
use serde_json::json;

use super::report::{f, thousands};
use super::{Cell, Ctx, Experiment, Row};

fn producer((queue, n): (Queue<Option<u64>>, u64)) {
    for i in 1..=n {
        queue.put(&Some(i)).expect("put an item");
    }
    queue.put(&None).expect("put the sentinel");
}

fn consumer((queue, results): (Queue<Option<u64>>, Queue<(u64, u64)>)) {
    let (mut count, mut sum) = (0, 0);
    while let Some(item) = queue.get().expect("get an item") {
        count += 1;
        sum += item;
    }
    results.put(&(count, sum)).expect("send the result");
}

pub(super) fn run(ctx: &Ctx) -> Result<Experiment> {
    let n: u64 = if ctx.quick { 10_000 } else { 100_000 };
    ctx.step(format!("Rust: {} items through a Queue", thousands(n)));
    let queue: Queue<Option<u64>> = Queue::new()?;
    let results: Queue<(u64, u64)> = Queue::new()?;
    let t = Instant::now();
    let ps = [
        Process::start(producer, (queue.clone(), n))?,
        Process::start(consumer, (queue.clone(), results.clone()))?,
    ];
    let (count, sum) = results.get()?;
    for p in &ps {
        p.join();
    }
    let wall = t.elapsed().as_secs_f64();
    let rust = json!({ "items": n, "consumed": count, "sum": sum, "wall_s": wall });
    let py = ctx.python("queue_sentinel.py", &[n.to_string()]);
    let note = |count: Option<f64>, sum: Option<f64>| match (count, sum) {
        (Some(c), Some(s)) => format!("{} items, sum {}", thousands(c as u64), thousands(s as u64)),
        _ => String::new(),
    };
    let rows = vec![Row::new(
        format!("producer -> Queue -> consumer, {} items", thousands(n)),
        Some(Cell::with(wall, note(Some(count as f64), Some(sum as f64)))),
        f(&py, &["wall_s"]).map(|w| Cell::with(w, note(f(&py, &["consumed"]), f(&py, &["sum"])))),
    )];
    Ok(Experiment {
        id: 7,
        title: format!(
            "Producer and consumer through a Queue ({} items, then None)",
            thousands(n)
        ),
        lesson: "a Queue carries items between processes in order, and a sentinel (None) is how \
                 the producer says it is done: the consumer stops at it, having seen every item."
            .into(),
        lines: Vec::new(),
        rows,
        bars: None,
        rust,
        python: py,
    })
}
