//! Share a big array between processes through one shared memory segment (nothing goes
//! through a pipe), and hand a segment to a Python process.
//!
//! `cargo run --release --example shared_memory`

use std::time::{Duration, Instant};

use multiproc::{Array, Process, SharedMemory};

/// Each worker fills its own quarter of the array (the guard copies the array in when the
/// lock is taken and back when it is released).
fn fill((data, part, parts): (Array<f64>, usize, usize)) {
    let mut values = data.lock().unwrap();
    let chunk = values.len() / parts;
    for (i, x) in values[part * chunk..(part + 1) * chunk]
        .iter_mut()
        .enumerate()
    {
        *x = ((part * chunk + i) as f64).sqrt();
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init();

    // 1. A typed array that worker processes update under its lock.
    let data = Array::<f64>::new(1 << 20)?;
    let t = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|part| Process::start(fill, (data.clone(), part, 4)))
        .collect::<multiproc::Result<_>>()?;
    for w in &workers {
        assert!(w.join_timeout(Duration::from_secs(60)));
    }
    let sum: f64 = data.lock().unwrap().iter().sum();
    println!(
        "4 processes filled 1 Mi f64 in {:?}; sum = {sum:.1}",
        t.elapsed()
    );

    // 2. Raw bytes that a Python process can read, by name.
    let shm = SharedMemory::create(64)?;
    shm.write_at(0, b"hello, python!")?;
    println!(
        "segment {} ({} bytes). From Python 3:",
        shm.name(),
        shm.len()
    );
    println!("  from multiprocessing import shared_memory, resource_tracker");
    println!("  s = shared_memory.SharedMemory(name={:?})", shm.name());
    println!("  resource_tracker.unregister(s._name, 'shared_memory')  # CPython gh-82300");
    println!("  print(bytes(s.buf[:14]))");
    if let Ok(out) = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "from multiprocessing import shared_memory, resource_tracker\n\
             s = shared_memory.SharedMemory(name={:?})\n\
             resource_tracker.unregister(s._name, 'shared_memory')\n\
             print(bytes(s.buf[:14]).decode())",
            shm.name()
        ))
        .output()
    {
        println!(
            "python says: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(()) // `shm` and `data` are unlinked here, by their creator
}
