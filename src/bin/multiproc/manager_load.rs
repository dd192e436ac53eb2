//! `multiproc manager load`: many clients from several processes on one `Manager`, then an
//! exact check that no update was lost, and the latency of each operation.
//!
//! Each client (a thread of a client process, so one connection each) loops until the time
//! is up over three operations:
//! * `dict.update`: `+1` on its own key of a shared `Dict<u32, u64>` (an update function
//!   the server runs under the dict's lock);
//! * `locked_incr`: acquires the manager's `Lock`, reads a shared `Value<u64>`, writes it
//!   back plus one, releases (four round trips; the lock alone makes it atomic);
//! * `list.append`: pushes `client << 32 | i` onto a shared `List<u64>`.
//!
//! At the end every count must be exact: each client's key holds its number of updates,
//! the value the sum of all locked increments, and the list, per client, exactly
//! `0, 1, ..., n - 1` in order.

use std::time::{Duration, Instant};

use multiproc::manager::{Dict, List, Lock, Queue, Value};
use multiproc::{Error, Manager, Process, Result};
use serde::{Deserialize, Serialize};

/// The update function the load's server allows.
fn plus_one(n: Option<u64>) -> u64 {
    n.unwrap_or(0) + 1
}

const OPS: [&str; 3] = ["dict.update", "locked_incr", "list.append"];

/// Latencies in µs: 1 µs buckets below 10 ms, 1 ms buckets to 10 s, then one more.
#[derive(Serialize, Deserialize, Clone)]
struct Hist(Vec<u64>);

const FINE: u64 = 10_000;

impl Hist {
    fn new() -> Hist {
        Hist(vec![0; (FINE + 10_000 + 1) as usize])
    }
    fn record(&mut self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = if us < FINE {
            us
        } else {
            (FINE + (us - FINE) / 1000).min(FINE + 10_000)
        };
        self.0[i as usize] += 1;
    }
    fn add(&mut self, o: &Hist) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a += b;
        }
    }
    fn count(&self) -> u64 {
        self.0.iter().sum()
    }
    /// The upper edge (µs) of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        let want = ((n as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= want {
                let i = i as u64;
                return if i < FINE {
                    (i + 1) as f64
                } else {
                    (FINE + (i - FINE + 1) * 1000) as f64
                };
            }
        }
        f64::INFINITY
    }
}

/// What one client process reports.
#[derive(Serialize, Deserialize)]
struct Report {
    pid: u32,
    /// (client, dict updates, locked increments, list appends)
    clients: Vec<(u32, u64, u64, u64)>,
    hists: Vec<Hist>,
    errors: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Shared {
    counts: Dict<u32, u64>,
    total: Value<u64>,
    lock: Lock,
    list: List<u64>,
    ready: Queue<u32>,
    go: multiproc::manager::Event,
    reports: Queue<Report>,
}

/// The body of one client process: `threads` clients, each until `secs` after the go.
fn client_process((sh, first, threads, secs): (Shared, u32, u32, f64)) {
    let _ = sh.ready.put(&std::process::id());
    let started = sh.go.wait_timeout(Duration::from_secs(60));
    let mut report = Report {
        pid: std::process::id(),
        clients: Vec::new(),
        hists: vec![Hist::new(); OPS.len()],
        errors: Vec::new(),
    };
    if !matches!(started, Ok(true)) {
        report.errors.push(format!("no go signal: {started:?}"));
        let _ = sh.reports.put(&report);
        return;
    }
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let hs: Vec<_> = (first..first + threads)
        .map(|c| {
            let sh = sh.clone();
            std::thread::spawn(move || client(&sh, c, end))
        })
        .collect();
    for h in hs {
        match h.join() {
            Ok((counts, hists, err)) => {
                report.clients.push(counts);
                for (a, b) in report.hists.iter_mut().zip(&hists) {
                    a.add(b);
                }
                report.errors.extend(err);
            }
            Err(_) => report.errors.push("a client thread panicked".into()),
        }
    }
    if let Err(e) = sh.reports.put(&report) {
        eprintln!("client process {}: cannot report: {e}", std::process::id());
    }
}

type ClientResult = ((u32, u64, u64, u64), Vec<Hist>, Option<String>);

fn client(sh: &Shared, c: u32, end: Instant) -> ClientResult {
    let mut hists = vec![Hist::new(); OPS.len()];
    let (mut ups, mut incs, mut apps) = (0u64, 0u64, 0u64);
    let mut run = || -> Result<()> {
        while Instant::now() < end {
            let t = Instant::now();
            sh.counts.update(&c, plus_one)?;
            ups += 1;
            let t1 = Instant::now();
            hists[0].record(t1 - t);
            {
                let _g = sh.lock.acquire()?;
                let v = sh.total.get()?;
                sh.total.set(&(v + 1))?;
            }
            incs += 1;
            let t2 = Instant::now();
            hists[1].record(t2 - t1);
            sh.list.push(&((u64::from(c) << 32) | apps))?;
            apps += 1;
            hists[2].record(t2.elapsed());
        }
        Ok(())
    };
    let err = run().err().map(|e| format!("client {c}: {e}"));
    ((c, ups, incs, apps), hists, err)
}

/// Runs the load and prints the figures (a table, or one JSON object with `json`).
pub(crate) fn run(clients: u32, procs: u32, secs: f64, json: bool) -> Result<()> {
    if procs == 0 || clients == 0 || !clients.is_multiple_of(procs) {
        return Err(Error::InvalidArgument(format!(
            "--clients ({clients}) must be a positive multiple of --procs ({procs})"
        )));
    }
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(Error::InvalidArgument(format!(
            "--secs must be in (0, 3600], not {secs}"
        )));
    }
    let threads = clients / procs;
    let m = Manager::builder().update_fn(plus_one).start()?;
    let sh = Shared {
        counts: m.dict("counts")?,
        total: m.value("total", 0)?,
        lock: m.lock("lock")?,
        list: m.list("appends")?,
        ready: m.queue("ready")?,
        go: m.event("go")?,
        reports: m.queue("reports")?,
    };
    let ps: Vec<Process> = (0..procs)
        .map(|p| Process::start(client_process, (sh.clone(), p * threads, threads, secs)))
        .collect::<Result<_>>()?;
    let mut pids: Vec<u32> = ps.iter().map(Process::pid).collect();
    pids.extend(m.pid());
    for _ in 0..procs {
        sh.ready.get_timeout(Duration::from_secs(60))?;
    }
    let t0 = Instant::now();
    sh.go.set()?;
    let mut reports = Vec::new();
    for _ in 0..procs {
        reports.push(
            sh.reports
                .get_timeout(Duration::from_secs_f64(secs + 60.0))?,
        );
    }
    let wall = t0.elapsed().as_secs_f64();
    for p in &ps {
        if !p.join_timeout(Duration::from_secs(30)) {
            let _ = p.kill();
            p.join();
        }
    }

    // The exact checks.
    let mut problems: Vec<String> = reports.iter().flat_map(|r| r.errors.clone()).collect();
    let mut per_client: Vec<(u32, u64, u64, u64)> =
        reports.iter().flat_map(|r| r.clients.clone()).collect();
    per_client.sort();
    if per_client.len() != clients as usize {
        problems.push(format!(
            "{} of {clients} clients reported",
            per_client.len()
        ));
    }
    for &(c, ups, _, _) in &per_client {
        let got = sh.counts.get(&c)?.unwrap_or(0);
        if got != ups {
            problems.push(format!("client {c}: {ups} updates, its key holds {got}"));
        }
    }
    let incs: u64 = per_client.iter().map(|x| x.2).sum();
    let total = sh.total.get()?;
    if total != incs {
        problems.push(format!("{incs} locked increments, the value holds {total}"));
    }
    let list = sh.list.to_vec()?;
    let mut next = vec![0u64; clients as usize];
    let mut bad_items = 0u64;
    for x in &list {
        let (c, i) = ((x >> 32) as usize, x & 0xffff_ffff);
        match next.get_mut(c) {
            Some(n) if *n == i => *n += 1,
            _ => bad_items += 1,
        }
    }
    if bad_items > 0 {
        problems.push(format!(
            "{bad_items} list items out of order, duplicated or foreign"
        ));
    }
    for &(c, _, _, apps) in &per_client {
        if next[c as usize] != apps {
            problems.push(format!(
                "client {c}: {apps} appends, {} in the list",
                next[c as usize]
            ));
        }
    }
    if list.len() as u64 != per_client.iter().map(|x| x.3).sum::<u64>() {
        problems.push(format!("the list holds {} items in all", list.len()));
    }
    drop(sh);
    m.shutdown()?;
    drop(m);

    let mut all = Hist::new();
    let mut rows = Vec::new();
    for (k, name) in OPS.iter().enumerate() {
        let mut h = Hist::new();
        for r in &reports {
            h.add(&r.hists[k]);
        }
        all.add(&h);
        rows.push((*name, h));
    }
    rows.push(("all", all));
    if json {
        let ops: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(name, h)| {
                (
                    name.to_string(),
                    serde_json::json!({
                        "count": h.count(),
                        "ops_per_s": h.count() as f64 / secs,
                        "p50_us": h.quantile(0.50),
                        "p99_us": h.quantile(0.99),
                    }),
                )
            })
            .collect();
        let out = serde_json::json!({
            "clients": clients,
            "procs": procs,
            "secs": secs,
            "wall_secs": wall,
            "ops": ops,
            "exact": problems.is_empty(),
            "problems": problems,
            "pids": pids,
        });
        println!("{out}");
    } else {
        println!(
            "manager load: {clients} clients ({procs} processes x {threads} threads) for {secs} s \
             ({wall:.1} s with the reports)"
        );
        println!(
            "{:<12} {:>10} {:>10} {:>8} {:>8}",
            "op", "count", "ops/s", "p50 µs", "p99 µs"
        );
        for (name, h) in &rows {
            println!(
                "{:<12} {:>10} {:>10.0} {:>8} {:>8}",
                name,
                h.count(),
                h.count() as f64 / secs,
                h.quantile(0.5),
                h.quantile(0.99)
            );
        }
        if problems.is_empty() {
            println!(
                "exact: every client's key, the locked counter ({total}) and the list ({} items, \
                 each client's in order) hold every update",
                list.len()
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        for p in &problems {
            eprintln!("LOST UPDATE: {p}");
        }
        Err(Error::Protocol(format!(
            "{} check(s) failed: updates were lost",
            problems.len()
        )))
    }
}
