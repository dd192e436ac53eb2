//! The pools: submit+collect, map, round trip, cold start, process start, CPU speed-up.

use std::time::Instant;

use multiproc::{Chunksize, Executor, Pipe, Process, ProcessPool, Result, ThreadPool};

use super::{Bench, Row, limits, pin};

fn ident(x: u64) -> u64 {
    x
}

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn pin_worker(cpu: usize) {
    pin(Some(cpu));
}

/// µs per task to submit `n` tasks one by one, then collect every result.
fn submit_collect(pool: &impl Executor, n: u64) -> f64 {
    let t = Instant::now();
    let futs: Vec<_> = (0..n).map(|i| pool.submit(ident, i).unwrap()).collect();
    for f in futs {
        f.result().unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn roundtrip(pool: &ProcessPool, n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        pool.submit(ident, i).unwrap().result().unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// `multiproc bench-cold-start`: in a fresh process (no fork server yet), the time from
/// building a 2-worker pool to its first result, fork server start included. Prints ms.
pub(crate) fn cold_start() -> Result<()> {
    let t = Instant::now();
    let p = ProcessPool::new(2)?;
    p.submit(ident, 1)?.result()?;
    println!("{}", t.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

fn first_line(c: multiproc::Connection) {
    let _ = c.send(&1u8);
}

pub(crate) fn run(b: &mut Bench) -> Result<()> {
    let n = b.opts.n.unwrap_or_else(|| b.size(10_000, 50_000));
    if b.wants(&["pool.submit", "pool.map", "pool.roundtrip_unpinned"]) {
        let pool = ProcessPool::new(b.opts.workers)?;
        pool.map(ident, 0..1000)?;
        let bare = limits::PipePool::new(b.opts.workers)?;
        bare.per_task(1000);
        let (limit, v) = b.median2(|| bare.per_task(n), || submit_collect(&pool, n));
        b.push(
            Row::time("pool.submit_collect_per_task", "µs", v)
                .limit(limit)
                .py(n),
        );
        let v = b.median(|| {
            let t = Instant::now();
            pool.map_chunked(ident, 0..n, Chunksize::Fixed(1)).unwrap();
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        });
        b.push(
            Row::time("pool.map_chunk1_per_task", "µs", v)
                .limit(limit)
                .py(n),
        );
        let big = n * 20;
        let v = b.median(|| {
            let t = Instant::now();
            pool.map(ident, 0..big).unwrap();
            t.elapsed().as_secs_f64() * 1e6 / big as f64
        });
        b.push(Row::time("pool.map_auto_per_task", "µs", v).py(big));
        let rt = n / 10;
        let (v, limit) = b.median2(|| roundtrip(&pool, rt), || limits::atomic_pingpong(rt * 10));
        b.push(
            Row::time("pool.roundtrip_unpinned", "µs", v)
                .limit(limit)
                .py(rt),
        );
    }
    if b.wants(&["pool.roundtrip"]) {
        // Everything on CPU 0: this thread, the dispatcher it starts, and the workers.
        pin(Some(0));
        let pool = ProcessPool::builder()
            .workers(2)
            .initializer(pin_worker, 0)
            .build()?;
        pool.map(ident, 0..1000)?;
        let rt = n / 10;
        let v = b.median(|| roundtrip(&pool, rt));
        drop(pool);
        pin(None);
        // Its limit is two processes passing a counter on that CPU: what it must do at
        // least (two threads of one process understate it, switching no address space).
        let limit = b.median(|| limits::process_pingpong(rt, 0).unwrap_or(f64::NAN));
        b.push(Row::time("pool.roundtrip", "µs", v).limit(limit).py(rt));
    }
    if b.wants(&["pool.start_first_result"]) {
        let exe = std::env::current_exe().map_err(|e| multiproc::Error::io("current_exe", e))?;
        let v = b.median(|| {
            let out = std::process::Command::new(&exe)
                .arg("bench-cold-start")
                .output()
                .expect("bench-cold-start runs");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(f64::NAN)
        });
        b.push(Row::time("pool.start_first_result", "ms", v).py(1));
    }
    if b.wants(&["threadpool.submit_collect_per_task"]) {
        let tp = ThreadPool::new(2)?;
        tp.map(ident, 0..1000)?;
        // Alternately: the pool's idle threads sleep while the bare pool runs.
        let (v, limit) = b.median2(|| submit_collect(&tp, n), || limits::bare_thread_pool(n));
        drop(tp);
        b.push(
            Row::time("threadpool.submit_collect_per_task", "µs", v)
                .limit(limit)
                .py(n),
        );
    }
    if b.wants(&["process.start"]) {
        let k = b.size(10, 30);
        // Warm: the fork server is already running (as Python's forkserver is on its side).
        Process::start(first_line, Pipe::duplex()?.1)?.join();
        let v = b.median(|| {
            let t = Instant::now();
            for _ in 0..k {
                let (mine, theirs) = Pipe::duplex().unwrap();
                let p = Process::start(first_line, theirs).unwrap();
                let _: u8 = mine.recv().unwrap();
                p.join();
            }
            t.elapsed().as_secs_f64() * 1e3 / k as f64
        });
        b.push(Row::time("process.start", "ms", v).py(k));
    }
    if b.wants(&["cpu.fib"]) {
        let fib_n = b.size(30, 34);
        let input = vec![fib_n; 32];
        let serial = || {
            let t = Instant::now();
            std::hint::black_box(input.iter().map(|&x| fib(x)).sum::<u64>());
            t.elapsed().as_secs_f64()
        };
        let (pool, tp) = (ProcessPool::new(2)?, ThreadPool::new(2)?);
        // Serial and parallel alternate, and each pair gives one speed-up: this kind of
        // VM's CPU speed drifts by tens of percent over seconds.
        let speedup = |par: &dyn Fn()| {
            let s = serial();
            let t = Instant::now();
            par();
            let p = t.elapsed().as_secs_f64();
            (s + serial()) / 2.0 / p
        };
        let v = b.median(|| {
            speedup(&|| {
                pool.map_chunked(fib, input.clone(), Chunksize::Fixed(1))
                    .unwrap();
            })
        });
        // Python's fib is ~50× slower: it runs fib(n - 8) per task, for a similar task
        // length; the figure is a ratio to its own serial run.
        b.push(Row::rate("cpu.fib_speedup_processpool", "×", v).py(fib_n - 8));
        let v = b.median(|| {
            speedup(&|| {
                tp.map_chunked(fib, input.clone(), Chunksize::Fixed(1))
                    .unwrap();
            })
        });
        b.push(Row::rate("cpu.fib_speedup_threadpool", "×", v).py(fib_n - 8));
    }
    Ok(())
}
