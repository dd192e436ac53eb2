//! Soak: many tasks through one `ProcessPool` that recycles its workers
//! (`max_tasks_per_child`) and loses one to a crash (`abort()`) every so often. Every other
//! result must be correct, each crash must be a `WorkerDied` on exactly its index, and the
//! parent's resident memory and fd count must stay flat, with no zombie left.
//!
//! ```text
//! cargo run --release --example soak -- --tasks 1000000 --crash-every 10000 --max-tasks-per-child 5000
//! ```
//!
//! It prints RSS and fd counts at the start and end, the zombies, the elapsed time, and exits
//! non-zero on any failure. `tests/soak.rs` runs a short version of the same code.

use std::time::{Duration, Instant};

use multiproc::{Chunksize, Executor, ProcessPool, TaskError};

/// What one soak run does.
#[derive(Clone, Copy, Debug)]
pub struct Soak {
    /// How many tasks.
    pub tasks: u64,
    /// Task `i` aborts its worker when `i % crash_every == crash_every / 2` (0: never).
    pub crash_every: u64,
    /// Each worker retires after this many tasks.
    pub max_tasks_per_child: u64,
    /// Pool size.
    pub workers: usize,
    /// Items per chunk. A worker retires at the end of the chunk in which it reached
    /// `max_tasks_per_child`, so it runs fewer than `max_tasks_per_child + chunksize`.
    pub chunksize: usize,
}

/// What one soak run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Tasks with the right result.
    pub ok: u64,
    /// Tasks that crashed, each reported as `WorkerDied` for exactly its own index.
    pub crashed: u64,
    /// Everything that was wrong, one line each (capped at 20 lines).
    pub failures: Vec<String>,
    /// How many failures there were in all.
    pub failure_count: u64,
    /// Resident memory of this process (KiB) once the pool was warm, and at the end.
    pub rss_kib: (u64, u64),
    /// Distinct worker pids that returned results (recycling and crashes make new ones).
    pub workers_seen: usize,
    /// The most tasks one worker pid ran.
    pub most_tasks_by_one_worker: u64,
    /// Open fds of this process once the pool was warm, and at the end (pool still alive,
    /// after at most 2 s for a replacement worker still starting).
    pub fds: (usize, usize),
    /// Open fds before the pool was built, and after it was dropped.
    pub fds_outside: (usize, usize),
    /// Zombies under this process at the end, after the pool was dropped.
    pub zombies: Vec<u32>,
    /// Time for the tasks.
    pub elapsed: Duration,
}

impl Soak {
    fn crashes(&self, i: u64) -> bool {
        self.crash_every != 0 && i % self.crash_every == self.crash_every / 2
    }

    /// Runs the soak and reports; it fails nothing itself (see [`Report::failed`]).
    pub fn run(&self) -> multiproc::Result<Report> {
        let mut r = Report::default();
        // The first pool of a program starts what lives as long as the program (the
        // manager thread, the fork server): start them before counting.
        drop(ProcessPool::new(1)?);
        let fds_before = fd_count();
        {
            let pool = ProcessPool::builder()
                .workers(self.workers)
                .max_tasks_per_child(self.max_tasks_per_child)
                .build()?;
            // Warm up: the first results and the first respawns allocate what the pool keeps.
            let warm: Vec<(u64, (u32, u64))> = pool.map(work, (0..1000).map(|i| (i, 0)))?;
            if warm
                .iter()
                .enumerate()
                .any(|(i, &(v, _))| v != expected(i as u64))
            {
                r.fail(format!("warm-up results wrong: {:?}", &warm[..4]));
            }
            r.rss_kib.0 = rss_kib();
            r.fds.0 = fd_count();
            let mut pids = std::collections::HashMap::<(u32, u64), u64>::new();
            let t = Instant::now();
            let crash_every = self.crash_every;
            let items = (0..self.tasks).map(move |i| (i, crash_every));
            let chunks = Chunksize::Fixed(self.chunksize);
            for (i, res) in pool.imap_chunked(work, items, chunks).enumerate() {
                let i = i as u64;
                match res {
                    Ok((v, pid)) if !self.crashes(i) && v == expected(i) => {
                        r.ok += 1;
                        *pids.entry(pid).or_default() += 1;
                    }
                    Err(TaskError::WorkerDied { index, status, .. })
                        if self.crashes(i)
                            && index == Some(i as usize)
                            && status.signal == Some(libc::SIGABRT) =>
                    {
                        r.crashed += 1
                    }
                    other => r.fail(format!("task {i}: {other:?}")),
                }
            }
            r.elapsed = t.elapsed();
            r.workers_seen = pids.len();
            r.most_tasks_by_one_worker = pids.values().copied().max().unwrap_or(0);
            r.rss_kib.1 = rss_kib();
            // A worker that retired with the last tasks may still have a replacement
            // starting (its socket and pidfd are open until it is ready).
            let settle = Instant::now() + Duration::from_secs(2);
            while fd_count() > r.fds.0 && Instant::now() < settle {
                std::thread::sleep(Duration::from_millis(10));
            }
            r.fds.1 = fd_count();
        }
        r.zombies = zombies_under(std::process::id());
        r.fds_outside = (fds_before, fd_count());
        Ok(r)
    }
}

impl Report {
    fn fail(&mut self, line: String) {
        self.failure_count += 1;
        if self.failures.len() < 20 {
            self.failures.push(line);
        }
    }

    /// Whether anything went wrong: a wrong result or error, an fd or a zombie left.
    /// RSS is reported, not judged here (the caller picks a bound that fits its run).
    pub fn failed(&self, soak: &Soak) -> bool {
        let crashes = (0..soak.tasks).filter(|&i| soak.crashes(i)).count() as u64;
        self.failure_count != 0
            || self.most_tasks_by_one_worker >= soak.max_tasks_per_child + soak.chunksize as u64
            || self.ok + self.crashed != soak.tasks
            || self.crashed != crashes
            || self.fds.1 > self.fds.0
            || self.fds_outside.1 > self.fds_outside.0
            || !self.zombies.is_empty()
    }
}

/// The task: a value only the right input gives and which worker ran it, or an `abort()`
/// when told.
fn work((i, crash_every): (u64, u64)) -> (u64, (u32, u64)) {
    if crash_every != 0 && i % crash_every == crash_every / 2 {
        std::process::abort();
    }
    (expected(i), worker_identity())
}

/// This process's pid and start time: unique even when pids are reused. Read once per
/// worker (each worker is a fresh process, so the cell starts empty in each).
fn worker_identity() -> (u32, u64) {
    static ME: std::sync::OnceLock<(u32, u64)> = std::sync::OnceLock::new();
    *ME.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Field 22 (start time); fields after the `(comm)` start at 3.
        let start = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(19)?.parse().ok())
            .unwrap_or(0);
        (std::process::id(), start)
    })
}

fn expected(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ i
}

/// Resident memory of this process, in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Zombies among the descendants of `root` (children, grandchildren, ...).
pub fn zombies_under(root: u32) -> Vec<u32> {
    let mut procs = Vec::new(); // (pid, ppid, zombie)
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(state), Some(Ok(ppid))) = (f.first(), f.get(1).map(|p| p.parse::<u32>())) {
            procs.push((pid, ppid, *state == "Z"));
        }
    }
    let mut under = vec![root];
    let mut zombies = Vec::new();
    while let Some(p) = under.pop() {
        for &(pid, ppid, z) in &procs {
            if ppid == p {
                under.push(pid);
                if z {
                    zombies.push(pid);
                }
            }
        }
    }
    zombies
}

#[allow(dead_code)] // the test that includes this file has its own main
fn main() {
    multiproc::init();
    let mut soak = Soak {
        tasks: 1_000_000,
        crash_every: 10_000,
        max_tasks_per_child: 5_000,
        workers: multiproc::cpu_count().max(2),
        chunksize: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.replace('_', "").parse::<u64>().ok());
        let Some(v) = value else {
            eprintln!(
                "usage: soak [--tasks N] [--crash-every N] [--max-tasks-per-child N] [--workers N] [--chunksize N]"
            );
            std::process::exit(2);
        };
        match flag.as_str() {
            "--tasks" => soak.tasks = v,
            "--crash-every" => soak.crash_every = v,
            "--max-tasks-per-child" => soak.max_tasks_per_child = v,
            "--workers" => soak.workers = v as usize,
            "--chunksize" => soak.chunksize = v.max(1) as usize,
            _ => {
                eprintln!("unknown option {flag}");
                std::process::exit(2);
            }
        }
    }
    println!("soak: {soak:?}");
    let r = match soak.run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: the pool failed: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "tasks ok {}, crashed {} (WorkerDied on exactly their index), failures {}",
        r.ok, r.crashed, r.failure_count
    );
    for f in &r.failures {
        println!("  {f}");
    }
    println!(
        "distinct workers {}, the busiest ran {} tasks",
        r.workers_seen, r.most_tasks_by_one_worker
    );
    println!(
        "rss {} KiB -> {} KiB ({:+} KiB)",
        r.rss_kib.0,
        r.rss_kib.1,
        r.rss_kib.1 as i64 - r.rss_kib.0 as i64
    );
    println!(
        "fds {} -> {} with the pool, {} -> {} around it",
        r.fds.0, r.fds.1, r.fds_outside.0, r.fds_outside.1
    );
    println!("zombies {:?}", r.zombies);
    println!(
        "elapsed {:.1} s ({:.0} tasks/s)",
        r.elapsed.as_secs_f64(),
        soak.tasks as f64 / r.elapsed.as_secs_f64()
    );
    if r.failed(&soak) {
        println!("SOAK FAILED");
        std::process::exit(1);
    }
    println!("soak passed");
}
