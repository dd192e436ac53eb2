//! `multiproc bench`: the pools' numbers side by side with Python's and with bare
//! baselines (the OS limit), in one run. Medians of several repetitions; this kind of
//! machine is noisy, so read the ratios.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::{Chunksize, Executor, ProcessPool, Result, StartMethod, ThreadPool};

fn ident(x: u64) -> u64 {
    x
}

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn reps(n: usize, mut f: impl FnMut() -> f64) -> f64 {
    median((0..n).map(|_| f()).collect())
}

/// Per-task µs to submit `n` tasks one by one, then collect every result.
fn submit_collect(pool: &impl Executor, n: u64) -> f64 {
    let t = Instant::now();
    let futs: Vec<_> = (0..n).map(|i| pool.submit(ident, i).unwrap()).collect();
    for f in futs {
        f.result().unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// The same on a bare two-thread crossbeam pool: the floor for a thread pool.
fn bare_threads(n: u64) -> f64 {
    type Job = Box<dyn FnOnce() + Send>;
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                while let Ok(j) = rx.recv() {
                    j()
                }
            })
        })
        .collect();
    let t = Instant::now();
    let rxs: Vec<_> = (0..n)
        .map(|i| {
            let (rtx, rrx) = crossbeam_channel::bounded(1);
            tx.send(Box::new(move || {
                let _ = rtx.send(ident(i));
            }))
            .unwrap();
            rrx
        })
        .collect();
    for r in rxs {
        r.recv().unwrap();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
    us
}

/// Round trip between two threads that spin (µs): the floor when nobody sleeps.
fn spin_pingpong(n: u64) -> f64 {
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

/// Round trip between two threads that block (park/unpark, a futex): the cost of a
/// cross-CPU wake-up.
fn blocking_pingpong(n: u64) -> f64 {
    let (tx1, rx1) = crossbeam_channel::bounded::<u64>(0);
    let (tx2, rx2) = crossbeam_channel::bounded::<u64>(0);
    let h = std::thread::spawn(move || {
        while let Ok(v) = rx1.recv() {
            std::thread::sleep(Duration::from_micros(0));
            if tx2.send(v).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for i in 0..n {
        tx1.send(i).unwrap();
        rx2.recv().unwrap();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(tx1);
    h.join().unwrap();
    us
}

struct Row {
    name: &'static str,
    ours: f64,
    unit: &'static str,
    python: Option<(&'static str, f64)>,
    floor: Option<(&'static str, f64)>,
    target: &'static str,
}

pub(crate) fn run(quick: bool, with_python: bool) -> Result<()> {
    let (n, r) = if quick {
        (20_000u64, 3)
    } else {
        (100_000u64, 5)
    };
    eprintln!("measuring multiproc ({} repetitions each)...", r);

    let mut cold = Vec::new();
    for m in [StartMethod::ForkServer, StartMethod::Spawn] {
        let t = Instant::now();
        let p = ProcessPool::builder().workers(2).start_method(m).build()?;
        p.submit(ident, 1)?.result()?;
        cold.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let startup = |m: StartMethod| {
        reps(r, || {
            let t = Instant::now();
            let p = ProcessPool::builder()
                .workers(2)
                .start_method(m)
                .build()
                .unwrap();
            p.submit(ident, 1).unwrap().result().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
    };
    let startup_fs = startup(StartMethod::ForkServer);
    let startup_spawn = startup(StartMethod::Spawn);

    let pool = ProcessPool::new(2)?;
    pool.map(ident, 0..1000)?;
    let pp_submit = reps(r, || submit_collect(&pool, n));
    let rt_n = n / 5;
    let pp_rt = reps(r, || {
        let t = Instant::now();
        for i in 0..rt_n {
            pool.submit(ident, i).unwrap().result().unwrap();
        }
        t.elapsed().as_secs_f64() * 1e6 / rt_n as f64
    });
    let pp_map1 = reps(r, || {
        let t = Instant::now();
        pool.map_chunked(ident, 0..n, Chunksize::Fixed(1)).unwrap();
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    });
    let big = n * 10;
    let pp_mapauto = reps(r, || {
        let t = Instant::now();
        pool.map(ident, 0..big).unwrap();
        t.elapsed().as_secs_f64() * 1e6 / big as f64
    });
    let fib_n = if quick { 32 } else { 35 };
    let fib_in = vec![fib_n; 32];
    // Serial and parallel runs alternate and each pair gives one speed-up: the CPU speed of
    // this kind of VM drifts by tens of percent over seconds, which would swamp a ratio of
    // medians taken at different times.
    let time_serial = || {
        let t = Instant::now();
        std::hint::black_box(fib_in.iter().map(|&x| fib(x)).sum::<u64>());
        t.elapsed().as_secs_f64()
    };
    let tp = ThreadPool::new(2)?;
    let tp_submit = reps(r, || submit_collect(&tp, n));
    let (mut s_all, mut pp_all, mut tp_all, mut pp_x, mut tp_x) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..r {
        let s = time_serial();
        let t = Instant::now();
        pool.map_chunked(fib, fib_in.clone(), Chunksize::Fixed(1))
            .unwrap();
        let p = t.elapsed().as_secs_f64();
        let t = Instant::now();
        tp.map_chunked(fib, fib_in.clone(), Chunksize::Fixed(1))
            .unwrap();
        let th = t.elapsed().as_secs_f64();
        let s2 = time_serial();
        let s = (s + s2) / 2.0;
        s_all.push(s);
        pp_all.push(p);
        tp_all.push(th);
        pp_x.push(s / p);
        tp_x.push(s / th);
    }
    let (serial, fib_pp, fib_tp) = (median(s_all), median(pp_all), median(tp_all));
    let (pp_speedup, tp_speedup) = (median(pp_x), median(tp_x));
    drop(pool);
    drop(tp);
    let bare = reps(r, || bare_threads(n));
    let spin = reps(r, || spin_pingpong(rt_n));
    let block = reps(r, || blocking_pingpong(rt_n / 4));

    let py: BTreeMap<String, f64> = if with_python {
        eprintln!("measuring Python {}...", if quick { "(quick)" } else { "" });
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/bench/python/pool_bench.py"
        ));
        if quick {
            cmd.arg("--quick");
        }
        match cmd.output() {
            Ok(o) if o.status.success() => parse_json(&String::from_utf8_lossy(&o.stdout)),
            _ => {
                eprintln!("(python3 not available: Python columns left empty)");
                BTreeMap::new()
            }
        }
    } else {
        BTreeMap::new()
    };
    let p = |k: &'static str, label: &'static str| py.get(k).map(|&v| (label, v));

    let rows = vec![
        Row {
            name: "ProcessPool submit+collect",
            ours: pp_submit,
            unit: "µs/task",
            python: p("pool_apply_async_us", "Pool.apply_async"),
            floor: None,
            target: "≥15× apply_async",
        },
        Row {
            name: "  vs ProcessPoolExecutor",
            ours: pp_submit,
            unit: "µs/task",
            python: p("ppe_submit_us", "PPE.submit"),
            floor: None,
            target: "≥50× PPE.submit",
        },
        Row {
            name: "ProcessPool round trip",
            ours: pp_rt,
            unit: "µs",
            python: p("pool_roundtrip_us", "apply_async().get()"),
            floor: Some(("spin ping-pong", spin)),
            target: "≤10 µs, ≥10×",
        },
        Row {
            name: "  cross-CPU blocking wake-up",
            ours: block,
            unit: "µs",
            python: None,
            floor: None,
            target: "(OS limit, for reference)",
        },
        Row {
            name: "map, chunksize 1",
            ours: pp_map1,
            unit: "µs/task",
            python: p("pool_map_chunk1_us", "Pool.map(chunksize=1)"),
            floor: None,
            target: "≥15×",
        },
        Row {
            name: "map, auto chunks",
            ours: pp_mapauto,
            unit: "µs/task",
            python: p("pool_map_auto_us", "Pool.map"),
            floor: None,
            target: "≥3×",
        },
        Row {
            name: "ThreadPool submit+collect",
            ours: tp_submit,
            unit: "µs/task",
            python: p("tpe_submit_us", "ThreadPoolExecutor"),
            floor: Some(("bare crossbeam pool", bare)),
            target: "≥40×",
        },
        Row {
            name: "2-worker pool to 1st result (fork server)",
            ours: startup_fs,
            unit: "ms",
            python: p("pool_startup_fork_ms", "Pool, fork"),
            floor: None,
            target: "≤3 ms",
        },
        Row {
            name: "  same, spawn",
            ours: startup_spawn,
            unit: "ms",
            python: p("pool_startup_spawn_ms", "Pool, spawn"),
            floor: None,
            target: "",
        },
        Row {
            name: "  cold (fork server start incl.)",
            ours: cold[0],
            unit: "ms",
            python: p("pool_startup_forkserver_ms", "Pool, forkserver"),
            floor: None,
            target: "",
        },
    ];
    println!(
        "\n{:<42} {:>10} {:<8} {:>22} {:>9} {:>8}  {:>22}  target",
        "scenario", "multiproc", "unit", "Python", "", "ratio", "floor"
    );
    println!("{}", "-".repeat(140));
    for row in rows {
        let (pl, pv, ratio) = match row.python {
            Some((l, v)) => (l, format!("{v:.3}"), format!("{:.1}×", v / row.ours)),
            None => ("", String::new(), String::new()),
        };
        let floor = row
            .floor
            .map(|(l, v)| format!("{l} {v:.3}"))
            .unwrap_or_default();
        println!(
            "{:<42} {:>10.3} {:<8} {:>22} {:>9} {:>8}  {:>22}  {}",
            row.name, row.ours, row.unit, pl, pv, ratio, floor, row.target
        );
    }
    println!(
        "\nCPU-bound fib({fib_n}) × 32 on 2 workers: serial {:.3} s, ProcessPool {:.3} s ({:.2}×), ThreadPool {:.3} s ({:.2}×)   (median of paired speed-ups) target ≥1.85×",
        serial, fib_pp, pp_speedup, fib_tp, tp_speedup
    );
    Ok(())
}

/// Parses the flat `{"key": number, ...}` object the Python script prints.
fn parse_json(s: &str) -> BTreeMap<String, f64> {
    s.trim()
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((
                k.trim().trim_matches('"').to_string(),
                v.trim().parse().ok()?,
            ))
        })
        .collect()
}
