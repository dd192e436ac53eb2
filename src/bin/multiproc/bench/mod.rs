//! `multiproc bench`: every speed claim beside its limit, in one run.
//!
//! Each measurement is one [`Row`]: multiproc's figure, Python's figure for the same work
//! (same N, same start-up state, run in the same invocation by `bench/python/bench.py`),
//! and the *limit*: the simplest correct version of the mechanism, written bare in
//! [`limits`] and measured here too. This machine is noisy: every figure is the median of
//! `--repeat` runs, and the ratios are what to read.
//!
//! `--json` prints one line per row: `{"name", "unit", "multiproc", "python", "limit"}`.

mod ipc;
mod limits;
mod manager;
#[cfg(feature = "mpi")]
mod mpi;
pub(crate) mod pool;
mod sync;

use std::fmt::Write as _;
use std::time::Duration;

use multiproc::{Process, Result};

/// Options of `multiproc bench`.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    /// Print one JSON line per measurement instead of the table.
    pub json: bool,
    /// Only the measurements whose name contains one of these.
    pub filter: Vec<String>,
    /// Repetitions per measurement; the median is reported.
    pub repeat: usize,
    /// Small sizes (CI smoke runs).
    pub quick: bool,
    /// Skip the Python side.
    pub no_python: bool,
    /// Busy-looping processes to run beside the bench (a crowded machine).
    pub hogs: usize,
    /// Workers of the pools in the `pool.*` per-task rows.
    pub workers: usize,
    /// Tasks per `pool.*` per-task measurement, instead of the default.
    pub n: Option<u64>,
}

/// One measurement: multiproc, Python doing the same work, and the bare limit.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub name: String,
    pub unit: &'static str,
    /// Throughputs and speed-ups (higher is better), as opposed to times.
    pub higher_is_better: bool,
    pub multiproc: f64,
    pub python: Option<f64>,
    pub limit: Option<f64>,
    /// What the Python side must run to measure the same thing (`name=N` for bench.py).
    pub python_job: Option<String>,
}

impl Row {
    pub(crate) fn time(name: &str, unit: &'static str, multiproc: f64) -> Row {
        Row {
            name: name.into(),
            unit,
            higher_is_better: false,
            multiproc,
            python: None,
            limit: None,
            python_job: None,
        }
    }

    pub(crate) fn rate(name: &str, unit: &'static str, multiproc: f64) -> Row {
        Row {
            higher_is_better: true,
            ..Row::time(name, unit, multiproc)
        }
    }

    /// A row whose Python side and limit were measured elsewhere in this run (the manager
    /// and MPI benches run their own Python); rates are the units per second.
    pub(crate) fn measured(
        name: &str,
        unit: &'static str,
        multiproc: f64,
        python: Option<f64>,
        limit: Option<f64>,
    ) -> Row {
        Row {
            higher_is_better: unit.ends_with("/s"),
            python,
            limit,
            ..Row::time(name, unit, multiproc)
        }
    }

    pub(crate) fn limit(mut self, v: f64) -> Row {
        self.limit = Some(v);
        self
    }

    /// Python runs `name` with size `n` (see `bench/python/bench.py`).
    pub(crate) fn py(mut self, n: u64) -> Row {
        self.python_job = Some(format!("{}={n}", self.name));
        self
    }

    /// How many times better multiproc is than `other` (> 1: multiproc wins).
    fn times_better(&self, other: Option<f64>) -> Option<f64> {
        let o = other?;
        Some(if self.higher_is_better {
            self.multiproc / o
        } else {
            o / self.multiproc
        })
    }

    fn json(&self) -> String {
        let num = |v: Option<f64>| match v {
            Some(v) if v.is_finite() => format!("{v:.6}"),
            _ => "null".into(),
        };
        format!(
            r#"{{"name":"{}","unit":"{}","multiproc":{},"python":{},"limit":{}}}"#,
            self.name,
            self.unit,
            num(Some(self.multiproc)),
            num(self.python),
            num(self.limit)
        )
    }
}

/// The running bench: options, and the rows measured so far.
pub(crate) struct Bench {
    pub opts: Opts,
    rows: Vec<Row>,
}

impl Bench {
    /// Whether any of `names` passes the filter.
    pub(crate) fn wants(&self, names: &[&str]) -> bool {
        self.opts.filter.is_empty()
            || names
                .iter()
                .any(|n| self.opts.filter.iter().any(|f| n.contains(f.as_str())))
    }

    /// Median of `--repeat` runs of `f`.
    pub(crate) fn median(&self, mut f: impl FnMut() -> f64) -> f64 {
        median((0..self.opts.repeat.max(1)).map(|_| f()).collect())
    }

    /// Medians of `--repeat` runs of `f` and of `g`, taken alternately (f, g, f, g, ..), so
    /// that a noisy neighbour's slow minute falls on both sides of a ratio alike.
    pub(crate) fn median2(
        &self,
        mut f: impl FnMut() -> f64,
        mut g: impl FnMut() -> f64,
    ) -> (f64, f64) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..self.opts.repeat.max(1) {
            a.push(f());
            b.push(g());
        }
        (median(a), median(b))
    }

    /// Picks the quick or the full size.
    pub(crate) fn size(&self, quick: u64, full: u64) -> u64 {
        if self.opts.quick { quick } else { full }
    }

    pub(crate) fn push(&mut self, row: Row) {
        if self.wants(&[&row.name]) {
            eprintln!("  {:<36} {:>12.4} {}", row.name, row.multiproc, row.unit);
            self.rows.push(row);
        }
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Pins the calling thread (and what it starts afterwards) to `cpu`, or unpins it: back to
/// the CPUs the program started with (read once, before any pinning: a count taken while
/// pinned would be 1).
pub(crate) fn pin(cpu: Option<usize>) {
    static ALL: std::sync::OnceLock<rustix::thread::CpuSet> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| {
        rustix::thread::sched_getaffinity(None).unwrap_or_else(|_| {
            let mut set = rustix::thread::CpuSet::new();
            (0..multiproc::cpu_count().max(1)).for_each(|c| set.set(c));
            set
        })
    });
    let set = match cpu {
        Some(c) => {
            let mut set = rustix::thread::CpuSet::new();
            set.set(c);
            set
        }
        None => *all,
    };
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn hog(_: ()) {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

pub(crate) fn run(opts: Opts) -> Result<()> {
    pin(None); // records the CPUs this program may use, before anything is pinned
    let hogs: Vec<Process> = (0..opts.hogs)
        .map(|_| Process::builder().daemon(true).start(hog, ()))
        .collect::<Result<_>>()?;
    let mut b = Bench {
        opts,
        rows: Vec::new(),
    };
    eprintln!(
        "measuring multiproc and the limits (median of {}){}...",
        b.opts.repeat,
        if hogs.is_empty() {
            String::new()
        } else {
            format!(", beside {} CPU hogs", hogs.len())
        }
    );
    pool::run(&mut b)?;
    ipc::run(&mut b)?;
    sync::run(&mut b)?;
    if b.wants(&["manager."]) {
        // The manager bench runs its Python side (SyncManager) itself, pinned the same way.
        for m in manager::measure(b.opts.quick, !b.opts.no_python)? {
            b.push(Row::measured(
                m.name,
                m.unit,
                m.multiproc,
                m.python,
                m.limit,
            ));
        }
    }
    #[cfg(feature = "mpi")]
    if b.wants(&["mpi."]) {
        // `mpirun -n 4` jobs of this program; mpi4py runs inside them on its side.
        for m in mpi::rows(b.opts.quick, !b.opts.no_python)? {
            b.push(Row::measured(
                m.name,
                m.unit,
                m.multiproc,
                m.python,
                m.limit,
            ));
        }
    }
    if !b.opts.no_python {
        python(&mut b);
    }
    for h in &hogs {
        let _ = h.kill();
        h.join_timeout(Duration::from_secs(5));
    }
    if b.opts.json {
        for r in &b.rows {
            println!("{}", r.json());
        }
    } else {
        print!("{}", table(&b.rows));
    }
    Ok(())
}

/// Runs `bench/python/bench.py` once for every row that has a Python side.
fn python(b: &mut Bench) {
    let jobs: Vec<String> = b.rows.iter().filter_map(|r| r.python_job.clone()).collect();
    if jobs.is_empty() {
        return;
    }
    eprintln!("measuring Python (same N, same start-up state)...");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/python/bench.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("--repeat={}", b.opts.repeat))
        .args(&jobs)
        .stderr(std::process::Stdio::inherit())
        .output();
    let out = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            eprintln!("(bench.py failed: {}; Python columns left empty)", o.status);
            return;
        }
        Err(e) => {
            eprintln!("(python3 not available: {e}; Python columns left empty)");
            return;
        }
    };
    // One `name value` pair per line.
    for line in out.lines() {
        let mut it = line.split_whitespace();
        if let (Some(name), Some(v)) = (it.next(), it.next().and_then(|v| v.parse().ok())) {
            for r in b.rows.iter_mut().filter(|r| r.name == name) {
                r.python = Some(v);
            }
        }
    }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let f = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
    let x = |v: Option<f64>| v.map(|v| format!("{v:.2}×")).unwrap_or_default();
    let _ = writeln!(
        s,
        "\n{:<34} {:<7} {:>11} {:>11} {:>11}   {:>9} {:>11}",
        "measurement", "unit", "multiproc", "python", "limit", "vs python", "of limit"
    );
    let _ = writeln!(s, "{}", "-".repeat(102));
    for r in rows {
        // "of limit": how far multiproc is from the bare mechanism (1.00× = at the limit;
        // > 1 means slower for times, < 1 means less throughput for rates).
        let of_limit = r.limit.map(|l| r.multiproc / l);
        let _ = writeln!(
            s,
            "{:<34} {:<7} {:>11} {:>11} {:>11}   {:>9} {:>11}",
            r.name,
            r.unit,
            fmt_num(r.multiproc),
            f(r.python),
            f(r.limit),
            x(r.times_better(r.python)),
            x(of_limit)
        );
    }
    let _ = writeln!(
        s,
        "\nvs python: how many times better multiproc is. of limit: multiproc ÷ limit \
         (times: 1.00× is at the limit, higher is slower; rates: 1.00× is at the limit, \
         lower is slower)."
    );
    s
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}", v)
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}
