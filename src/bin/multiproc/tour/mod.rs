//! `multiproc tour`: what threads and processes do in Rust, beside Python, in eight short
//! experiments. Each runs on multiproc, then (when `python3` is here) runs its Python
//! original from `bench/python/tour/` with the same sizes, and prints both side by side.
//! Every figure is measured in this run; the only arithmetic is the speed-up, a ratio of
//! two measured wall times.

mod chart;
mod counter;
mod cpu;
mod crawl;
mod io;
mod lifecycle;
mod pool_map;
mod python;
mod queue;
mod report;
mod sleepers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use multiproc::Result;

pub(crate) use report::{Cell, Experiment, Row};

/// What `multiproc tour` was asked for.
pub(crate) struct Options {
    /// Small sizes (CI): the whole tour in well under 20 s.
    pub quick: bool,
    /// Only this experiment (1 to 8).
    pub only: Option<u32>,
    /// One JSON object per experiment on stdout; the tables go to stderr.
    pub json: bool,
    /// Write a bar chart of the serial / threads / processes wall times here (PNG for
    /// `*.png`, SVG otherwise).
    pub chart: Option<PathBuf>,
    /// Experiment 6 prints (and puts in its JSON) its pool's worker insights.
    pub insights: bool,
    /// Skip the Python side even where `python3` exists.
    pub no_python: bool,
}

/// What every experiment gets: the sizes to use, the Python runner, the progress bar.
pub(crate) struct Ctx {
    pub quick: bool,
    /// `--insights`: experiment 6 shows its pool's worker insights.
    pub insights: bool,
    pub python: Option<python::Python>,
    bar: ProgressBar,
}

impl Ctx {
    /// Shows what is being measured now (on the progress bar, when stderr is a terminal).
    pub(crate) fn step(&self, what: impl Into<String>) {
        self.bar.set_message(what.into());
    }

    /// Runs `bench/python/tour/<script>` with `args`; its last stdout line, parsed as JSON.
    /// `None` (with a note on stderr) when there is no Python side or the script failed.
    pub(crate) fn python(&self, script: &str, args: &[String]) -> Option<serde_json::Value> {
        let py = self.python.as_ref()?;
        self.step(format!("Python: {script}"));
        py.run(script, args, &self.bar)
    }
}

/// Wall time of `f`, with its result.
pub(crate) fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed()))
}

/// Seconds since the Unix epoch: a clock that worker processes and Python share.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

type RunFn = fn(&Ctx) -> Result<Experiment>;

const EXPERIMENTS: [(u32, &str, RunFn); 8] = [
    (1, "three sleepers", sleepers::run),
    (2, "life cycles", lifecycle::run),
    (3, "CPU-bound", cpu::run),
    (4, "I/O-bound", io::run),
    (5, "a shared counter", counter::run),
    (6, "Pool.map", pool_map::run),
    (7, "producer and consumer", queue::run),
    (8, "a small crawl", crawl::run),
];

pub(crate) fn run(opts: Options) -> Result<()> {
    if let Some(n) = opts.only
        && !(1..=8).contains(&n)
    {
        return Err(multiproc::Error::InvalidArgument(format!(
            "--only {n}: the tour has experiments 1 to 8"
        )));
    }
    if let Some(path) = &opts.chart {
        chart::check_path(path)?;
    }
    let python = if opts.no_python {
        None
    } else {
        python::Python::find()
    };
    let bar = if opts.json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {prefix}: {msg}")
                .expect("a valid template"),
        );
        b.set_draw_target(ProgressDrawTarget::stderr());
        b.enable_steady_tick(Duration::from_millis(120));
        b
    };
    let ctx = Ctx {
        quick: opts.quick,
        insights: opts.insights,
        python,
        bar,
    };
    // The human text goes to stdout, or to stderr when stdout carries the JSON.
    let say = |s: &str| {
        ctx.bar.suspend(|| {
            if opts.json {
                eprintln!("{s}");
            } else {
                println!("{s}");
            }
        })
    };
    say(&format!(
        "multiproc tour: threads and processes, in Rust and in Python\n\
         {} CPUs here; Python: {}{}\n",
        multiproc::cpu_count(),
        ctx.python
            .as_ref()
            .map(|p| p.version.clone())
            .unwrap_or_else(|| "not run (no python3, or --no-python)".into()),
        if opts.quick { "; --quick sizes" } else { "" }
    ));
    let total = Instant::now();
    let mut done = Vec::new();
    for (id, name, f) in EXPERIMENTS {
        if opts.only.is_some_and(|n| n != id) {
            continue;
        }
        ctx.bar.set_prefix(format!("{id}/8 {name}"));
        let exp = f(&ctx)?;
        say(&exp.render(ctx.python.as_ref().map(|p| p.version.as_str())));
        if opts.json {
            ctx.bar.suspend(|| println!("{}", exp.to_json()));
        }
        done.push(exp);
    }
    ctx.bar.finish_and_clear();
    if let Some(path) = &opts.chart {
        chart::draw(path, &done)?;
        say(&format!("chart written to {}", path.display()));
    }
    say(&format!(
        "the tour took {:.1} s",
        total.elapsed().as_secs_f64()
    ));
    Ok(())
}
