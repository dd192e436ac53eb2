//! One generic function, run unchanged on a ThreadPool and on a ProcessPool.
use multiproc::{Executor, ProcessPool, ThreadPool};
use std::time::Instant;

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn run(name: &str, pool: &impl Executor) -> multiproc::Result<()> {
    let t = Instant::now();
    let v = pool.map(fib, vec![32; 8])?;
    println!("{name:<12} {:?} in {:?}", &v[..2], t.elapsed());
    Ok(())
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    run("ThreadPool", &ThreadPool::new(multiproc::cpu_count())?)?;
    run("ProcessPool", &ProcessPool::new(multiproc::cpu_count())?)?;
    Ok(())
}
