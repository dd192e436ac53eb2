//! Hints to Linux's scheduler: a short time slice for the crate's own service threads, and
//! a move off a CPU shared with a thread this one spins for ([`move_off`]).
//!
//! Under EEVDF (Linux 6.6 on) a thread that wakes on a CPU where a busy thread runs waits
//! until that thread's slice ends (`RUN_TO_PARITY`: about 1.4 ms on this 2-CPU machine),
//! unless the woken one asked for a shorter slice (`sched_setattr`'s `sched_runtime`, Linux
//! 6.12 on, `PREEMPT_SHORT`): then it runs at once. Its share of the CPU is unchanged, only
//! cut finer. A thread that polls with short sleeps and passes messages on (the MPI
//! backend's, which has no futex word to sleep on) otherwise pays a hog's slice for each
//! of its wake-ups: `multiproc bench --hogs 2 --filter mpi`, 4.4–5.6 µs a task instead of
//! 0.8–1.6. A process pool's dispatcher is such a thread once callers sleep on their
//! futures (beside hogs they do): `pool.roundtrip_unpinned` beside two hogs took 12–66 µs
//! without, 2.5–9.8 with (runs of `--filter pool.roundtrip_unpinned`). Workers keep the default: their slices are the user's tasks (the
//! fork server and the manager thread start them, not the dispatcher).
//!
//! Older kernels ignore the slice of a normal thread; other policies (real-time, batch,
//! idle) are left as they are.

/// The slice asked for: the kernel's smallest (0.1 ms).
const SHORT_SLICE_NS: u64 = 100_000;

/// `struct sched_attr` as of Linux 3.14 (`SCHED_ATTR_SIZE_VER0`); later fields are optional.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const SCHED_NORMAL: u32 = 0;

/// Asks a short time slice for the calling thread, and for the threads and processes it
/// starts afterwards (they inherit it). Returns whether the kernel took the request (an
/// old kernel takes it and ignores it).
pub(crate) fn short_slices() -> bool {
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // SAFETY: `sched_getattr(0, attr, size, 0)` writes at most `size` bytes into `attr`,
    // which is a `repr(C)` `struct sched_attr` of exactly that size, valid for writes.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if got != 0 || attr.policy != SCHED_NORMAL {
        return false;
    }
    attr.size = size;
    attr.runtime = SHORT_SLICE_NS;
    // SAFETY: `sched_setattr(0, attr, 0)` only reads `attr.size` bytes from `attr`, a live
    // `repr(C)` `struct sched_attr` whose `size` field is its own size.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    set == 0
}
/// Moves the calling thread off CPU `cpu` if its affinity allows another, and leaves its
/// affinity as it was: the thread lands on another allowed CPU and the scheduler keeps it
/// there while it stays busy. Returns whether it moved.
///
/// For two threads that spin for each other's messages on one CPU: a thread that never
/// sleeps is rarely moved by the scheduler (a process pool's round trip stayed at
/// 11–17 µs for tens of milliseconds that way, against 1 µs on two CPUs), and a futex
/// wake-up put the woken one back on the same CPU.
pub(crate) fn move_off(cpu: u32) -> bool {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    let Ok(mine) = sched_getaffinity(None) else {
        return false;
    };
    let cpu = cpu as usize;
    if cpu >= CpuSet::MAX_CPU || !mine.is_set(cpu) || mine.count() < 2 {
        return false;
    }
    let mut elsewhere = mine;
    elsewhere.unset(cpu);
    // The kernel migrates a running thread at once when its own CPU leaves its mask; the
    // second call restores the mask and, as the thread now runs on an allowed CPU, does not
    // move it back.
    let moved = sched_setaffinity(None, &elsewhere).is_ok();
    let _ = sched_setaffinity(None, &mine);
    moved
}

/// The CPU this thread runs on now (the vDSO's `getcpu`: no system call).
pub(crate) fn current_cpu() -> u32 {
    rustix::thread::sched_getcpu() as u32
}

/// The size of one core's private unified (level 2) cache, from sysfs (CPU 0's), if
/// the kernel says.
pub(crate) fn l2_cache_bytes() -> Option<u64> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    (0..8).find_map(|i| {
        let read = |f: &str| std::fs::read_to_string(dir.join(format!("index{i}/{f}"))).ok();
        let level = read("level")?;
        let kind = read("type")?;
        if level.trim() != "2" || kind.trim() == "Instruction" {
            return None;
        }
        parse_cache_size(&read("size")?)
    })
}

/// A sysfs cache size: `512K`, `2M` or bytes.
fn parse_cache_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("512K\n"), Some(512 << 10));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("4096"), Some(4096));
        assert_eq!(parse_cache_size("K"), None);
        assert_eq!(parse_cache_size("x1K"), None);
        // Where sysfs has it (it does on Linux hosts and most VMs), it is a sane size.
        if let Some(l2) = l2_cache_bytes() {
            assert!((64 << 10..=64 << 20).contains(&l2), "{l2}");
        }
    }

    /// The slice the kernel reports for this thread (`/proc/thread-self/sched`), where it
    /// reports one (kernels built with scheduler debugging).
    fn slice_ns() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = s.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    /// Whether the kernel has custom slices for normal threads (6.12 on).
    fn kernel_has_custom_slices() -> bool {
        let r = rustix::system::uname();
        let release = r.release().to_string_lossy();
        let mut v = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        (major, minor) >= (6, 12)
    }

    #[test]
    fn a_thread_and_what_it_starts_get_the_short_slice() {
        std::thread::spawn(|| {
            let before = slice_ns();
            assert!(short_slices(), "sched_setattr refused");
            let (now, child) = (slice_ns(), std::thread::spawn(slice_ns).join().unwrap());
            if kernel_has_custom_slices() && before.is_some() {
                assert_eq!(now, Some(SHORT_SLICE_NS));
                assert_eq!(
                    child,
                    Some(SHORT_SLICE_NS),
                    "a thread started after inherits"
                );
            } else {
                // Accepted and ignored: nothing else changed.
                assert_eq!(now, before);
            }
        })
        .join()
        .unwrap();
        // Other threads keep theirs.
        if kernel_has_custom_slices() && slice_ns().is_some() {
            assert_ne!(slice_ns(), Some(SHORT_SLICE_NS));
        }
    }

    #[test]
    fn move_off_leaves_the_cpu_and_keeps_the_affinity() {
        use rustix::thread::{CpuSet, sched_getaffinity};
        std::thread::spawn(|| {
            let mask = sched_getaffinity(None).unwrap();
            let here = current_cpu();
            assert!(mask.is_set(here as usize));
            let outside = (0..CpuSet::MAX_CPU).find(|&c| !mask.is_set(c)).unwrap() as u32;
            assert!(
                !move_off(outside),
                "a CPU outside the mask is not ours to leave"
            );
            if mask.count() < 2 {
                assert!(
                    !move_off(here),
                    "with one CPU allowed there is nowhere to go"
                );
                assert_eq!(current_cpu(), here);
            } else {
                assert!(move_off(here));
                assert_ne!(current_cpu(), here, "still on the CPU it left");
            }
            assert_eq!(
                sched_getaffinity(None).unwrap(),
                mask,
                "the mask is restored"
            );
        })
        .join()
        .unwrap();
    }
}
