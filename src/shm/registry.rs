//! The owner registry: how segments whose creator died without unlinking them (SIGKILL,
//! `_exit`, a crash) are found and unlinked by someone else. See `README.md` beside this
//! file.
//!
//! * Segments with a random name are called `mp-<pid>-<start>-<random>`: the name itself
//!   says who owns them, and costs nothing to record.
//! * Segments with a caller-chosen name are recorded, with their inode, in the creator's
//!   registry file `mp-<pid>-<start>-registry`, and so are random-named segments that the
//!   creator chose to keep. The file exists only while it has something to say.
//!
//! `<start>` is the creator's start time (clock ticks since boot), so a reused pid does not
//! make a dead owner look alive.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use crate::sys::shm::{SHM_DIR, current_pid, process_alive, shm_inode, shm_unlink, task_stat};

const REGISTRY: &str = "registry";
/// Rewrite the registry file once it is this large and mostly stale.
const COMPACT_AT: usize = 64 << 10;

/// What the registry says about one name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Entry {
    /// A caller-named segment with this inode, to unlink if the owner dies.
    Owned(u64),
    /// A random-named segment its creator chose to keep.
    Kept,
}

struct Registry {
    pid: u32,
    /// `mp-<pid>-<start>-`
    prefix: String,
    file: Option<std::fs::File>,
    written: usize,
    entries: HashMap<String, Entry>,
    swept: bool,
    /// Random per process; names are `prefix + mix(seed + n)` for n = 1, 2, ...
    seed: u64,
    next: u64,
}

static STATE: Mutex<Option<Registry>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let pid = current_pid();
    if guard.as_ref().is_none_or(|r| r.pid != pid) {
        // First use, or a forked child that inherited its parent's state: start afresh
        // (the parent's file stays the parent's).
        let start = task_stat(pid).map(|(_, s)| s).unwrap_or(0);
        *guard = Some(Registry {
            pid,
            prefix: format!("mp-{pid}-{start}-"),
            file: None,
            written: 0,
            entries: HashMap::new(),
            swept: false,
            seed: {
                let mut r = [0u8; 8];
                // Without entropy the names are still unique (the prefix names the
                // process), only predictable; O_EXCL makes a squatted name a retry.
                let _ = getrandom::fill(&mut r);
                u64::from_ne_bytes(r)
            },
            next: 0,
        });
    }
    f(guard.as_mut().expect("registry initialised"))
}

impl Registry {
    fn path(&self) -> String {
        format!("{SHM_DIR}/{}{REGISTRY}", self.prefix)
    }

    fn line(name: &str, e: Option<Entry>) -> String {
        match e {
            Some(Entry::Owned(ino)) => format!("+{ino} {name}\n"),
            Some(Entry::Kept) => format!("k {name}\n"),
            None => format!("- {name}\n"),
        }
    }

    /// Records a change: in memory, then one append to the file (one `write`).
    fn record(&mut self, name: &str, e: Option<Entry>) -> io::Result<()> {
        match e {
            Some(e) => {
                self.entries.insert(name.to_owned(), e);
            }
            None => {
                if self.entries.remove(name).is_none() {
                    return Ok(());
                }
            }
        }
        if self.entries.is_empty() {
            // Nothing left to say: no file.
            self.file = None;
            self.written = 0;
            return match shm_unlink(&format!("{}{REGISTRY}", self.prefix)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        if self.written > COMPACT_AT && self.written > 16 * 64 * self.entries.len() {
            return self.rewrite();
        }
        if self.file.is_none() {
            self.file = Some(open_append(&self.path(), false)?);
        }
        let line = Self::line(name, e);
        self.file
            .as_ref()
            .expect("open")
            .write_all(line.as_bytes())?;
        self.written += line.len();
        Ok(())
    }

    /// Replaces the file by one with only the live entries (atomically, by rename).
    fn rewrite(&mut self) -> io::Result<()> {
        let tmp = format!("{}-tmp", self.path());
        let _ = std::fs::remove_file(&tmp);
        let mut text = String::new();
        for (name, e) in &self.entries {
            text.push_str(&Self::line(name, Some(*e)));
        }
        let mut f = open_append(&tmp, true)?;
        f.write_all(text.as_bytes())?;
        std::fs::rename(&tmp, self.path())?;
        self.file = Some(f);
        self.written = text.len();
        Ok(())
    }
}

fn open_append(path: &str, create_new: bool) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .create_new(create_new)
        .mode(0o600)
        .open(path)
}

/// A fresh name for a random-named segment of this process. The first call in each process
/// sweeps the segments of dead owners.
pub(crate) fn random_name() -> String {
    let (name, sweep) = with_state(|reg| {
        reg.next += 1;
        let name = format!(
            "{}{:016x}",
            reg.prefix,
            splitmix64(reg.seed.wrapping_add(reg.next))
        );
        (name, !std::mem::replace(&mut reg.swept, true))
    });
    if sweep {
        sweep_dead_owners();
    }
    name
}

/// A bijective 64-bit mix (SplitMix64's finalizer): distinct inputs, distinct outputs.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Called before creating a segment with a caller-chosen name: the first creation in each
/// process sweeps the segments of dead owners.
pub(crate) fn before_create() {
    if with_state(|r| !std::mem::replace(&mut r.swept, true)) {
        sweep_dead_owners();
    }
}

/// Records that this process created segment `name` (inode `ino`) and must unlink it.
pub(crate) fn register(name: &str, ino: u64) -> io::Result<()> {
    with_state(|r| r.record(name, Some(Entry::Owned(ino))))
}

/// Records that segment `name`, registered before, was unlinked by its creator.
pub(crate) fn unregister(name: &str) {
    let _ = with_state(|r| r.record(name, None));
}

/// Records that segment `name` must survive its creator: a random name is marked kept; a
/// registered caller-chosen name is simply forgotten.
pub(crate) fn keep(name: &str, registered: bool) -> io::Result<()> {
    with_state(|r| {
        if registered {
            r.record(name, None)
        } else if name.starts_with(&r.prefix) {
            r.record(name, Some(Entry::Kept))
        } else {
            Ok(())
        }
    })
}

/// The entries of a registry file, last word wins.
pub(crate) fn parse(text: &str) -> HashMap<&str, Entry> {
    let mut entries = HashMap::new();
    for line in text.lines() {
        let Some((head, name)) = line.split_once(' ') else {
            continue;
        };
        // The file is another process's: its first character may be anything (not ASCII).
        match head.split_at_checked(1).unwrap_or((head, "")) {
            ("+", ino) => {
                if let Ok(ino) = ino.parse() {
                    entries.insert(name, Entry::Owned(ino));
                }
            }
            ("k", "") => {
                entries.insert(name, Entry::Kept);
            }
            ("-", "") => {
                entries.remove(name);
            }
            _ => {}
        }
    }
    entries
}

/// `(pid, start)` of an `mp-<pid>-<start>-...` name.
pub(crate) fn owner_of(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix("mp-")?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((pid, start))
}

/// Unlinks every segment whose creating process is dead, and that process's registry.
/// Returns how many segments it unlinked.
pub(crate) fn sweep_dead_owners() -> usize {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return 0;
    };
    let mut dead: HashMap<(u32, u64), Vec<String>> = HashMap::new();
    let mut alive: HashMap<(u32, u64), bool> = HashMap::new();
    for entry in dir.flatten() {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        let Some(owner) = owner_of(&file) else {
            continue;
        };
        let is_alive = *alive
            .entry(owner)
            .or_insert_with(|| process_alive(owner.0, owner.1));
        if !is_alive {
            dead.entry(owner).or_default().push(file);
        }
    }
    let mut removed = 0;
    for ((pid, start), files) in dead {
        let registry = format!("mp-{pid}-{start}-{REGISTRY}");
        let text = std::fs::read_to_string(format!("{SHM_DIR}/{registry}")).unwrap_or_default();
        let entries = parse(&text);
        for (name, e) in &entries {
            if let Entry::Owned(ino) = e
                && shm_inode(name) == Some(*ino)
                && shm_unlink(name).is_ok()
            {
                removed += 1;
            }
        }
        for file in files {
            if entries.get(file.as_str()) == Some(&Entry::Kept) {
                continue;
            }
            let is_segment = !file.ends_with(REGISTRY) && !file.ends_with("-tmp");
            if shm_unlink(&file).is_ok() && is_segment {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_the_last_word() {
        let e = parse("+1 a\n+2 b\n- a\n+3 c\nk d\n- c\n+4 c\ngarbage\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e["b"], Entry::Owned(2));
        assert_eq!(e["c"], Entry::Owned(4));
        assert_eq!(e["d"], Entry::Kept);
    }

    #[test]
    fn owners_come_from_names() {
        assert_eq!(owner_of("mp-12-345-00ff"), Some((12, 345)));
        assert_eq!(owner_of("mp-12-345-registry"), Some((12, 345)));
        assert_eq!(owner_of("mp-12-345"), None);
        assert_eq!(owner_of("psm_1234"), None);
        assert_eq!(owner_of("mp-x-1-2"), None);
    }
}
