//! submit → future: result, timeout, callback, cancel (concurrent.futures style).
use multiproc::{Executor, ProcessPool};
use std::time::Duration;

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100));
    x * x
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let pool = ProcessPool::new(2)?;
    let fut = pool.submit(slow_square, 7)?;
    fut.add_done_callback(|r| println!("callback saw {r:?}"));
    println!("done yet? {}", fut.done());
    println!("7² = {}", fut.result()?);

    let long = pool.submit(slow_square, 9)?;
    match long.result_timeout(Duration::from_millis(10)) {
        Err(multiproc::Error::Timeout(d)) => println!("not ready after {d:?}; cancelling"),
        other => println!("{other:?}"),
    }
    println!("cancelled: {}", long.cancel());
    Ok(())
}
