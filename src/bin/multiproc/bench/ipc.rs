//! Queue throughput and Pipe latency.

use std::time::Instant;

use multiproc::{Connection, Pipe, Process, Queue, Result};

use super::{Bench, Row, limits, pin};

/// Bytes that serde sees as bytes (Python's `bytes`): one copy in, one out.
struct Blob(Vec<u8>);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Blob, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> std::result::Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Waits for the go signal, then puts `n` items of `size` bytes.
fn producer((q, size, n, go): (Queue<Blob>, usize, u64, Connection)) {
    let msg = Blob(vec![7u8; size]);
    let _: u8 = go.recv().expect("go");
    for _ in 0..n {
        q.put(&msg).expect("put");
    }
}

/// Seconds from the go signal to the last of `n` items taken; the producer process is
/// started and waiting before the clock starts (on both sides, Rust and Python).
fn queue_run(size: usize, n: u64) -> Result<f64> {
    let q: Queue<Blob> = Queue::new()?;
    let (go, theirs) = Pipe::duplex()?;
    let p = Process::start(producer, (q.clone(), size, n, theirs))?;
    let t = Instant::now();
    go.send(&1u8)?;
    for _ in 0..n {
        let m = q.get()?;
        debug_assert_eq!(m.0.len(), size);
    }
    let secs = t.elapsed().as_secs_f64();
    p.join();
    Ok(secs)
}

fn echo((c, cpu): (Connection, Option<usize>)) {
    pin(cpu);
    while let Ok(m) = c.recv_bytes() {
        if c.send_bytes(&m).is_err() {
            return;
        }
    }
}

fn pipe_run(n: u64, cpu: Option<usize>) -> Result<f64> {
    pin(cpu);
    let (mine, theirs) = Pipe::duplex()?;
    let p = Process::start(echo, (theirs, cpu))?;
    let msg = [5u8; 16];
    for _ in 0..100 {
        mine.send_bytes(&msg)?;
        mine.recv_bytes()?;
    }
    let t = Instant::now();
    for _ in 0..n {
        mine.send_bytes(&msg)?;
        std::hint::black_box(mine.recv_bytes()?);
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(mine);
    p.join();
    pin(None);
    Ok(us)
}

pub(super) fn run(b: &mut Bench) -> Result<()> {
    if b.wants(&["queue.msgs_64B"]) {
        let n = b.size(20_000, 200_000);
        let (v, limit) = b.median2(
            || n as f64 / queue_run(64, n).unwrap(),
            || n as f64 / limits::shm_ring(64, n).unwrap(),
        );
        b.push(Row::rate("queue.msgs_64B", "msgs/s", v).limit(limit).py(n));
    }
    if b.wants(&["queue.bw_1MiB"]) {
        let n = b.size(200, 2000);
        let gb = n as f64 * (1 << 20) as f64 / 1e9;
        let (v, limit) = b.median2(
            || gb / queue_run(1 << 20, n).unwrap(),
            || gb / limits::shm_ring(1 << 20, n).unwrap(),
        );
        b.push(Row::rate("queue.bw_1MiB", "GB/s", v).limit(limit).py(n));
    }
    let n = b.size(2_000, 20_000);
    for (name, cpu) in [
        ("pipe.roundtrip", Some(0)),
        ("pipe.roundtrip_unpinned", None),
    ] {
        if b.wants(&[name]) {
            let (v, limit) = b.median2(
                || pipe_run(n, cpu).unwrap(),
                || limits::socketpair_pingpong(n, cpu).unwrap(),
            );
            b.push(Row::time(name, "µs", v).limit(limit).py(n));
        }
    }
    Ok(())
}
