//! `multiproc mpi-rank ROLE`: one rank of an MPI job started by `mpirun`, for the
//! integration tests (`tests/mpi.rs`) and the `mpi.per_task` benchmark. Rank 0 prints
//! one line `RESULT <json>` (or `ERROR <message>` and exits 1); the other ranks serve.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use multiproc::{Executor, MpiPool, Return, TaskError};

fn square_plus_one(x: u64) -> u64 {
    x * x + 1
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// The rank the task runs on (its worker inherits the rank's environment).
fn my_rank(_: u64) -> i32 {
    std::env::var("OMPI_COMM_WORLD_RANK")
        .or_else(|_| std::env::var("PMI_RANK"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1)
}

/// Fault injection: some items crash their worker in each way a task can.
fn faulty(i: u64) -> u64 {
    match i {
        3 => crate::sys::segfault(),
        7 => std::process::abort(),
        11 => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        13 => std::process::exit(3),
        17 => panic!("item 17 panics"),
        _ => i * 2,
    }
}

/// A result whose `Deserialize` panics (on rank 0, where results are decoded).
struct Grumpy;

impl serde::Serialize for Grumpy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> serde::Deserialize<'de> for Grumpy {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Grumpy, D::Error> {
        panic!("Grumpy refuses to be deserialized")
    }
}

fn grumpy(_: u64) -> Grumpy {
    Grumpy
}

fn ident(x: u64) -> u64 {
    x
}

fn fail(msg: impl std::fmt::Display) -> multiproc::Result<()> {
    println!("ERROR {msg}");
    std::process::exit(1)
}

/// The inner error and where it ran, for an error from a rank.
fn placed(e: &TaskError) -> Option<(i32, &str, &TaskError)> {
    match e {
        TaskError::OnRank { rank, host, error } => Some((*rank, host.as_str(), &**error)),
        _ => None,
    }
}

pub(crate) fn run(role: &str) -> multiproc::Result<()> {
    match role {
        "serial" => serial(),
        "faults" => faults(),
        "rank-dies" => rank_dies(),
        "threads" => threads(),
        "limits" => limits(),
        "mismatch" => match MpiPool::world() {
            Ok(Some(_)) => fail("every rank runs the same build: no mismatch seen"),
            Ok(None) => Ok(()),
            Err(e) => fail(e),
        },
        "bench" => bench(),
        _ => fail(format!("unknown role {role}")),
    }
}

/// Results equal a serial computation, over every Executor entry point.
fn serial() -> multiproc::Result<()> {
    let Some(pool) = MpiPool::builder().workers(1).world()? else {
        return Ok(());
    };
    let n = 10_000u64;
    let want: Vec<u64> = (0..n).map(square_plus_one).collect();
    if pool.map(square_plus_one, 0..n)? != want {
        return fail("map differs from the serial computation");
    }
    let pairs: Vec<(u64, u64)> = (0..1000).map(|i| (i, 2 * i)).collect();
    let want_sum: Vec<u64> = pairs.iter().map(|&(a, b)| a + b).collect();
    if pool.starmap(add, pairs)? != want_sum {
        return fail("starmap differs");
    }
    let ordered: Vec<u64> = pool.imap(square_plus_one, 0..n).collect::<Result<_, _>>()?;
    if ordered != want {
        return fail("imap differs");
    }
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square_plus_one, 0..n)
        .collect::<Result<_, _>>()?;
    unordered.sort();
    let mut sorted = want.clone();
    sorted.sort();
    if unordered != sorted {
        return fail("imap_unordered differs");
    }
    let futs: Vec<_> = (0..200)
        .map(|i| pool.submit(square_plus_one, i))
        .collect::<Result<_, _>>()?;
    let w = multiproc::wait(&futs, Return::AllCompleted, Some(Duration::from_secs(60)));
    if !w.not_done.is_empty() {
        return fail("wait left futures not done");
    }
    let mut got: Vec<u64> = multiproc::as_completed(futs)
        .map(|f| f.result())
        .collect::<Result<_, _>>()?;
    got.sort();
    if got != (0..200).map(square_plus_one).collect::<Vec<_>>() {
        return fail("submit/as_completed differ");
    }
    // Generic code written against Executor runs unchanged.
    fn total(pool: &impl Executor, n: u64) -> u64 {
        pool.map(ident, 0..n).unwrap().into_iter().sum()
    }
    if total(&pool, 1000) != 499_500 {
        return fail("generic Executor code differs");
    }
    let ranks: BTreeSet<i32> = pool.map(my_rank, 0..4000)?.into_iter().collect();
    let hosts: Vec<String> = pool.ranks().iter().map(|r| r.host.clone()).collect();
    pool.shutdown(true, false);
    if pool.submit(ident, 1).is_ok() {
        return fail("submit after shutdown was accepted");
    }
    println!(
        "RESULT {{\"ranks_used\":{:?},\"ranks\":{},\"hosts\":{:?}}}",
        ranks,
        hosts.len(),
        hosts
    );
    Ok(())
}

/// Crashes, aborts, exits, panics and timeouts on non-zero ranks fail only their tasks.
fn faults() -> multiproc::Result<()> {
    let Some(pool) = MpiPool::builder()
        .workers(1)
        .root_serves(false)
        .task_timeout(Duration::from_secs(3))
        .world()?
    else {
        return Ok(());
    };
    let out: Vec<Result<u64, TaskError>> = pool
        .imap_chunked(faulty, 0..40u64, multiproc::Chunksize::Fixed(4))
        .collect();
    let mut seen = Vec::new();
    for (i, r) in out.iter().enumerate() {
        let i = i as u64;
        match (i, r) {
            (3 | 7 | 11 | 13 | 17, Err(e)) => {
                let Some((rank, host, inner)) = placed(e) else {
                    return fail(format!("item {i}: error without its rank: {e}"));
                };
                if rank == 0 || host.is_empty() || e.index() != Some(i as usize) {
                    return fail(format!("item {i}: wrong place or index: {e:?}"));
                }
                let ok = match (i, inner) {
                    (3, TaskError::WorkerDied { status, .. }) => status.signal == Some(11),
                    (7, TaskError::WorkerDied { status, .. }) => status.signal == Some(6),
                    (11, TaskError::TimedOut { .. }) => true,
                    (13, TaskError::WorkerDied { status, .. }) => status.code == Some(3),
                    (17, TaskError::Panicked { message, .. }) => message.contains("item 17"),
                    _ => false,
                };
                if !ok {
                    return fail(format!("item {i}: unexpected error {e:?}"));
                }
                seen.push(format!("{e}"));
            }
            (_, Ok(v)) if *v == i * 2 => {}
            _ => return fail(format!("item {i}: unexpected {r:?}")),
        }
    }
    // A result type whose Deserialize panics fails its own task, on rank 0.
    match pool.submit(grumpy, 0)?.result() {
        Err(e) if matches!(placed(&e), Some((_, _, TaskError::Deserialize { .. }))) => {}
        other => return fail(format!("a panicking Deserialize gave {:?}", other.err())),
    }
    // The ranks are still serving after all that.
    if pool.map(ident, 0..500u64)? != (0..500).collect::<Vec<u64>>() {
        return fail("map after the faults differs");
    }
    let f = pool.submit(faulty, 3)?;
    let single = match f.result() {
        Err(e) => placed(&e).map(|(r, _, _)| r).unwrap_or(0),
        Ok(_) => 0,
    };
    if single == 0 {
        return fail("a submitted segfault did not fail with its rank");
    }
    drop(pool);
    println!("RESULT {{\"errors\":{seen:?}}}");
    Ok(())
}

fn hog(mb: usize) -> usize {
    let v = vec![1u8; mb << 20];
    v.iter().map(|&b| b as usize).sum::<usize>() >> 20
}

fn worker_pid(_: u64) -> u32 {
    std::process::id()
}

/// Dies on its first attempt only (a marker file says whether it ran before).
fn flaky(path: String) -> u32 {
    if std::fs::metadata(&path).is_err() {
        std::fs::write(&path, b"x").unwrap();
        std::process::abort();
    }
    7
}

/// `memory_limit`, `max_tasks_per_child` and `retries` mean on every rank what they mean on
/// a `ProcessPool`.
fn limits() -> multiproc::Result<()> {
    let Some(pool) = MpiPool::builder()
        .workers(1)
        .root_serves(false)
        .memory_limit(512 << 20)
        .max_tasks_per_child(5)
        .retries(1)
        .world()?
    else {
        return Ok(());
    };
    match pool.submit(hog, 2048)?.result() {
        Err(e) => match placed(&e) {
            Some((r, _, TaskError::MemoryLimit { limit, .. })) if r > 0 && *limit == 512 << 20 => {}
            _ => return fail(format!("a hog gave {e:?}")),
        },
        Ok(v) => return fail(format!("a hog of 2 GiB got {v} MiB under a 512 MiB limit")),
    }
    if pool.submit(hog, 16)?.result()? != 16 {
        return fail("a small allocation failed");
    }
    let pids: BTreeSet<u32> = pool
        .map_chunked(worker_pid, 0..40u64, multiproc::Chunksize::Fixed(1))?
        .into_iter()
        .collect();
    if pids.len() < 8 {
        return fail(format!("40 tasks ran in only {} workers", pids.len()));
    }
    let marker = std::env::temp_dir().join(format!("multiproc-mpi-flaky-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let r = pool.submit(flaky, marker.display().to_string())?.result();
    let _ = std::fs::remove_file(&marker);
    if r != Ok(7) {
        return fail(format!("a retried task gave {r:?}"));
    }
    drop(pool);
    println!("RESULT {{\"workers_seen\":{}}}", pids.len());
    Ok(())
}

/// On threads: the same results, and a panic still fails only its task.
fn threads() -> multiproc::Result<()> {
    let Some(pool) = MpiPool::builder().workers(2).threads(true).world()? else {
        return Ok(());
    };
    let n = 10_000u64;
    if pool.map(square_plus_one, 0..n)? != (0..n).map(square_plus_one).collect::<Vec<_>>() {
        return fail("map on threads differs");
    }
    let out: Vec<Result<u64, TaskError>> = pool.imap(faulty, 15..20u64).collect();
    for (k, r) in out.iter().enumerate() {
        let i = 15 + k as u64;
        let ok = match r {
            Ok(v) => i != 17 && *v == i * 2,
            Err(e) => {
                i == 17
                    && matches!(placed(e), Some((_, _, TaskError::Panicked { message, .. }))
                        if message.contains("item 17"))
            }
        };
        if !ok {
            return fail(format!("item {i}: unexpected {r:?}"));
        }
    }
    if MpiPool::builder().world().is_ok() {
        return fail("a second world() was accepted");
    }
    drop(pool);
    println!("RESULT {{\"threads\":true}}");
    Ok(())
}

/// On threads, a crash takes its rank down, and MPI ends the job: rank 0 must not hang.
fn rank_dies() -> multiproc::Result<()> {
    let Some(pool) = MpiPool::builder()
        .workers(1)
        .threads(true)
        .root_serves(false)
        .world()?
    else {
        return Ok(());
    };
    let f = pool.submit(faulty, 3)?;
    // Never reached: mpirun ends the job when the rank dies.
    let r = f.result();
    fail(format!("rank 0 outlived the dead rank: {r:?}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Per-task overhead of 10,000 tiny tasks over the ranks, beside a bare MPI round trip.
fn bench() -> multiproc::Result<()> {
    let reps: usize = std::env::var("MPI_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let Some(pool) = MpiPool::builder()
        .workers(1)
        .bench_round_trip(20_000)
        .world()?
    else {
        return Ok(());
    };
    let n = 10_000u64;
    pool.map(ident, 0..n)?;
    let map_us = median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                pool.map(ident, 0..n).unwrap();
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            })
            .collect(),
    );
    let sub_n = 2000u64;
    let submit_us = median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                let fs: Vec<_> = (0..sub_n).map(|i| pool.submit(ident, i).unwrap()).collect();
                for f in fs {
                    f.result().unwrap();
                }
                t.elapsed().as_secs_f64() * 1e6 / sub_n as f64
            })
            .collect(),
    );
    // Bandwidth: one 8 MiB argument there and back.
    let big = vec![7u8; 8 << 20];
    fn echo(v: Vec<u8>) -> usize {
        v.len()
    }
    let bw = median(
        (0..reps.min(3))
            .map(|_| {
                let t = Instant::now();
                pool.submit(echo, big.clone()).unwrap().result().unwrap();
                (8 << 20) as f64 / t.elapsed().as_secs_f64() / 1e6
            })
            .collect(),
    );
    let rtt = pool.bare_round_trip().unwrap_or_default().as_secs_f64() * 1e6;
    println!(
        "RESULT {{\"map_us\":{map_us:.3},\"submit_us\":{submit_us:.3},\"rtt_us\":{rtt:.3},\
         \"mb_per_s\":{bw:.1},\"ranks\":{},\"workers\":{}}}",
        pool.ranks().len(),
        pool.workers()
    );
    Ok(())
}
