//! The owner registry: how segments whose creator died without unlinking them (SIGKILL,
//! `_exit`, a crash) are found and unlinked by someone else. See `README.md` beside this
//! file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use crate::sys::shm::{SHM_DIR, shm_inode, shm_unlink, task_stat};

/// Prefix of registry files: `mp-<pid>-<start time>-registry` in `/dev/shm`.
const PREFIX: &str = "mp-";
const SUFFIX: &str = "-registry";

struct Registry {
    pid: u32,
    name: String,
    file: Option<File>,
    live: usize,
    swept: bool,
}

static STATE: Mutex<Option<Registry>> = Mutex::new(None);

/// This process's (pid, start time), which together name it uniquely even across pid reuse.
fn me() -> (u32, u64) {
    let pid = std::process::id();
    let start = task_stat(pid).map(|(_, s)| s).unwrap_or(0);
    (pid, start)
}

fn with_state<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if guard.as_ref().is_none_or(|r| r.pid != pid) {
        // First use, or a forked child that inherited its parent's registry: start afresh
        // (the parent's file stays the parent's).
        let (pid, start) = me();
        *guard = Some(Registry {
            pid,
            name: format!("{PREFIX}{pid}-{start}{SUFFIX}"),
            file: None,
            live: 0,
            swept: false,
        });
    }
    f(guard.as_mut().expect("registry initialised"))
}

/// Records that this process created segment `name` (inode `ino`) and must unlink it. The
/// first call in a process also sweeps the segments of dead owners.
pub(crate) fn register(name: &str, ino: u64) -> io::Result<()> {
    let sweep = with_state(|r| {
        if r.file.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(format!("{SHM_DIR}/{}", r.name))?;
            r.file = Some(file);
        }
        writeln!(r.file.as_ref().expect("open"), "+{ino} {name}")?;
        r.live += 1;
        Ok::<_, io::Error>(!std::mem::replace(&mut r.swept, true))
    })?;
    if sweep {
        sweep_dead_owners();
    }
    Ok(())
}

/// Records that segment `name` no longer needs unlinking by a sweep (it was unlinked, or
/// its creator chose to keep it). Removes the registry file when nothing is left in it.
pub(crate) fn unregister(name: &str, ino: u64) {
    with_state(|r| {
        if let Some(file) = r.file.as_ref() {
            let _ = writeln!(&*file, "-{ino} {name}");
            r.live = r.live.saturating_sub(1);
            if r.live == 0 {
                r.file = None;
                let _ = shm_unlink(&r.name);
            }
        }
    });
}

/// The live entries of a registry file: name → inode.
fn parse(text: &str) -> HashMap<&str, u64> {
    let mut live = HashMap::new();
    for line in text.lines() {
        let Some((head, name)) = line.split_once(' ') else {
            continue;
        };
        let (op, ino) = head.split_at(head.len().min(1));
        let Ok(ino) = ino.parse::<u64>() else {
            continue;
        };
        match op {
            "+" => {
                live.insert(name, ino);
            }
            "-" => {
                if live.get(name) == Some(&ino) {
                    live.remove(name);
                }
            }
            _ => {}
        }
    }
    live
}

/// Unlinks every segment whose creating process is dead, and that process's registry.
/// Returns how many segments it unlinked.
///
/// Runs once in every process at its first segment creation; long-lived owners (the
/// process pool's manager thread) may call it any time. A segment is unlinked only if the
/// object under its name is still the very one the dead creator made (same inode), so a
/// name reused since is left alone.
pub fn sweep_dead_owners() -> usize {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return 0;
    };
    let mut removed = 0;
    for entry in dir.flatten() {
        let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(owner) = file
            .strip_prefix(PREFIX)
            .and_then(|s| s.strip_suffix(SUFFIX))
        else {
            continue;
        };
        let Some((pid, start)) = owner.split_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            continue;
        };
        let alive = matches!(task_stat(pid), Some((state, s))
            if s == start && !matches!(state, b'Z' | b'X' | b'x'));
        if alive {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            for (name, ino) in parse(&text) {
                if shm_inode(name) == Some(ino) && shm_unlink(name).is_ok() {
                    removed += 1;
                }
            }
        }
        let _ = shm_unlink(&file);
    }
    removed
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_keeps_only_live_entries() {
        let live = super::parse("+1 a\n+2 b\n-1 a\n+3 c\n-9 c\ngarbage\n");
        assert_eq!(live.len(), 2);
        assert_eq!(live["b"], 2);
        assert_eq!(live["c"], 3);
    }
}
