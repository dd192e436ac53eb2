//! Message-passing benchmarks: Queue throughput (64 B and 1 MiB messages, process to
//! process), Pipe ping-pong (pinned to one CPU and not, against a bare socket ping-pong in
//! the same run), Process start to the child's first line.
//!
//! Run: `cargo bench --bench ipc` (Python equivalents: `bench/python/ipc_*.py`).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multiproc::{Connection, Pipe, Process, Queue, StartMethod};

multiproc::test_support!();

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn pin(cpu: Option<usize>) {
    let mut set = rustix::thread::CpuSet::new();
    match cpu {
        Some(c) => set.set(c),
        None => (0..multiproc::cpu_count().max(1)).for_each(|c| set.set(c)),
    }
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

// ------------------------------------------------------------------------ Queue

/// A byte buffer that serde sees as bytes (like `serde_bytes::ByteBuf`, or Python's
/// `bytes`): one copy in and out. A plain `Vec<u8>` goes through serde byte by byte.
#[derive(Debug)]
struct Blob(Vec<u8>);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

fn producer(args: (Connection, [Queue<Blob>; 2], Queue<Vec<u8>>)) {
    let (ctl, qs, qv) = args;
    while let Ok((n, size, kind)) = ctl.recv::<(u64, usize, u8)>() {
        let msg = Blob(vec![7u8; size]);
        for _ in 0..n {
            match kind {
                0 | 1 => qs[kind as usize].put(&msg).unwrap(),
                _ => qv.put(&msg.0).unwrap(),
            }
        }
    }
}

fn bench_queue(c: &mut Criterion) {
    let qs: [Queue<Blob>; 2] = [Queue::new().unwrap(), Queue::bounded(8).unwrap()];
    let qv: Queue<Vec<u8>> = Queue::new().unwrap();
    let (ctl, theirs) = Pipe::duplex().unwrap();
    let p = Process::start(producer, (theirs, qs.clone(), qv.clone())).unwrap();
    let mut g = c.benchmark_group("queue");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, size, kind) in [
        ("64B", 64usize, 0u8),
        ("64B_vec_u8", 64, 2),
        ("1MiB", 1 << 20, 0),
        ("1MiB_bounded8", 1 << 20, 1),
    ] {
        if size >= 1 << 20 {
            g.throughput(Throughput::Bytes(size as u64));
        } else {
            g.throughput(Throughput::Elements(1));
        }
        g.bench_function(format!("process_to_process_{name}"), |b| {
            b.iter_custom(|iters| {
                ctl.send(&(iters, size, kind)).unwrap();
                let t0 = Instant::now();
                for _ in 0..iters {
                    if kind < 2 {
                        let m = qs[kind as usize].get().unwrap();
                        debug_assert_eq!(m.0.len(), size);
                    } else {
                        let m = qv.get().unwrap();
                        debug_assert_eq!(m.len(), size);
                    }
                }
                t0.elapsed()
            })
        });
    }
    // The floor for big messages: one memcpy of the same size.
    let src = vec![1u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    g.bench_function("memcpy_1MiB", |b| {
        b.iter(|| {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
        })
    });
    g.finish();
    drop(ctl);
    p.join();
}

// ------------------------------------------------------------------- Pipe ping-pong

fn echo(args: (Connection, Option<usize>)) {
    let (c, cpu) = args;
    pin(cpu);
    while let Ok(m) = c.recv_bytes() {
        c.send_bytes(&m).unwrap();
    }
}

fn bare_echo(args: (Connection, Option<usize>)) {
    let (c, cpu) = args;
    pin(cpu);
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(c.as_fd(), &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let _ = rustix::io::write(c.as_fd(), &buf[..n]);
            }
        }
    }
}

fn bench_pipe(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe_pingpong");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for cpu in [None, Some(0)] {
        let tag = if cpu.is_some() { "pinned" } else { "unpinned" };
        pin(cpu);
        // multiproc Pipe
        let (mine, theirs) = Pipe::duplex().unwrap();
        let p = Process::start(echo, (theirs, cpu)).unwrap();
        let msg = [5u8; 16];
        g.bench_function(format!("multiproc_pipe_16B_{tag}"), |b| {
            b.iter(|| {
                mine.send_bytes(&msg).unwrap();
                std::hint::black_box(mine.recv_bytes().unwrap());
            })
        });
        drop(mine);
        p.join();
        // The same socket pair used bare: one write, one read per direction.
        let (mine, theirs) = Pipe::duplex().unwrap();
        let p = Process::start(bare_echo, (theirs, cpu)).unwrap();
        let mut buf = [0u8; 64];
        g.bench_function(format!("bare_socketpair_16B_{tag}"), |b| {
            b.iter(|| {
                rustix::io::write(mine.as_fd(), &msg).unwrap();
                let mut got = 0;
                while got < msg.len() {
                    got += rustix::io::read(mine.as_fd(), &mut buf[got..]).unwrap();
                }
            })
        });
        drop(mine);
        p.join();
    }
    pin(None);
    g.finish();
}

// ------------------------------------------------------------------ Process start

fn first_line(c: Connection) {
    c.send(&now_ns()).unwrap();
}

fn bench_process(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_start");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, method) in [
        ("forkserver", StartMethod::ForkServer),
        ("spawn", StartMethod::Spawn),
    ] {
        g.bench_function(format!("to_first_line_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (mine, theirs) = Pipe::duplex().unwrap();
                    let t0 = now_ns();
                    let p = Process::start_with(method, first_line, theirs).unwrap();
                    let t1: u64 = mine.recv().unwrap();
                    total += Duration::from_nanos(t1 - t0);
                    p.join();
                }
                total
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------- Python, same run

/// Runs the CPython equivalents (`bench/python/ipc_*.py`) so one `cargo bench --bench ipc`
/// prints both sides. Skipped with a filter that does not mention `python`, or with
/// `MULTIPROC_BENCH_PYTHON=0`, or without `python3`.
fn python_side_by_side(_: &mut Criterion) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::var("MULTIPROC_BENCH_PYTHON").as_deref() == Ok("0")
        || !(filters.is_empty() || filters.iter().any(|f| f.contains("python")))
    {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python");
    for script in ["ipc_queue.py", "ipc_pipe.py", "ipc_process.py"] {
        match std::process::Command::new("python3")
            .arg(dir.join(script))
            .output()
        {
            Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
            Err(e) => println!("python3 {script}: not run ({e})"),
        }
    }
}

criterion_group!(
    benches,
    bench_queue,
    bench_pipe,
    bench_process,
    python_side_by_side
);
criterion_main!(benches);
