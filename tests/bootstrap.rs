//! Worker bootstrap: a program needs no `init()` (the library runs it before `main`), a
//! worker that reaches user code anyway fails at once naming `init()` instead of
//! multiplying, kills reach a worker's own children, and a handshake that never answers
//! blocks no other child.
//!
//! This file deliberately has NO `multiproc::test_support!()` and never calls `init()`:
//! every pool below is proof that the library's own start-up hook turns a re-executed test
//! binary into a worker.

mod common;
use common::{assert_group_died, deadline, start_children_then_hang, wait_for_pids};

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use multiproc::{Executor, Process, ProcessPool, StartMethod, TaskError};

/// Processes of one helper tree above this many stop at once: a regression that makes
/// workers re-run the program must not fork-bomb the machine while it is being caught.
const TREE_CAP: usize = 30;

/// The small programs some tests need. A test re-executes this binary with `MP_TEST_HELPER`
/// set; the helper then runs as the whole program, from `.init_array` (before the test
/// harness), like a `main` that never calls `multiproc::init()`.
#[used]
#[unsafe(link_section = ".init_array")]
static HELPERS: extern "C" fn() = {
    extern "C" fn run_helper() {
        let Ok(mode) = std::env::var("MP_TEST_HELPER") else {
            return;
        };
        if let Ok(count) = std::env::var("MP_TEST_COUNT")
            && count_process(&count) > TREE_CAP
        {
            std::process::exit(99);
        }
        let worker = std::env::var_os("MULTIPROC_ROLE").is_some();
        match (mode.as_str(), worker) {
            // User code that runs in a worker before multiproc could turn it into one.
            ("pool_before_init", true) => helper_map(),
            // A worker: multiproc's own start-up hook (after this one) makes it one.
            (_, true) => return,
            ("map", false) | ("pool_before_init", false) => helper_map(),
            ("slow_handshake", false) => helper_slow_handshake(),
            (other, false) => {
                eprintln!("unknown helper {other}");
                std::process::exit(2)
            }
        }
        std::process::exit(0);
    }
    run_helper
};

/// Appends our pid to the tree's count file; returns how many processes it lists.
fn count_process(path: &str) -> usize {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open count file");
    let _ = writeln!(f, "{}", std::process::id());
    drop(f);
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A process of a helper tree that reached the test harness (a worker ran the program's
/// `main`): stop before it runs the tests and multiplies.
fn not_in_a_helper_tree() {
    if std::env::var_os("MP_TEST_HELPER").is_some() {
        eprintln!("a helper's worker ran the test harness");
        std::process::exit(98);
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn helper_map() {
    let r = ProcessPool::new(2).and_then(|pool| pool.map(square, 0..10u64));
    match r {
        Ok(v) => println!("sum {}", v.iter().sum::<u64>()),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(3);
        }
    }
}

fn exit3(_: ()) -> u32 {
    std::process::exit(3)
}

/// One pool's handshake never answers (its "worker" is a shell script that sleeps); another
/// pool meanwhile loses a worker, which must be reported at once, and gets a replacement.
fn helper_slow_handshake() {
    let script = std::env::var("MP_HANG_SCRIPT").unwrap();
    let hang_pid_file = std::env::var("MP_HANG_PID").unwrap();
    let a = ProcessPool::new(1).unwrap();
    let t0 = Instant::now();
    let hung = std::thread::spawn(move || {
        let r = ProcessPool::builder().workers(1).executable(script).build();
        (r.err().map(|e| e.to_string()), t0.elapsed())
    });
    // Wait until the script runs: its handshake is now pending.
    let hang_pid: u32 = loop {
        if let Ok(s) = std::fs::read_to_string(&hang_pid_file)
            && let Ok(p) = s.trim().parse()
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let t1 = Instant::now();
    let died = a.submit(exit3, ()).unwrap().result();
    println!("death_ms {}", t1.elapsed().as_millis());
    println!("died {}", matches!(died, Err(TaskError::WorkerDied { .. })));
    let again = a.submit(square, 7).unwrap().result();
    println!("replacement_ms {} {:?}", t1.elapsed().as_millis(), again);
    let (err, took) = hung.join().unwrap();
    println!("hung_ms {}", took.as_millis());
    println!("hung_err {}", err.unwrap_or_default());
    // Killed *and reaped*: the pid is gone, not a zombie of ours.
    let end = Instant::now() + Duration::from_secs(2);
    while common::exists(hang_pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("hung_reaped {}", !common::exists(hang_pid));
}

struct Ran {
    code: Option<i32>,
    out: String,
    took: Duration,
    processes: usize,
}

fn temp_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("mp-boot-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Runs this binary as helper `mode` in its own process group; after `secs` the whole group
/// is killed and the run reported as unfinished (`code: None`).
fn run_helper(mode: &str, envs: &[(&str, String)], secs: u64) -> Ran {
    let count = temp_path("count");
    let out = temp_path("out");
    let t0 = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MP_TEST_HELPER", mode)
        .env("MP_TEST_COUNT", &count)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st.code().unwrap_or(-1));
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = t0.elapsed();
    let mut s = String::new();
    let _ = std::fs::File::open(&out).map(|mut f| f.read_to_string(&mut s));
    let processes = std::fs::read_to_string(&count)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&count);
    Ran {
        code,
        out: s,
        took,
        processes,
    }
}

#[test]
fn a_program_without_init_runs_its_pool() {
    not_in_a_helper_tree();
    let r = run_helper("map", &[], 30);
    assert_eq!(r.code, Some(0), "output: {}", r.out);
    assert!(r.out.contains("sum 285"), "output: {}", r.out);
    // The program and its fork server; the workers are forked, they re-run nothing.
    assert!(
        r.processes <= 2,
        "{} processes ran the program",
        r.processes
    );
}

#[test]
fn a_worker_that_reaches_user_code_fails_at_once_naming_init() {
    not_in_a_helper_tree();
    let r = run_helper("pool_before_init", &[], 30);
    assert_eq!(r.code, Some(3), "output: {}", r.out);
    assert!(
        r.out.contains("multiproc::init()"),
        "the error must name init(): {}",
        r.out
    );
    assert!(r.took < Duration::from_secs(3), "took {:?}", r.took);
    assert!(
        r.processes <= 2,
        "{} processes ran the program",
        r.processes
    );
}

#[test]
fn pools_and_processes_work_in_a_test_binary_without_test_support() {
    not_in_a_helper_tree();
    deadline(60, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let pool = ProcessPool::builder()
                .workers(2)
                .start_method(method)
                .build()
                .unwrap();
            let v = pool.map(square, 0..10u64).unwrap();
            assert_eq!(v.iter().sum::<u64>(), 285);
            let p = Process::start_with(method, |x: u32| assert_eq!(x, 5), 5).unwrap();
            assert!(p.join_timeout(Duration::from_secs(20)));
            assert_eq!(p.exitcode(), Some(0));
        }
    });
}

#[test]
fn a_timed_out_task_takes_its_children_with_it() {
    not_in_a_helper_tree();
    deadline(60, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let pool = ProcessPool::builder()
                .workers(1)
                .start_method(method)
                .task_timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            let path = temp_path("timeout");
            let fut = pool
                .submit(start_children_then_hang, path.display().to_string())
                .unwrap();
            let pids = wait_for_pids(&path);
            assert!(matches!(fut.result(), Err(TaskError::TimedOut { .. })));
            assert_group_died(&pids);
        }
    });
}

#[test]
fn a_cancelled_task_takes_its_children_with_it() {
    not_in_a_helper_tree();
    deadline(60, || {
        let pool = ProcessPool::new(1).unwrap();
        let path = temp_path("cancel");
        let fut = pool
            .submit(start_children_then_hang, path.display().to_string())
            .unwrap();
        let pids = wait_for_pids(&path);
        assert!(fut.cancel());
        assert!(matches!(fut.result(), Err(TaskError::Cancelled { .. })));
        assert_group_died(&pids);
        // The pool goes on with a new worker.
        assert_eq!(pool.submit(square, 3).unwrap().result().unwrap(), 9);
    });
}

#[test]
fn a_handshake_that_never_answers_blocks_no_other_child() {
    not_in_a_helper_tree();
    let script = temp_path("hang.sh");
    let pid_file = temp_path("hang.pid");
    std::fs::write(
        &script,
        "#!/bin/sh\necho $$ > \"$MP_HANG_PID\"\nexec sleep 1000\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = run_helper(
        "slow_handshake",
        &[
            ("MP_HANG_SCRIPT", script.display().to_string()),
            ("MP_HANG_PID", pid_file.display().to_string()),
            ("MULTIPROC_HANDSHAKE_TIMEOUT_MS", "4000".into()),
        ],
        60,
    );
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_file(&pid_file);
    assert_eq!(r.code, Some(0), "output: {}", r.out);
    let num = |key: &str| -> u128 {
        r.out
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {}", r.out))
    };
    assert!(r.out.contains("died true"), "output: {}", r.out);
    // Reported while the other handshake was still pending (it has 4 s).
    assert!(num("death_ms") < 2500, "output: {}", r.out);
    assert!(num("replacement_ms") < 3500, "output: {}", r.out);
    assert!(r.out.contains("Ok(49)"), "output: {}", r.out);
    let hung = num("hung_ms");
    assert!((3500..15_000).contains(&hung), "output: {}", r.out);
    assert!(r.out.contains("handshake"), "output: {}", r.out);
    assert!(r.out.contains("hung_reaped true"), "output: {}", r.out);
}

/// A "worker" that closes its control socket without a hello but keeps running is killed
/// and reaped after a short grace, and its start fails saying so (it used to be waited for
/// forever).
#[test]
fn a_silent_eof_without_hello_is_killed_not_waited_for() {
    not_in_a_helper_tree();
    deadline(30, || {
        let script = temp_path("eof.sh");
        let pid_file = temp_path("eof.pid");
        std::fs::write(
            &script,
            format!(
                "#!/bin/bash\necho $$ > {}\neval \"exec $MULTIPROC_FD>&-\"\nexec sleep 1000\n",
                pid_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let t0 = Instant::now();
        let err = ProcessPool::builder()
            .workers(1)
            .start_method(StartMethod::Spawn)
            .executable(&script)
            .build()
            .expect_err("a silent process is no worker");
        let took = t0.elapsed();
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = std::fs::remove_file(&script);
        let _ = std::fs::remove_file(&pid_file);
        assert!(
            err.to_string().contains("without a handshake"),
            "error: {err}"
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
        common::assert_gone(&[pid]);
    });
}
