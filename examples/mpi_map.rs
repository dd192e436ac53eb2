//! The same map on one machine or many: run it with
//! `mpirun -n 4 --oversubscribe target/debug/examples/mpi_map` (or `srun`, or a hostfile).
//! Rank 0 prints; every other rank serves tasks and exits when rank 0 is done.
use std::time::Duration;

use multiproc::{Executor, MpiPool, TaskError};

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

/// The work, written against the Executor trait: it runs unchanged on a ThreadPool, a
/// ProcessPool or an MpiPool.
fn fibs(pool: &impl Executor) -> multiproc::Result<Vec<u64>> {
    pool.map(fib, 0..30)
}

fn crash(n: u64) -> u64 {
    if n == 1 {
        // A crash in native code; here, the simplest one.
        std::process::abort();
    }
    n
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let Some(pool) = MpiPool::builder()
        .workers(1)
        .task_timeout(Duration::from_secs(60))
        .world()?
    else {
        return Ok(()); // a serving rank: rank 0 shut the pool down
    };
    for r in pool.ranks() {
        println!("rank {} on {}: {} local workers", r.rank, r.host, r.workers);
    }
    println!("fib(0..30) = {:?}", fibs(&pool)?);
    // A crashing task costs that task, never a rank or the job.
    for r in pool.imap(crash, 0..3) {
        match r {
            Ok(v) => println!("ok {v}"),
            Err(e @ TaskError::OnRank { .. }) => println!("failed: {e}"),
            Err(e) => println!("failed: {e}"),
        }
    }
    Ok(())
}
