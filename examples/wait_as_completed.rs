//! wait(FIRST_COMPLETED) and as_completed over futures.
use multiproc::{Executor, ProcessPool, Return, as_completed, wait};
use std::time::Duration;

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let pool = ProcessPool::new(2)?;
    let futs: Vec<_> = [300, 50, 200]
        .into_iter()
        .map(|ms| pool.submit(nap, ms))
        .collect::<Result<_, _>>()?;
    let w = wait(&futs, Return::FirstCompleted, None);
    println!("first done: {:?}, still running: {:?}", w.done, w.not_done);
    for f in as_completed(futs) {
        println!("finished: {} ms", f.result()?);
    }
    Ok(())
}
