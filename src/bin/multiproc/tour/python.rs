//! Runs the Python originals in `bench/python/tour/` and reads the one JSON line each
//! prints last on stdout.

use std::path::PathBuf;
use std::process::Command;

use indicatif::ProgressBar;
use serde_json::Value;

pub(crate) struct Python {
    pub version: String,
    dir: PathBuf,
}

impl Python {
    /// The `python3` on `PATH` and the scripts' folder, if both are there.
    pub(crate) fn find() -> Option<Python> {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/python/tour"));
        if !dir.is_dir() {
            eprintln!(
                "(the Python originals are not at {}: Python columns left empty)",
                dir.display()
            );
            return None;
        }
        let out = Command::new("python3")
            .args(["-c", "import platform; print(platform.python_version())"])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(Python { version, dir })
    }

    pub(crate) fn run(&self, script: &str, args: &[String], bar: &ProgressBar) -> Option<Value> {
        let out = Command::new("python3")
            .arg(self.dir.join(script))
            .args(args)
            .output();
        let fail = |why: String| {
            bar.suspend(|| eprintln!("(Python {script} {}: {why})", args.join(" ")));
            None
        };
        let out = match out {
            Ok(o) => o,
            Err(e) => return fail(e.to_string()),
        };
        if !out.status.success() {
            return fail(format!(
                "{}; stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().last().map(serde_json::from_str::<Value>) {
            Some(Ok(v)) if v.is_object() => Some(v),
            _ => fail(format!("no JSON object on its last line: {stdout:?}")),
        }
    }
}
