//! The progress bar that `progress(true)` shows on map-style calls: done/total, rate and
//! ETA, or (when the input's length is unknown) the count and the rate.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// A bar for `total` items, or a spinner when the total is unknown, drawn on stderr.
pub(crate) fn bar(total: Option<usize>) -> ProgressBar {
    let (bar, template) = match total {
        Some(n) => (ProgressBar::new(n as u64), "{bar:30} {stats}"),
        None => (ProgressBar::new_spinner(), "{spinner} {stats}"),
    };
    let style = ProgressStyle::with_template(template)
        .expect("a valid template")
        .with_key("stats", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&stats(s.pos(), s.len(), s.elapsed()));
        });
    bar.with_style(style)
}

/// `37/120 tasks · 412 tasks/s · ETA 0:03`, or `37 tasks · 412 tasks/s` without a total. The
/// rate is the average since the start (steadier than a moving one for uneven tasks); no
/// rate or ETA before the first task is done.
pub(crate) fn stats(done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let mut s = match total {
        Some(n) => format!("{done}/{n} tasks"),
        None => format!("{done} tasks"),
    };
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs <= 0.0 {
        return s;
    }
    let rate = done as f64 / secs;
    let _ = write!(s, " · {} tasks/s", si(rate));
    if let Some(n) = total {
        let left = n.saturating_sub(done) as f64 / rate;
        let _ = write!(s, " · ETA {}", clock(left));
    }
    s
}

/// `412`, `4.1k`, `41k`, `4.1M`: two or three significant digits.
fn si(x: f64) -> String {
    let (v, unit) = match x {
        x if x >= 1e6 => (x / 1e6, "M"),
        x if x >= 1e3 => (x / 1e3, "k"),
        x => (x, ""),
    };
    if v >= 10.0 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

/// `0:03`, `2:05`, `1:02:09`.
fn clock(secs: f64) -> String {
    let t = secs.ceil() as u64;
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_show_done_total_rate_and_eta() {
        let s = |d, t, ms| stats(d, t, Duration::from_millis(ms));
        assert_eq!(s(0, Some(120), 0), "0/120 tasks");
        assert_eq!(s(0, Some(120), 500), "0/120 tasks");
        // 30 in 1 s: 30/s, 90 left: 3 s.
        assert_eq!(
            s(30, Some(120), 1000),
            "30/120 tasks · 30 tasks/s · ETA 0:03"
        );
        assert_eq!(
            s(120, Some(120), 2000),
            "120/120 tasks · 60 tasks/s · ETA 0:00"
        );
        // 1 of 10000 in 1 s: 9999 s left.
        assert_eq!(
            s(1, Some(10_000), 1000),
            "1/10000 tasks · 1.0 tasks/s · ETA 2:46:39"
        );
        assert_eq!(
            s(5_000, Some(1_000_000), 250),
            "5000/1000000 tasks · 20k tasks/s · ETA 0:50"
        );
        // Without a total: the count and the rate.
        assert_eq!(s(4_100, None, 1000), "4100 tasks · 4.1k tasks/s");
        assert_eq!(s(7, None, 2000), "7 tasks · 3.5 tasks/s");
        assert_eq!(s(3_000_000, None, 1000), "3000000 tasks · 3.0M tasks/s");
    }
}
