//! The `multiproc` command: `tour` (threads or processes? the tutorials' eight experiments,
//! in Rust beside Python) and `bench` (our numbers side by side with Python's and the OS
//! limit).

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
        /// Write an SVG bar chart of the serial / threads / processes wall times.
        #[arg(long, value_name = "FILE.svg")]
        chart: Option<std::path::PathBuf>,
        /// Skip the Python side even where python3 is installed.
        #[arg(long)]
        no_python: bool,
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
        Cmd::Tour {
            quick,
            only,
            json,
            chart,
            no_python,
        } => tour::run(tour::Options {
            quick,
            only,
            json,
            chart,
            no_python,
        }),
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
