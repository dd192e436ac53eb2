//! `multiproc bench --filter manager`: the manager's numbers side by side with Python's
//! `SyncManager` doing the same work and with a bare Unix-socket ping-pong, in one run.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use multiproc::manager::List;
use multiproc::{Connection, Manager, Pipe, Process, Result};

/// One measurement, in the shape of `bench --json`: one line per measurement.
pub(crate) struct Measurement {
    pub name: &'static str,
    pub unit: &'static str,
    pub multiproc: f64,
    pub python: Option<f64>,
    /// The OS floor it is compared with, if any.
    pub limit: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pin_me(cpu: Option<usize>) {
    super::pin(cpu)
}

/// The echo side of the bare ping-pong: raw reads and writes of 16 bytes.
fn echo((conn, cpu): (Connection, Option<usize>)) {
    pin_me(cpu);
    let mut s = UnixStream::from(conn.as_fd().try_clone_to_owned().unwrap());
    drop(conn);
    let mut buf = [0u8; 16];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

/// µs per round trip of 16 bytes between this thread and a child process over a Unix
/// socket: the floor for one request and its answer.
fn bare_pingpong(cpu: Option<usize>, n: usize, reps: usize) -> Result<f64> {
    let (mine, theirs) = Pipe::duplex()?;
    let p = Process::start(echo, (theirs, cpu))?;
    let mut s = UnixStream::from(mine.as_fd().try_clone_to_owned().unwrap());
    drop(mine);
    let mut buf = [7u8; 16];
    let mut round = |n: usize| {
        let t = Instant::now();
        for _ in 0..n {
            s.write_all(&buf).unwrap();
            s.read_exact(&mut buf).unwrap();
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    round(n / 10);
    let r = median((0..reps).map(|_| round(n)).collect());
    drop(s);
    p.join();
    Ok(r)
}

/// µs per dict operation (alternating insert and get) from one client.
fn dict_op(cpu: Option<usize>, n: usize, reps: usize) -> Result<f64> {
    let mut b = Manager::builder();
    if let Some(c) = cpu {
        b = b.cpu_affinity(&[c]);
    }
    let m = b.start()?;
    let d = m.dict::<u64, u64>("bench")?;
    let round = |n: usize| -> Result<f64> {
        let t = Instant::now();
        for i in 0..(n / 2) as u64 {
            d.insert(&(i & 63), &i)?;
            std::hint::black_box(d.get(&(i & 63))?);
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    };
    round(n / 10)?;
    let v = (0..reps).map(|_| round(n)).collect::<Result<Vec<_>>>()?;
    Ok(median(v))
}

fn appender((l, times, n, batch): (List<u64>, List<f64>, usize, usize)) {
    l.len().unwrap(); // connect before the clock starts
    let t = Instant::now();
    if batch <= 1 {
        for i in 0..n as u64 {
            l.push(&i).unwrap();
        }
    } else {
        let chunk: Vec<u64> = (0..batch as u64).collect();
        for _ in 0..n / batch {
            l.extend(&chunk).unwrap();
        }
    }
    times.push(&t.elapsed().as_secs_f64()).unwrap();
}

/// Appends per second by two processes appending to one list (`batch` items per call).
fn list_append_2proc(n: usize, batch: usize, reps: usize) -> Result<f64> {
    let m = Manager::start()?;
    let mut rates = Vec::new();
    for r in 0..reps {
        let l = m.list::<u64>(&format!("l{r}"))?;
        let times = m.list::<f64>(&format!("t{r}"))?;
        let ps: Vec<Process> = (0..2)
            .map(|_| Process::start(appender, (l.clone(), times.clone(), n, batch)))
            .collect::<Result<_>>()?;
        for p in &ps {
            p.join();
        }
        let total = l.len()?;
        assert_eq!(total, 2 * (n / batch.max(1)) * batch.max(1));
        let slowest = times.to_vec()?.into_iter().fold(0.0, f64::max);
        rates.push(total as f64 / slowest);
        l.clear()?;
    }
    Ok(median(rates))
}

fn python(pin: bool, quick: bool) -> Option<(f64, f64)> {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bench/python/manager_bench.py"
    ));
    if pin {
        cmd.arg("--pin");
    }
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    let s = String::from_utf8_lossy(&out.stdout);
    let num = |key: &str| -> Option<f64> {
        let rest = &s[s.find(&format!("\"{key}\":"))? + key.len() + 3..];
        rest.trim_start()
            .split([',', '}'])
            .next()?
            .trim()
            .parse()
            .ok()
    };
    Some((num("dict_op_us")?, num("list_append_per_s")?))
}

/// Runs every manager measurement and returns them (medians).
pub(crate) fn measure(quick: bool, with_python: bool) -> Result<Vec<Measurement>> {
    let (n, reps) = if quick { (4_000, 3) } else { (40_000, 5) };
    eprintln!("measuring the manager ({reps} repetitions each)...");
    // Unpinned first: the fork server is started now, before this thread is pinned, so
    // the unpinned server child does not inherit a pinned affinity.
    let bare_free = bare_pingpong(None, n, reps)?;
    let ours_free = dict_op(None, n, reps)?;
    let appends = if quick { 40_000 } else { 400_000 };
    let list_rate = list_append_2proc(appends, 1000, reps)?;
    let push_rate = list_append_2proc(appends / 20, 1, reps)?;
    pin_me(Some(0));
    let bare_pinned = bare_pingpong(Some(0), n, reps)?;
    let ours_pinned = dict_op(Some(0), n, reps)?;
    pin_me(None);
    let (py_free, py_pinned) = if with_python {
        eprintln!("measuring Python's SyncManager...");
        (python(false, quick), python(true, quick))
    } else {
        (None, None)
    };
    Ok(vec![
        Measurement {
            name: "manager.dict_op",
            unit: "µs",
            multiproc: ours_pinned,
            python: py_pinned.map(|p| p.0),
            limit: Some(bare_pinned),
        },
        Measurement {
            name: "manager.dict_op_unpinned",
            unit: "µs",
            multiproc: ours_free,
            python: py_free.map(|p| p.0),
            limit: Some(bare_free),
        },
        Measurement {
            name: "manager.list_append_2proc",
            unit: "appends/s",
            multiproc: list_rate,
            python: py_free.map(|p| p.1),
            limit: None,
        },
        Measurement {
            name: "manager.list_push_2proc",
            unit: "appends/s",
            multiproc: push_rate,
            python: py_free.map(|p| p.1),
            limit: None,
        },
    ])
}
