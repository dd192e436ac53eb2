//! The short soak: 20,000 tasks through one `ProcessPool` that recycles its workers every
//! 500 tasks and loses one to `abort()` every 1,000. The long one is
//! `cargo run --release --example soak` (see README.md, "Testing").

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/soak.rs"]
mod soak;

#[test]
fn twenty_thousand_tasks_with_recycling_and_crashes() {
    common::deadline(120, || {
        let s = soak::Soak {
            tasks: 20_000,
            crash_every: 1_000,
            max_tasks_per_child: 500,
            workers: 2,
            chunksize: 16,
        };
        let r = s.run().unwrap();
        assert!(!r.failed(&s), "{r:#?}");
        assert_eq!(r.crashed, 20, "{r:#?}");
        assert_eq!(r.ok, 19_980, "{r:#?}");
        // Every worker retired or crashed: 19,980 results over fewer than 516 each.
        assert!(r.workers_seen >= 39, "{r:#?}");
        let growth = r.rss_kib.1.saturating_sub(r.rss_kib.0);
        assert!(growth < 20 << 10, "RSS grew by {growth} KiB: {r:#?}");
    });
}
