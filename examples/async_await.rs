//! A TaskFuture is a std Future: `.await` it in tokio (or any executor).
use multiproc::{Executor, ProcessPool};

fn cube(x: i64) -> i64 {
    x * x * x
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let pool = ProcessPool::new(2)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (a, b) = rt.block_on(async {
        tokio::join!(pool.submit(cube, 3).unwrap(), pool.submit(cube, 4).unwrap())
    });
    println!("3³ = {}, 4³ = {}", a?, b?);
    Ok(())
}
