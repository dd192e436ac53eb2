//! `multiproc tour --quick --json`: runs the built binary and checks what its JSON says
//! against what must be true (exact counters, finish times, pids, titles).
multiproc::test_support!();
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs `multiproc tour --quick --json`, killing it past `secs`; (stdout, stderr, pid).
fn run_tour(secs: u64) -> (String, String, u32) {
    run_tour_with(&["--json"], secs)
}

/// Runs `multiproc tour --quick ARGS`, killing it past `secs`; (stdout, stderr, pid).
fn run_tour_with(args: &[&str], secs: u64) -> (String, String, u32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(["tour", "--quick"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start multiproc tour");
    let pid = child.id();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("multiproc tour --quick did not finish within {secs} s (hang)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "tour failed: {status}\nstderr:\n{err}");
    (out, err, pid)
}

fn python_here() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

fn s(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Facts both sides must show; `side` is "rust" or "python".
fn check_side(side: &str, e: &[Value]) {
    let at = |id: usize| &e[id - 1][side];

    // 1: three sleepers finish in the same second, with the right sums.
    let one = at(1);
    for how in ["threads", "processes"] {
        let r = &one[how];
        assert_eq!(
            r["sums"],
            serde_json::json!([55, 5050, 500500]),
            "{side} 1 {how}"
        );
        // Within a second, and within one sleep: three tasks run one after another would
        // finish a whole sleep apart.
        let spread = s(&r["spread_s"]);
        assert!(
            spread < 1.0 && spread < s(&one["sleep_s"]),
            "{side} 1 {how}: {r}"
        );
        assert!(
            s(&r["wall_s"]) >= s(&one["sleep_s"]) * 0.9,
            "{side} 1 {how}: {r}"
        );
    }

    // 2: alive until joined, nothing left afterwards.
    let two = at(2);
    for (list, key) in [("threads", "threads"), ("processes", "processes")] {
        let rows = two[list][key].as_array().unwrap();
        assert_eq!(rows.len(), 3, "{side} 2 {list}");
        for r in rows {
            assert_eq!(r["alive_before_join"], true, "{side} 2 {r}");
            assert_eq!(r["alive_after_join"], false, "{side} 2 {r}");
        }
    }
    for r in two["processes"]["processes"].as_array().unwrap() {
        assert_eq!(r["exitcode"], 0, "{side} 2 {r}");
    }
    assert_eq!(
        two["threads"]["enumerate"],
        serde_json::json!(["MainThread"]),
        "{side} 2"
    );
    assert_eq!(
        two["processes"]["active_children"],
        serde_json::json!([]),
        "{side} 2"
    );

    // 3: every way computes the same fib.
    let three = at(3);
    assert_eq!(u(&three["result"]), fib(u(&three["n"])), "{side} 3");

    // 4: the serial row is measured (five real waits), the pooled ones overlap them.
    let four = at(4);
    let wait = s(&four["sleep_s"]);
    assert!(
        s(&four["serial_s"]) >= 5.0 * wait * 0.95,
        "{side} 4: {four}"
    );
    for k in ["threads_s", "processes_s"] {
        assert!(s(&four[k]) >= wait * 0.95, "{side} 4 {k}: {four}");
        assert!(s(&four[k]) < s(&four["serial_s"]), "{side} 4 {k}: {four}");
    }

    // 5: every locked total exact; the unlocked one at most exact.
    let five = at(5);
    for k in ["threads_lock", "processes_queue", "processes_shared_memory"] {
        let v = &five[k];
        assert_eq!(
            u(&v["total"]),
            2 * u(&v["count_per_worker"]),
            "{side} 5 {k}: {v}"
        );
    }
    let unlocked = &five["threads_no_lock"];
    assert!(
        u(&unlocked["total"]) <= 2 * u(&unlocked["count_per_worker"]),
        "{side} 5"
    );
    assert!(
        u(&unlocked["total"]) >= u(&unlocked["count_per_worker"]),
        "{side} 5"
    );

    // 6: x^5 for 1..=12; a Pool reuses at most 6 pids, one Process each has 12.
    let six = at(6);
    for how in ["pool", "processes"] {
        let results = six[how]["results"].as_array().unwrap();
        let got: Vec<(u64, u64)> = results.iter().map(|r| (u(&r[0]), u(&r[1]))).collect();
        let want: Vec<(u64, u64)> = (1..=12).map(|x: u64| (x, x.pow(5))).collect();
        assert_eq!(got, want, "{side} 6 {how}");
    }
    let pool_pids = u(&six["pool"]["distinct_pids"]);
    assert!((1..=6).contains(&pool_pids), "{side} 6: {pool_pids} pids");
    assert_eq!(u(&six["processes"]["distinct_pids"]), 12, "{side} 6");

    // 7: the consumer saw every item, then the sentinel.
    let seven = at(7);
    let n = u(&seven["items"]);
    assert_eq!(u(&seven["consumed"]), n, "{side} 7");
    assert_eq!(u(&seven["sum"]), n * (n + 1) / 2, "{side} 7");
}

#[test]
fn quick_tour_json_tells_the_truth() {
    let (out, err, pid) = common::deadline(150, || run_tour(120));
    let exps: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\nstderr:\n{err}")))
        .collect();
    let ids: Vec<u64> = exps.iter().map(|e| u(&e["id"])).collect();
    assert_eq!(
        ids,
        (1..=8).collect::<Vec<_>>(),
        "one object per experiment"
    );
    for e in &exps {
        assert!(e["lesson"].as_str().is_some_and(|l| l.len() > 20), "{e}");
    }

    check_side("rust", &exps);
    // --quick counts a million per worker in Rust, and no lock there loses updates soundly
    // (relaxed load + store), never more than one worker's worth.
    assert_eq!(
        u(&exps[4]["rust"]["threads_lock"]["count_per_worker"]),
        1_000_000
    );
    // 8: every title, once, from every way of crawling (the Python side reports counts).
    for how in ["serial", "threads", "processes"] {
        let r = &exps[7]["rust"][how];
        assert_eq!(r["all_titles_right"], true, "rust 8 {how}: {r}");
        assert_eq!(u(&r["titles"]), 50, "rust 8 {how}: {r}");
    }

    if python_here() {
        for e in &exps {
            assert!(
                e["python"].is_object(),
                "python3 is here but did not run: {e}"
            );
        }
        check_side("python", &exps);
        for how in ["serial", "threads", "processes"] {
            let py = &exps[7]["python"];
            assert_eq!(
                u(&py[format!("{how}_distinct_titles")]),
                50,
                "python 8: {py}"
            );
        }
    } else {
        for e in &exps {
            assert!(e["python"].is_null(), "no python3, yet a Python side: {e}");
        }
    }

    // The tour cleans up after itself: no process of this binary (workers, the manager,
    // children) outlives it for long, and no shared memory segment of its own is left.
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_multiproc")).unwrap();
    let survivors = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|x| x == exe))
            .filter(|&p| !common::dead(p))
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(5);
    while !survivors().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        survivors(),
        Vec::<u32>::new(),
        "processes of the tour left running"
    );
    let mine = format!("mp-{pid}-");
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&mine))
        .collect();
    assert!(left.is_empty(), "the tour left {left:?} in /dev/shm");
}

#[test]
fn insights_flag_prints_and_reports_the_pools_workers() {
    let (out, err, _) = common::deadline(60, || {
        run_tour_with(&["--only", "6", "--json", "--no-python", "--insights"], 50)
    });
    let e: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let ins = &e["rust"]["pool"]["insights"];
    let workers = ins["workers"].as_array().expect("insights in the JSON");
    assert_eq!(workers.len(), 6, "{ins}");
    let tasks: u64 = workers.iter().map(|w| u(&w["tasks"])).sum();
    assert_eq!(tasks, 12, "every value counted once: {ins}");
    let sleep = s(&e["rust"]["sleep_s"]);
    for w in workers {
        // Each task sleeps `sleep`: a worker worked at least that long per task.
        assert!(s(&w["working"]) >= u(&w["tasks"]) as f64 * sleep, "{w}");
        assert!(s(&w["starting"]) > 0.0, "{w}");
        assert_eq!(w["restarts"].as_array().map(Vec::len), Some(0), "{w}");
    }
    let slowest = ins["slowest"].as_array().unwrap();
    assert_eq!(slowest.len(), 5, "{ins}");
    assert!(slowest.iter().all(|t| s(&t["duration"]) >= sleep), "{ins}");
    // The table is printed (on stderr, beside --json).
    for want in [
        "worker insights",
        "working",
        "waiting",
        "starting",
        "slowest #1",
    ] {
        assert!(err.contains(want), "{want:?} missing from\n{err}");
    }
    // Without the flag, no insights.
    let (out, _, _) = common::deadline(60, || {
        run_tour_with(&["--only", "6", "--json", "--no-python"], 50)
    });
    let e: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(e["rust"]["pool"]["insights"].is_null());
}

#[test]
fn chart_png_is_a_real_png_of_the_expected_size() {
    let dir = std::env::temp_dir().join(format!("mp-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("walls.png");
    let arg = png.display().to_string();
    let (_, _, _) = common::deadline(90, move || {
        run_tour_with(&["--only", "3", "--no-python", "--chart", &arg], 80)
    });
    let bytes = std::fs::read(&png).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    // One 420 x 360 panel (experiment 3).
    assert_eq!((be(16), be(20)), (420, 360));
    // Bars, axes and text, not a blank image (a white 420 x 360 PNG is well under 2 KB).
    assert!(bytes.len() > 8_000, "{} bytes", bytes.len());
    // A chart into a folder that does not exist fails before the tour runs.
    let out = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args([
            "tour",
            "--quick",
            "--only",
            "3",
            "--chart",
            "/nonexistent-dir/x.png",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
}
