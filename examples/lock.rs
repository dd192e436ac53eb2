//! Processes sharing a counter under a `Lock`, and what happens when one of them dies while
//! holding it: the next acquirer is told, instead of hanging forever as in Python.
//!
//! `cargo run --release --example lock`

use std::time::{Duration, Instant};

use multiproc::{AcquireError, Event, Lock, Process, Value};

fn add(counter: Value<u64>) {
    for _ in 0..1_000_000 {
        *counter.lock().unwrap() += 1;
    }
}

fn die_holding((lock, held): (Lock, Event)) {
    let _guard = lock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(3600)); // killed before this ends
}

fn main() -> multiproc::Result<()> {
    multiproc::init();

    let counter = Value::new(0u64)?;
    let t = Instant::now();
    let procs: Vec<_> = (0..2)
        .map(|_| Process::start(add, counter.clone()))
        .collect::<multiproc::Result<_>>()?;
    procs.iter().for_each(|p| p.join());
    println!(
        "2 processes x 1,000,000 increments under the lock: {} in {:?}",
        counter.get()?,
        t.elapsed()
    );

    let lock = Lock::new()?;
    let held = Event::new()?;
    let p = Process::start(die_holding, (lock.clone(), held.clone()))?;
    held.wait();
    p.kill()?;
    let killed = Instant::now();
    match lock.acquire_timeout(Duration::from_secs(5)) {
        Err(AcquireError::OwnerDied(mut guard)) => {
            println!(
                "the holder died; we hold the lock after {:?}",
                killed.elapsed()
            );
            // ... repair the data the lock protects, then:
            guard.mark_consistent();
        }
        Ok(_) => println!("acquired normally (unexpected)"),
        Err(e) => println!("error: {e}"),
    }
    drop(lock.acquire()?);
    println!("the lock works normally again");
    Ok(())
}
