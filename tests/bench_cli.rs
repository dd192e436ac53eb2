//! `multiproc bench --json`: one well-formed line per measurement, each with its limit.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bench_json_prints_one_row_per_measurement_with_its_limit() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(["bench", "--json", "--quick", "--repeat", "1", "--no-python"])
        .args([
            "--filter",
            "lock.uncontended",
            "--filter",
            "shm.create_open_unlink",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the multiproc binary starts");
    let end = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("multiproc bench did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per selected measurement: {text}");
    for (line, name, unit) in [
        (lines[0], "lock.uncontended", "ns"),
        (lines[1], "shm.create_open_unlink", "µs"),
    ] {
        assert!(
            line.starts_with(&format!(
                r#"{{"name":"{name}","unit":"{unit}","multiproc":"#
            )),
            "{line}"
        );
        assert!(line.contains(r#""python":null"#), "--no-python: {line}");
        let num = |key: &str| -> f64 {
            let rest = &line[line.find(&format!("\"{key}\":")).unwrap() + key.len() + 3..];
            rest.split([',', '}']).next().unwrap().parse().unwrap()
        };
        // Both measured, positive and finite; the limit is measured in the same run.
        for key in ["multiproc", "limit"] {
            let v = num(key);
            assert!(v.is_finite() && v > 0.0, "{key} = {v} in {line}");
        }
    }
}
