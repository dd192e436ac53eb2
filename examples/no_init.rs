//! A program that never calls `multiproc::init()`: it still starts worker processes, because
//! multiproc turns its own workers into workers before `main` runs.
//!
//! `cargo run --example no_init`

use multiproc::{Executor, ProcessPool};

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> multiproc::Result<()> {
    let pool = ProcessPool::new(2)?;
    let squares = pool.map(square, 0..10)?;
    println!("squares from worker processes: {squares:?}");
    assert_eq!(squares.iter().sum::<u64>(), 285);
    Ok(())
}
