//! The `multiproc` command: `tour` (threads or processes? the tutorials' eight experiments,
//! in Rust beside Python) and `bench` (our numbers side by side with Python's and the OS
//! limit).

mod bench;
mod manager_cmd;
mod manager_load;
#[cfg(feature = "mpi")]
mod mpi_check;
mod sys;
mod tour;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "multiproc",
    version,
    about = "Python's multiprocessing toolkit, done right for Rust"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Threads or processes? Eight short experiments, each in Rust beside its Python original.
    Tour {
        /// Small sizes (the whole tour in well under 20 s; CI runs this).
        #[arg(long)]
        quick: bool,
        /// Only experiment N (1 to 8).
        #[arg(long, value_name = "N")]
        only: Option<u32>,
        /// One JSON object per experiment on stdout (every figure); the tables go to stderr.
        #[arg(long)]
        json: bool,
        /// Write a bar chart of the serial / threads / processes wall times: PNG when FILE
        /// ends in .png, SVG otherwise.
        #[arg(long, value_name = "FILE")]
        chart: Option<std::path::PathBuf>,
        /// Print the pool's worker insights for experiment 6 (tasks, time working, waiting
        /// and starting per worker, the slowest tasks); also in --json.
        #[arg(long)]
        insights: bool,
        /// Skip the Python side even where python3 is installed.
        #[arg(long)]
        no_python: bool,
    },
    /// Measures every speed claim beside Python doing the same work and beside the bare
    /// mechanism (the OS limit), in one run.
    Bench {
        /// One JSON line per measurement: {"name","unit","multiproc","python","limit"}.
        #[arg(long)]
        json: bool,
        /// Only measurements whose name contains this (repeatable).
        #[arg(long)]
        filter: Vec<String>,
        /// Repetitions per measurement; the median is reported.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Small sizes (CI smoke runs).
        #[arg(long)]
        quick: bool,
        /// Skip the Python side.
        #[arg(long)]
        no_python: bool,
        /// Busy-looping processes to run beside the bench (a crowded machine).
        #[arg(long, default_value_t = 0)]
        hogs: usize,
        /// Workers of the pools in the `pool.*` per-task rows.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Tasks per `pool.*` per-task measurement, instead of the default.
        #[arg(long)]
        n: Option<u64>,
    },
    /// A standalone manager server (shared dicts, lists, queues, locks...).
    Manager {
        #[command(subcommand)]
        cmd: manager_cmd::ManagerCmd,
    },
    /// (internal) One cold pool start in a fresh process; prints milliseconds.
    #[command(hide = true)]
    BenchColdStart,
    /// (internal) One rank of an MPI job started by mpirun, for tests and benchmarks.
    #[cfg(feature = "mpi")]
    #[command(hide = true)]
    MpiRank { role: String },
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    match Cli::parse().cmd {
        Cmd::Tour {
            quick,
            only,
            json,
            chart,
            insights,
            no_python,
        } => tour::run(tour::Options {
            quick,
            only,
            json,
            chart,
            insights,
            no_python,
        }),
        Cmd::Bench {
            json,
            filter,
            repeat,
            quick,
            no_python,
            hogs,
            workers,
            n,
        } => bench::run(bench::Opts {
            json,
            filter,
            repeat,
            quick,
            no_python,
            hogs,
            workers,
            n,
        }),
        Cmd::BenchColdStart => bench::pool::cold_start(),
        Cmd::Manager { cmd } => manager_cmd::run(cmd),
        #[cfg(feature = "mpi")]
        Cmd::MpiRank { role } => mpi_check::run(&role),
    }
}
