//! The `multiproc` command: `tour` (threads or processes? the classic experiment, in
//! Rust) and `bench` (our numbers side by side with Python's and the OS limit).

mod bench;
mod bench_manager;
#[cfg(feature = "mpi")]
mod bench_mpi;
mod manager_cmd;
#[cfg(feature = "mpi")]
mod mpi_check;
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
    /// The `mpi.per_task` benchmark: MpiPool over `mpirun -n 4`, beside bare MPI and
    /// mpi4py.futures.
    #[cfg(feature = "mpi")]
    BenchMpi {
        /// Fewer repetitions.
        #[arg(long)]
        quick: bool,
        /// Skip the Python side.
        #[arg(long)]
        no_python: bool,
        /// One JSON row per line.
        #[arg(long)]
        json: bool,
    },
    /// (internal) One rank of an MPI job started by mpirun, for tests and benchmarks.
    #[cfg(feature = "mpi")]
    #[command(hide = true)]
    MpiRank { role: String },
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
            let only = only.as_deref();
            if only != Some("manager") && only != Some("mpi") {
                bench::run(quick, !no_python)?;
            }
            if only != Some("mpi") {
                bench_manager::run(quick, !no_python, json)?;
            }
            // With the `mpi` feature, the `mpi.*` rows (see `bench_mpi::rows`).
            #[cfg(feature = "mpi")]
            if only.is_none() || only == Some("mpi") {
                bench_mpi::print(quick, !no_python, json)?;
            }
            Ok(())
        }
        Cmd::Manager { cmd } => manager_cmd::run(cmd),
        #[cfg(feature = "mpi")]
        Cmd::BenchMpi {
            quick,
            no_python,
            json,
        } => bench_mpi::print(quick, !no_python, json),
        #[cfg(feature = "mpi")]
        Cmd::MpiRank { role } => mpi_check::run(&role),
    }
}
