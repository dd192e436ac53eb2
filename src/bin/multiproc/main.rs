//! The `multiproc` command: `tour` (threads or processes? the classic experiment, in
//! Rust) and `bench` (our numbers side by side with Python's and the OS limit).

mod bench;
mod bench_manager;
mod manager_cmd;
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
    /// Threads or processes? Runs the classic CPU-bound and I/O-bound experiment.
    Tour {
        /// fib(n) for the CPU-bound tasks.
        #[arg(long, default_value_t = 40)]
        n: u64,
        /// Seconds each I/O-bound task waits on a child `sleep`.
        #[arg(long, default_value_t = 2)]
        sleep: u64,
    },
    /// Measures the pools side by side with Python 3 and with bare baselines.
    Bench {
        /// Fewer repetitions (for CI smoke runs).
        #[arg(long)]
        quick: bool,
        /// Skip the Python side.
        #[arg(long)]
        no_python: bool,
        /// Only this group of measurements (`manager`).
        #[arg(long)]
        only: Option<String>,
        /// One JSON object per measurement (manager measurements).
        #[arg(long)]
        json: bool,
    },
    /// A standalone manager server (shared dicts, lists, queues, locks...).
    Manager {
        #[command(subcommand)]
        cmd: manager_cmd::ManagerCmd,
    },
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    match Cli::parse().cmd {
        Cmd::Tour { n, sleep } => tour::run(n, sleep),
        Cmd::Bench {
            quick,
            no_python,
            only,
            json,
        } => {
            if only.as_deref() != Some("manager") {
                bench::run(quick, !no_python)?;
            }
            bench_manager::run(quick, !no_python, json)
        }
        Cmd::Manager { cmd } => manager_cmd::run(cmd),
    }
}
