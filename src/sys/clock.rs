//! A cheap stopwatch for timing work: the CPU's time-stamp counter, scaled to nanoseconds
//! by a rate it measures against `CLOCK_MONOTONIC` over its first milliseconds.
//!
//! A pool worker times every job it runs (for `insights`, and for the dispatcher's guess of
//! how many items to hand it). `clock_gettime` costs about 30 ns on the VMs this runs on
//! and `rdtsc` about 11: the two readings of each job were some 6 % of a lone caller's
//! round trip, both on its path. The counter is read only where the kernel itself keeps
//! time by it (clocksource `tsc`: it checked that the counter is invariant and the same on
//! every CPU); anywhere else, and until the rate is measured, a reading is
//! `CLOCK_MONOTONIC` itself. Readings are for durations (their differences), close to
//! `CLOCK_MONOTONIC` but not meant to be compared with another process's clock.

/// How long the rate is measured before the counter is trusted alone: long enough that the
/// ~30 ns jitter of the two clock reads is a 2·10⁻⁵ error of the rate.
const CALIBRATION_NS: u64 = 2_000_000;

/// A monotonic stopwatch (one per thread that times things; see the module docs).
#[derive(Debug)]
pub(crate) struct Stopwatch {
    /// `(counter, CLOCK_MONOTONIC ns)` at the start, where the counter is usable.
    origin: Option<(u64, u64)>,
    /// Nanoseconds per tick, once measured.
    rate: Option<f64>,
    /// The latest reading: later ones never go below it.
    last: u64,
}

impl Stopwatch {
    /// A stopwatch, started now.
    pub(crate) fn new() -> Stopwatch {
        let origin = counter_usable().then(|| (ticks(), monotonic_ns()));
        Stopwatch {
            origin,
            rate: None,
            last: 0,
        }
    }

    /// Nanoseconds, on `CLOCK_MONOTONIC`'s scale (give or take the rate's error).
    #[inline]
    pub(crate) fn now_ns(&mut self) -> u64 {
        let now = match (self.origin, self.rate) {
            (Some((t0, m0)), Some(rate)) => m0 + (ticks().wrapping_sub(t0) as f64 * rate) as u64,
            _ => self.calibrating(),
        };
        // A counter read on another CPU a few cycles behind must not make time go back.
        self.last = self.last.max(now);
        self.last
    }

    /// A reading while the rate is not known: `CLOCK_MONOTONIC`, measuring the rate once
    /// enough time has passed.
    #[cold]
    fn calibrating(&mut self) -> u64 {
        let m = monotonic_ns();
        if let Some((t0, m0)) = self.origin {
            let (dt, dm) = (ticks().wrapping_sub(t0), m.saturating_sub(m0));
            if dm >= CALIBRATION_NS && dt > 0 {
                self.rate = Some(dm as f64 / dt as f64);
            }
        }
        m
    }
}

/// `CLOCK_MONOTONIC`, in nanoseconds.
pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Whether the kernel keeps time by the time-stamp counter (checked once per process).
fn counter_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        cfg!(target_arch = "x86_64")
            && std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|s| s.trim() == "tsc")
    })
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn ticks() -> u64 {
    // SAFETY: `rdtsc` reads a counter; it touches no memory and has no preconditions (the
    // kernel could forbid it with `PR_SET_TSC`, and then the clocksource would not be
    // `tsc` for us: `counter_usable` is checked before the first read).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn ticks() -> u64 {
    0 // never read: `counter_usable` is false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Before and after the rate is measured, a stopwatch never goes back and measures a
    /// span as `Instant` does (within 2 %, over spans of 20 ms). Each reading is bracketed
    /// by two `Instant`s, so a preemption between the two clocks (a loaded CI machine)
    /// widens the allowed range instead of failing the test.
    #[test]
    fn a_stopwatch_is_monotonic_and_agrees_with_instant() {
        let mut w = Stopwatch::new();
        let mut prev = w.now_ns();
        let read = |w: &mut Stopwatch| (Instant::now(), w.now_ns(), Instant::now());
        for _ in 0..3 {
            let (a0, a, a1) = read(&mut w);
            std::thread::sleep(Duration::from_millis(20));
            let (b0, b, b1) = read(&mut w);
            assert!(a >= prev && b >= a);
            let (shortest, longest) = ((b0 - a1).as_nanos() as f64, (b1 - a0).as_nanos() as f64);
            let span = (b - a) as f64;
            assert!(
                span >= shortest * 0.98 && span <= longest * 1.02,
                "measured {span} ns, Instant says {shortest}..{longest}"
            );
            for _ in 0..1000 {
                let n = w.now_ns();
                assert!(n >= prev);
                prev = n;
            }
        }
        assert_eq!(
            w.rate.is_some(),
            counter_usable(),
            "calibrated where usable"
        );
    }
}
