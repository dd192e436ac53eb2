//! Locks and shared memory, side by side with the OS limit (a process-shared pthread mutex,
//! memcpy). Python equivalents: `bench/python/sync_*.py`.
//!
//! `cargo bench --bench sync` (add `-- --quick` for a short run).
//!
//! The pthread baselines need raw libc calls, hence the few `unsafe` blocks in this file:
//! they measure the operating system, not multiproc.

use std::hint::black_box;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multiproc::{Lock, Process, Semaphore, SharedMemory};

multiproc::test_support!();

// ---- process-shared pthread mutex (the OS limit) ---------------------------------------

/// A `pthread_mutex_t` (PTHREAD_PROCESS_SHARED) at offset 64 of `shm`, counter at 0.
fn init_pthread_mutex(shm: &mut SharedMemory) {
    let m = shm
        .as_ptr()
        .wrapping_add(64)
        .cast::<libc::pthread_mutex_t>();
    // SAFETY: `m` points into a live, 64-aligned mapping large enough for the mutex; the
    // attribute object is local and destroyed after use.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutex_init(m, &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
    }
}

fn pthread_count(shm: &SharedMemory, n: u64) {
    let base = shm.as_ptr();
    // SAFETY: the mutex was initialised by `init_pthread_mutex`; the counter at offset 0 is
    // only touched while the mutex is held, so the volatile accesses do not race.
    unsafe {
        let m = base.add(64).cast::<libc::pthread_mutex_t>();
        let c = base.cast::<u64>();
        for _ in 0..n {
            libc::pthread_mutex_lock(m);
            c.write_volatile(c.read_volatile() + 1);
            libc::pthread_mutex_unlock(m);
        }
    }
}

// ---- two processes incrementing one counter -----------------------------------------------

fn lock_worker((lock, shm, go, n): (Lock, SharedMemory, Semaphore, u64)) {
    go.acquire().forget();
    let counter = &shm.atomic_u64s()[0];
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        // A plain read-modify-write, made atomic only so it is sound: the lock orders it.
        counter.store(counter.load(Relaxed) + 1, Relaxed);
    }
}

fn pthread_worker((shm, go, n): (SharedMemory, Semaphore, u64)) {
    go.acquire().forget();
    pthread_count(&shm, n);
}

/// Starts two processes with `start`, releases them together, and times until both end.
fn two_processes(start: impl Fn(Semaphore) -> Process) -> Duration {
    let go = Semaphore::new(0).unwrap();
    let procs = [start(go.clone()), start(go.clone())];
    std::thread::sleep(Duration::from_millis(20)); // let both reach the starting line
    let t = Instant::now();
    go.release_n(2);
    for p in &procs {
        assert!(p.join_timeout(Duration::from_secs(120)));
        assert_eq!(p.exitcode(), Some(0));
    }
    t.elapsed()
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_processes_counter");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("multiproc_Lock", |b| {
        b.iter_custom(|iters| {
            let lock = Lock::new().unwrap();
            let shm = SharedMemory::create(64).unwrap();
            let n = iters.div_ceil(2);
            let d = two_processes(|go| {
                let arg = (lock.clone(), shm.clone_handle().unwrap(), go, n);
                Process::start(lock_worker, arg).unwrap()
            });
            assert_eq!(shm.atomic_u64s()[0].load(Relaxed), 2 * n);
            d
        })
    });
    g.bench_function("pthread_mutex_pshared", |b| {
        b.iter_custom(|iters| {
            let mut shm = SharedMemory::create(4096).unwrap();
            init_pthread_mutex(&mut shm);
            let n = iters.div_ceil(2);
            let d = two_processes(|go| {
                Process::start(pthread_worker, (shm.clone_handle().unwrap(), go, n)).unwrap()
            });
            assert_eq!(shm.atomic_u64s()[0].load(Relaxed), 2 * n);
            d
        })
    });
    g.finish();
}

// ---- uncontended ------------------------------------------------------------------------

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended_acquire_release");
    let lock = Lock::new().unwrap();
    g.bench_function("multiproc_Lock", |b| {
        b.iter(|| drop(black_box(&lock).acquire().unwrap()))
    });
    let rlock = multiproc::RLock::new().unwrap();
    g.bench_function("multiproc_RLock", |b| {
        b.iter(|| drop(black_box(&rlock).acquire().unwrap()))
    });
    let sem = Semaphore::new(1).unwrap();
    g.bench_function("multiproc_Semaphore", |b| {
        b.iter(|| drop(black_box(&sem).acquire()))
    });
    let mut shm = SharedMemory::create(4096).unwrap();
    init_pthread_mutex(&mut shm);
    let m = shm
        .as_ptr()
        .wrapping_add(64)
        .cast::<libc::pthread_mutex_t>();
    g.bench_function("pthread_mutex_pshared", |b| {
        // SAFETY: initialised above; the mapping outlives the benchmark.
        b.iter(|| unsafe {
            libc::pthread_mutex_lock(black_box(m));
            libc::pthread_mutex_unlock(m);
        })
    });
    let std_mutex = std::sync::Mutex::new(0u64);
    g.bench_function("std_Mutex_threads_only", |b| {
        b.iter(|| drop(black_box(&std_mutex).lock().unwrap()))
    });
    g.finish();
}

// ---- SharedMemory -------------------------------------------------------------------------

fn shm_lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_memory_4KiB");
    g.bench_function("create_open_unlink", |b| {
        b.iter(|| {
            let a = SharedMemory::create(4096).unwrap();
            let o = SharedMemory::open(a.name()).unwrap();
            drop(o);
            drop(a);
        })
    });
    // The OS floor: the same system calls with nothing around them (shm_open + ftruncate +
    // mmap, shm_open + fstat + mmap, munmap twice, shm_unlink).
    let mut i = 0u64;
    g.bench_function("os_floor_raw_syscalls", |b| {
        b.iter(|| {
            use rustix::{fs::Mode, shm};
            i += 1;
            let name = format!("mp-bench-floor-{}-{i}", std::process::id());
            let fd = shm::open(
                name.as_str(),
                shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
                Mode::from_raw_mode(0o600),
            )
            .unwrap();
            rustix::fs::ftruncate(&fd, 4096).unwrap();
            let fd2 = shm::open(name.as_str(), shm::OFlags::RDWR, Mode::empty()).unwrap();
            let len = rustix::fs::fstat(&fd2).unwrap().st_size as usize;
            // SAFETY: fresh shared mappings of live fds, unmapped right after; no Rust
            // reference is made into them.
            unsafe {
                use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};
                let rw = ProtFlags::READ | ProtFlags::WRITE;
                let a = mmap(std::ptr::null_mut(), 4096, rw, MapFlags::SHARED, &fd, 0).unwrap();
                let b = mmap(std::ptr::null_mut(), len, rw, MapFlags::SHARED, &fd2, 0).unwrap();
                munmap(b, len).unwrap();
                munmap(a, 4096).unwrap();
            }
            drop((fd, fd2));
            shm::unlink(name.as_str()).unwrap();
        })
    });
    g.finish();
}

const BIG: usize = 256 << 20;

fn copy_in((shm, go, done, n, safe): (SharedMemory, Semaphore, Semaphore, u64, bool)) {
    let src = vec![7u8; BIG]; // faulted in by the fill
    for _ in 0..n {
        go.acquire().forget();
        if safe {
            shm.write_at(0, &src).unwrap();
        } else {
            // SAFETY: the parent touches the segment only between `done` and the next `go`.
            unsafe { shm.as_mut_slice() }.copy_from_slice(&src);
        }
        done.release();
    }
}

fn big_copy(c: &mut Criterion) {
    let mut g = c.benchmark_group("copy_256MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(BIG as u64));
    let src = vec![1u8; BIG];
    let mut dst = vec![0u8; BIG];
    g.bench_function("memcpy_same_process", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    drop((src, dst));
    for (name, safe) in [
        ("to_another_process_via_SharedMemory", false),
        ("to_another_process_via_write_at", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let shm = SharedMemory::create(BIG).unwrap();
                // SAFETY: no other handle exists yet. Faults the pages in outside the timing.
                unsafe { shm.as_mut_slice() }.fill(0);
                let (go, done) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
                let arg = (
                    shm.clone_handle().unwrap(),
                    go.clone(),
                    done.clone(),
                    iters,
                    safe,
                );
                let p = Process::start(copy_in, arg).unwrap();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    go.release();
                    done.acquire().forget();
                    total += t.elapsed();
                    let mut last = [0u8];
                    shm.read_at(BIG - 1, &mut last).unwrap();
                    assert_eq!(last, [7]);
                }
                assert!(p.join_timeout(Duration::from_secs(60)));
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, uncontended, contended, shm_lifecycle, big_copy);
criterion_main!(benches);
