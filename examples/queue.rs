//! Producer/consumer over a `Queue` across processes, like Python's classic
//! `multiprocessing.Queue` example. Run: `cargo run --example queue`.

use multiproc::{JoinableQueue, Process, Queue};

fn square_worker(args: (JoinableQueue<u64>, Queue<(u64, u64)>)) {
    let (jobs, results) = args;
    while let Ok(n) = jobs.get() {
        results.put(&(n, n * n)).unwrap();
        jobs.task_done().unwrap();
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let jobs: JoinableQueue<u64> = JoinableQueue::bounded(16)?;
    let results: Queue<(u64, u64)> = Queue::new()?;
    let workers: Vec<Process> = (0..multiproc::cpu_count().min(4))
        .map(|_| Process::start(square_worker, (jobs.clone(), results.clone())))
        .collect::<Result<_, _>>()?;
    for n in 0..100 {
        jobs.put(&n)?;
    }
    jobs.join()?; // every job was marked done
    jobs.close(); // workers' `get` now fails: they return
    for w in &workers {
        w.join();
    }
    let mut sum = 0;
    while let Ok((_, sq)) = results.try_get() {
        sum += sq;
    }
    println!(
        "sum of squares 0..100 = {sum} (computed by {} processes)",
        workers.len()
    );
    assert_eq!(sum, (0..100u64).map(|n| n * n).sum::<u64>());
    Ok(())
}
