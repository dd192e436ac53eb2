//! `multiproc manager load`, short: 16 clients from 4 processes on one manager for 2 s;
//! the command checks every count exactly, and leaves no process behind.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sixteen_clients_from_four_processes_lose_no_update() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(["manager", "load", "--clients", "16", "--procs", "4"])
        .args(["--secs", "2", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the multiproc binary starts");
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("multiproc manager load did not finish within 60 s (hang)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{:?}: {text}", out.status);
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    assert_eq!(v["exact"], true, "{text}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{text}");
    assert_eq!(v["clients"], 16);
    let ops = &v["ops"];
    let mut sum = 0;
    for op in ["dict.update", "locked_incr", "list.append"] {
        let o = &ops[op];
        let n = o["count"].as_u64().unwrap();
        // Every client does all three in turn, so each ran; latencies are ordered.
        assert!(n >= 16, "{op}: {o}");
        let (p50, p99) = (o["p50_us"].as_f64().unwrap(), o["p99_us"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{op}: {o}");
        sum += n;
    }
    assert_eq!(ops["all"]["count"].as_u64().unwrap(), sum);
    // The server and the 4 client processes are gone (reaped by the command).
    let pids: Vec<u32> = v["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 5, "{text}");
    common::assert_gone(&pids);
}
