//! A task that panics, aborts, segfaults, exits or hangs costs one task, never the pool.
use multiproc::{Chunksize, Executor, ProcessPool};
use std::time::Duration;

fn risky(x: u32) -> u32 {
    match x {
        1 => panic!("bad input {x}"),
        2 => std::process::abort(),
        3 => std::process::exit(3),
        4 => loop {
            std::thread::sleep(Duration::from_secs(1))
        },
        _ => x * 100,
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let pool = ProcessPool::builder()
        .workers(2)
        .task_timeout(Duration::from_secs(1))
        .build()?;
    for (i, r) in pool
        .imap_chunked(risky, 0..8u32, Chunksize::Fixed(1))
        .enumerate()
    {
        match r {
            Ok(v) => println!("task {i}: {v}"),
            Err(e) => println!("task {i}: {e}"),
        }
    }
    Ok(())
}
