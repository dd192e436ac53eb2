//! map, starmap, imap, imap_unordered (multiprocessing.Pool style), with a progress bar.
use multiproc::{Executor, ProcessPool};

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let pool = ProcessPool::builder().workers(2).progress(true).build()?;
    println!("map:      {:?}", pool.map(fib, 0..15)?);
    println!(
        "starmap:  {:?}",
        pool.starmap(add, vec![(1, 2), (3, 4), (5, 6)])?
    );
    fn square(x: u64) -> u64 {
        x * x
    }
    let first: Vec<u64> = pool
        .imap(square, 0..1_000_000u64)
        .take(5)
        .map(|r| r.unwrap())
        .collect();
    println!("imap (lazy over a million inputs, first 5): {first:?}");
    let mut any: Vec<u64> = pool
        .imap_unordered(fib, 20..25)
        .map(|r| r.unwrap())
        .collect();
    any.sort();
    println!("imap_unordered: {any:?}");
    Ok(())
}
