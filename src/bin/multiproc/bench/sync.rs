//! Locks and shared memory.

use std::time::Instant;

use multiproc::{Connection, Lock, Pipe, Process, Result, SharedMemory, Value};

use super::{Bench, Row, limits};

fn counter((lock, v, n, go): (Lock, Value<u64>, u64, Connection)) {
    let _: u8 = go.recv().expect("go");
    for _ in 0..n {
        let _g = lock.acquire().expect("lock");
        v.set_unsynchronized(v.get_unsynchronized() + 1);
    }
}

/// Two processes each adding 1 `n` times under one `Lock`: increments per second.
fn lock_2proc(n: u64) -> Result<f64> {
    let lock = Lock::new()?;
    let v = Value::new(0u64)?;
    let mut gos = Vec::new();
    let mut ps = Vec::new();
    for _ in 0..2 {
        let (go, theirs) = Pipe::duplex()?;
        ps.push(Process::start(
            counter,
            (lock.clone(), v.clone(), n, theirs),
        )?);
        gos.push(go);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t = Instant::now();
    for g in &gos {
        g.send(&1u8)?;
    }
    for p in &ps {
        p.join();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(v.get_unsynchronized(), 2 * n, "the Lock lost increments");
    Ok(2.0 * n as f64 / secs)
}

pub(super) fn run(b: &mut Bench) -> Result<()> {
    if b.wants(&["lock.incr_2proc"]) {
        let n = b.size(100_000, 1_000_000);
        let (v, limit) = b.median2(
            || lock_2proc(n).unwrap(),
            || limits::pthread_2proc(n).unwrap(),
        );
        b.push(Row::rate("lock.incr_2proc", "incr/s", v).limit(limit).py(n));
    }
    if b.wants(&["lock.uncontended"]) {
        let n = b.size(1_000_000, 10_000_000);
        let lock = Lock::new()?;
        let v = b.median(|| {
            let t = Instant::now();
            for _ in 0..n {
                drop(std::hint::black_box(&lock).acquire());
            }
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        });
        let limit = b.median(|| limits::pthread_uncontended(n).unwrap());
        b.push(Row::time("lock.uncontended", "ns", v).limit(limit).py(n));
    }
    if b.wants(&["shm.create_open_unlink"]) {
        let n = b.size(1_000, 10_000);
        let v = b.median(|| {
            let t = Instant::now();
            for _ in 0..n {
                let a = SharedMemory::create(4096).unwrap();
                let o = SharedMemory::open(a.name()).unwrap();
                drop(o);
                drop(a);
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        });
        let limit = b.median(|| limits::shm_syscalls(n));
        b.push(
            Row::time("shm.create_open_unlink", "µs", v)
                .limit(limit)
                .py(n),
        );
    }
    if b.wants(&["shm.copy_256MiB"]) {
        const BIG: usize = 256 << 20;
        let src = vec![7u8; BIG];
        let shm = SharedMemory::create(BIG)?;
        // SAFETY: this process alone maps the fresh segment, and no other view of it lives.
        unsafe { shm.as_mut_slice() }.fill(0); // fault the pages in outside the timing
        let v = b.median(|| {
            let t = Instant::now();
            // SAFETY: as above; the copy is the bare slice copy the limit is compared with.
            unsafe { shm.as_mut_slice() }.copy_from_slice(std::hint::black_box(&src));
            BIG as f64 / t.elapsed().as_secs_f64() / 1e9
        });
        drop((src, shm));
        let limit = b.median(|| limits::memcpy(BIG));
        b.push(Row::rate("shm.copy_256MiB", "GB/s", v).limit(limit).py(1));
    }
    Ok(())
}
