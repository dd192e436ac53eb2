//! `mpi.per_task`: 10,000 tiny tasks over 4 ranks on this machine, per task, beside a bare
//! MPI send/receive round trip (measured inside the same job) and beside
//! `mpi4py.futures.MPIPoolExecutor` on the same work. Medians of several repetitions.

use std::process::Command;

use multiproc::{Error, Result};

/// One benchmark row, as `multiproc bench --json` prints them.
pub(super) struct Row {
    pub name: &'static str,
    pub unit: &'static str,
    pub multiproc: f64,
    pub python: Option<f64>,
    pub limit: Option<f64>,
}

/// The `mpirun` options for one machine, also as root (see the README).
fn mpirun(n: u32) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-n", &n.to_string(), "--oversubscribe", "--bind-to", "none"])
        .args([
            "--mca",
            "mpi_yield_when_idle",
            "1",
            "--mca",
            "btl",
            "self,vader",
        ])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

/// The number after `"key":` in a one-line JSON object.
fn field(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn result_line(out: &std::process::Output) -> Option<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ").map(str::to_string))
}

/// Runs the measurement and returns its rows.
pub(super) fn rows(quick: bool, with_python: bool) -> Result<Vec<Row>> {
    let reps = if quick { "3" } else { "7" };
    let exe = std::env::current_exe().map_err(|e| Error::io("find this program", e))?;
    let out = mpirun(4)
        .arg(&exe)
        .args(["mpi-rank", "bench"])
        .env("MPI_BENCH_REPS", reps)
        .output()
        .map_err(|e| Error::io("run mpirun (is Open MPI installed?)", e))?;
    let Some(ours) = result_line(&out) else {
        return Err(Error::StartFailed(format!(
            "the MPI benchmark failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    };
    let py = if with_python {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/python/mpi_bench.py");
        // The same chunks as ours: Python's rule over our workers, as `map` uses it.
        let workers = field(&ours, "workers").unwrap_or(4.0) as usize;
        let chunk = 10_000usize.div_ceil(4 * workers.max(1)).to_string();
        let py = Command::new("python3")
            .arg(script)
            .args(["--reps", reps, "--chunksize", &chunk])
            .output();
        match py {
            Ok(o) => {
                let line = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("RESULT ").map(str::to_string));
                if line.is_none() {
                    eprintln!(
                        "(mpi4py side failed: Python columns left empty)\n{}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
                line
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let p = |k: &str| py.as_deref().and_then(|l| field(l, k));
    let f = |k: &str| field(&ours, k).unwrap_or(f64::NAN);
    Ok(vec![
        Row {
            name: "mpi.per_task",
            // map of 10,000 tiny tasks over 4 ranks; mpi4py with its default chunksize=1
            unit: "µs",
            multiproc: f("map_us"),
            python: p("map_default_us"),
            limit: Some(f("rtt_us")),
        },
        Row {
            name: "mpi.per_task_same_chunks",
            // the same map, mpi4py given our chunk size
            unit: "µs",
            multiproc: f("map_us"),
            python: p("map_us"),
            limit: Some(f("rtt_us")),
        },
        Row {
            name: "mpi.submit_per_task",
            // submit then result, 2,000 tasks over 4 ranks
            unit: "µs",
            multiproc: f("submit_us"),
            python: p("submit_us"),
            limit: Some(f("rtt_us")),
        },
        Row {
            name: "mpi.bandwidth",
            // one 8 MiB argument to a rank's worker
            unit: "MB/s",
            multiproc: f("mb_per_s"),
            python: None,
            limit: None,
        },
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_fields() {
        let l = "{\"map_us\":1.250,\"rtt_us\":0.9}";
        assert_eq!(super::field(l, "map_us"), Some(1.25));
        assert_eq!(super::field(l, "rtt_us"), Some(0.9));
        assert_eq!(super::field(l, "nope"), None);
    }
}
