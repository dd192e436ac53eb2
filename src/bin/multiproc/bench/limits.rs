//! The limits: each mechanism written the simplest correct way, with nothing of
//! multiproc in it, measured in the same run as multiproc's version.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use multiproc::{Connection, Pipe, Process, SharedMemory};

use crate::sys;

fn ident(x: u64) -> u64 {
    x
}

fn write_all(fd: impl AsFd, mut b: &[u8]) {
    while !b.is_empty() {
        let n = rustix::io::write(&fd, b).expect("write");
        b = &b[n..];
    }
}

/// A worker of the minimal process pool: reads 8-byte tasks, writes one 8-byte result per
/// task, one `write` each.
fn pipe_worker(c: Connection) {
    let mut buf = vec![0u8; 1 << 16];
    let mut have = 0;
    loop {
        match rustix::io::read(c.as_fd(), &mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        let whole = have / 8 * 8;
        for t in buf[..whole].chunks_exact(8) {
            let r = ident(u64::from_le_bytes(t.try_into().unwrap()));
            write_all(c.as_fd(), &r.to_le_bytes());
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
}

/// The minimal process pool: two worker processes, one pipe write per task and one per
/// result, tasks streamed by one thread while another collects.
pub(super) struct PipePool {
    conns: Vec<Arc<Connection>>,
    procs: Vec<Process>,
}

impl PipePool {
    pub(super) fn new(workers: usize) -> multiproc::Result<PipePool> {
        let mut conns = Vec::new();
        let mut procs = Vec::new();
        for _ in 0..workers {
            let (mine, theirs) = Pipe::duplex()?;
            procs.push(Process::start(pipe_worker, theirs)?);
            conns.push(Arc::new(mine));
        }
        Ok(PipePool { conns, procs })
    }

    /// µs per task for `n` tasks.
    pub(super) fn per_task(&self, n: u64) -> f64 {
        let t = Instant::now();
        let conns = self.conns.clone();
        let feeder = std::thread::spawn(move || {
            for i in 0..n {
                write_all(conns[(i as usize) % conns.len()].as_fd(), &i.to_le_bytes());
            }
        });
        let mut left: Vec<u64> = (0..self.conns.len() as u64)
            .map(|w| (n + self.conns.len() as u64 - 1 - w) / self.conns.len() as u64)
            .collect();
        let mut partial = vec![0usize; self.conns.len()];
        let mut buf = vec![0u8; 1 << 16];
        let mut sum = 0u64;
        while left.iter().any(|&l| l > 0) {
            let mut fds: Vec<_> = self
                .conns
                .iter()
                .map(|c| rustix::event::PollFd::new(c.as_ref(), rustix::event::PollFlags::IN))
                .collect();
            rustix::event::poll(&mut fds, None).expect("poll");
            let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
            for (w, c) in self.conns.iter().enumerate() {
                if !ready[w] || left[w] == 0 {
                    continue;
                }
                let got = rustix::io::read(c.as_fd(), &mut buf).expect("read");
                let bytes = partial[w] + got;
                left[w] -= (bytes / 8) as u64;
                partial[w] = bytes % 8;
                sum = sum.wrapping_add(std::hint::black_box(got as u64));
            }
        }
        feeder.join().unwrap();
        std::hint::black_box(sum);
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    }
}

impl Drop for PipePool {
    fn drop(&mut self) {
        self.conns.clear();
        for p in &self.procs {
            p.join();
        }
    }
}

/// The bare thread pool: two threads, one channel of boxed jobs in, one channel of
/// results out; no per-task future or channel. µs per task.
pub(super) fn bare_thread_pool(n: u64) -> f64 {
    type Job = Box<dyn FnOnce() -> u64 + Send>;
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let (rtx, rrx) = crossbeam_channel::unbounded::<u64>();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let (rx, rtx) = (rx.clone(), rtx.clone());
            std::thread::spawn(move || {
                while let Ok(j) = rx.recv() {
                    let _ = rtx.send(j());
                }
            })
        })
        .collect();
    let t = Instant::now();
    for i in 0..n {
        tx.send(Box::new(move || ident(i))).unwrap();
    }
    for _ in 0..n {
        rrx.recv().unwrap();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
    us
}

/// Round trip between two threads passing a counter through one atomic, spinning (µs).
pub(super) fn atomic_pingpong(n: u64) -> f64 {
    let a = Arc::new(AtomicU64::new(0));
    let b = a.clone();
    let h = std::thread::spawn(move || {
        for i in 0..n {
            while b.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            b.store(2 * i + 2, Ordering::Release);
        }
    });
    let t = Instant::now();
    for i in 0..n {
        a.store(2 * i + 1, Ordering::Release);
        while a.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    h.join().unwrap();
    us
}

fn pingpong_partner((shm, n, cpu, go): (SharedMemory, u64, usize, Connection)) {
    super::pin(Some(cpu));
    let a = &sys::atomics(&shm, 1)[0];
    let _: u8 = go.recv().expect("go");
    for i in 0..n {
        while a.load(Ordering::Acquire) != 2 * i + 1 {
            std::thread::yield_now();
        }
        a.store(2 * i + 2, Ordering::Release);
    }
}

/// [`atomic_pingpong`] pinned to `cpu` and yielding (spinning there would only burn the
/// other's time slice), between two *processes* (a counter in shared memory): the limit of a process pool's pinned round trip, two switches between address
/// spaces (on a VM that virtualizes page tables each costs about a microsecond more than a
/// switch between threads of one process). µs per round trip.
pub(super) fn process_pingpong(n: u64, cpu: usize) -> multiproc::Result<f64> {
    let shm = SharedMemory::create(4096)?;
    let (go, theirs) = Pipe::duplex()?;
    let p = Process::start(pingpong_partner, (shm.clone_handle()?, n, cpu, theirs))?;
    super::pin(Some(cpu));
    let a = &sys::atomics(&shm, 1)[0];
    go.send(&1u8)?;
    let t = Instant::now();
    for i in 0..n {
        a.store(2 * i + 1, Ordering::Release);
        while a.load(Ordering::Acquire) != 2 * i + 2 {
            std::thread::yield_now();
        }
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    p.join();
    super::pin(None);
    Ok(us)
}

fn bare_echo((c, cpu): (Connection, Option<usize>)) {
    super::pin(cpu);
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(c.as_fd(), &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => write_all(c.as_fd(), &buf[..n]),
        }
    }
}

/// socketpair ping-pong of 16 bytes between two processes (µs per round trip).
pub(super) fn socketpair_pingpong(n: u64, cpu: Option<usize>) -> multiproc::Result<f64> {
    super::pin(cpu);
    let (mine, theirs) = Pipe::duplex()?;
    let p = Process::start(bare_echo, (theirs, cpu))?;
    let msg = [5u8; 16];
    let mut buf = [0u8; 64];
    let mut once = || {
        write_all(mine.as_fd(), &msg);
        let mut got = 0;
        while got < msg.len() {
            got += rustix::io::read(mine.as_fd(), &mut buf[got..]).expect("read");
        }
    };
    for _ in 0..100 {
        once();
    }
    let t = Instant::now();
    for _ in 0..n {
        once();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(mine);
    p.join();
    super::pin(None);
    Ok(us)
}

// The bare SPSC ring: fixed-size slots after a header page; word 0 is `head` (consumer),
// word 16 (its own cache line) is `tail` (producer). Both spin.
const RING_HDR: usize = 4096;
const RING_BYTES: usize = 8 << 20;

fn slots(size: usize) -> usize {
    (RING_BYTES / size.next_multiple_of(64)).max(2)
}

fn ring_producer((shm, size, n, go): (SharedMemory, usize, u64, Connection)) {
    let w = sys::atomics(&shm, 32);
    let (head, tail) = (&w[0], &w[16]);
    let (nslots, stride) = (slots(size) as u64, size.next_multiple_of(64));
    let msg = vec![7u8; size];
    let _: u8 = go.recv().expect("go");
    for i in 0..n {
        while i - head.load(Ordering::Acquire) >= nslots {
            std::hint::spin_loop();
        }
        sys::write_at(&shm, RING_HDR + (i % nslots) as usize * stride, &msg);
        tail.store(i + 1, Ordering::Release);
    }
}

/// One producer process, one consumer (this one), `n` frames of `size` bytes, spinning.
/// Returns seconds.
pub(super) fn shm_ring(size: usize, n: u64) -> multiproc::Result<f64> {
    let stride = size.next_multiple_of(64);
    let shm = SharedMemory::create(RING_HDR + slots(size) * stride)?;
    let (go, theirs) = Pipe::duplex()?;
    let p = Process::start(ring_producer, (shm.clone_handle()?, size, n, theirs))?;
    let w = sys::atomics(&shm, 32);
    let (head, tail) = (&w[0], &w[16]);
    let nslots = slots(size) as u64;
    let mut out = vec![0u8; size];
    let t = Instant::now();
    go.send(&1u8)?;
    for i in 0..n {
        while tail.load(Ordering::Acquire) == i {
            std::hint::spin_loop();
        }
        sys::read_at(&shm, RING_HDR + (i % nslots) as usize * stride, &mut out);
        head.store(i + 1, Ordering::Release);
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(&out);
    p.join();
    Ok(secs)
}

fn pthread_counter((shm, n, go): (SharedMemory, u64, Connection)) {
    let m = sys::PthreadMutex::attach(&shm);
    let _: u8 = go.recv().expect("go");
    m.count(n);
}

/// Two processes each adding 1 `n` times under a process-shared pthread mutex: increments
/// per second.
pub(super) fn pthread_2proc(n: u64) -> multiproc::Result<f64> {
    let shm = SharedMemory::create(4096)?;
    sys::PthreadMutex::init(&shm);
    let mut gos = Vec::new();
    let mut ps = Vec::new();
    for _ in 0..2 {
        let (go, theirs) = Pipe::duplex()?;
        ps.push(Process::start(
            pthread_counter,
            (shm.clone_handle()?, n, theirs),
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
    let total = shm.atomic_u64s()[0].load(Ordering::Acquire);
    assert_eq!(total, 2 * n, "the pthread counter lost increments");
    Ok(2.0 * n as f64 / secs)
}

/// ns per uncontended lock + unlock of a process-shared pthread mutex.
pub(super) fn pthread_uncontended(n: u64) -> multiproc::Result<f64> {
    let shm = SharedMemory::create(4096)?;
    let m = sys::PthreadMutex::init(&shm);
    let t = Instant::now();
    for _ in 0..n {
        m.lock_unlock();
    }
    Ok(t.elapsed().as_secs_f64() * 1e9 / n as f64)
}

/// µs per create + open + unlink of a 4 KiB segment with the bare system calls.
pub(super) fn shm_syscalls(n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        sys::shm_syscalls(&format!("mp-bench-floor-{}-{i}", std::process::id()), 4096);
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// GB/s of one memcpy of `bytes` (buffers faulted in first).
pub(super) fn memcpy(bytes: usize) -> f64 {
    let src = vec![1u8; bytes];
    let mut dst = vec![2u8; bytes]; // written, so faulted in
    let t = Instant::now();
    dst.copy_from_slice(std::hint::black_box(&src));
    std::hint::black_box(&dst);
    bytes as f64 / t.elapsed().as_secs_f64() / 1e9
}
