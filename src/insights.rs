//! `Insights`: what each worker of a pool did (mpire's "worker insights"): tasks done, time
//! working, waiting and starting, restarts and their causes, and the slowest tasks.
//!
//! Both pools measure where they already take the time: a process pool's worker times each
//! results frame it sends (the dispatcher adds those up as it collects them, and knows when
//! it spawned each worker and why each died); a thread pool's thread reads the clock once
//! before and once after each job it runs. Neither adds a clock read per item.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// How many of the slowest tasks a pool remembers (mpire shows five too).
pub(crate) const SLOWEST: usize = 5;

/// What a pool's workers did so far: one entry per worker slot, and the slowest tasks
/// pool-wide. From [`ProcessPool::insights`](crate::ProcessPool::insights) or
/// [`ThreadPool::insights`](crate::ThreadPool::insights); `Display` prints a table.
///
/// Times are measured per job (a `submit`, or one chunk of a map), not per item: with
/// chunks of several items, a "slow task" is a chunk and names its first item and its
/// item count.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Executor, ProcessPool};
/// fn square(x: u64) -> u64 { x * x }
/// let pool = ProcessPool::new(2).unwrap();
/// pool.map(square, 0..100u64).unwrap();
/// let insights = pool.insights();
/// assert_eq!(insights.tasks(), 100);
/// assert_eq!(insights.workers.len(), 2);
/// println!("{insights}");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Insights {
    /// One entry per worker slot, in slot order.
    pub workers: Vec<WorkerInsights>,
    /// The slowest jobs so far, slowest first (at most five).
    pub slowest: Vec<SlowTask>,
}

/// One worker slot of a pool: a thread, or the worker processes that held the slot in turn.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerInsights {
    /// The slot's number, from 0.
    pub slot: usize,
    /// Every process that held this slot, oldest first (a thread pool: this process).
    pub pids: Vec<u32>,
    /// The thread's name (thread pools only).
    pub thread: Option<String>,
    /// Items this slot ran (each gave a result or an error).
    pub tasks: u64,
    /// Whether `working`, `waiting` and the slowest tasks were measured: always in a
    /// process pool; in a thread pool only with
    /// [`insights(true)`](crate::ThreadPoolBuilder::insights) (otherwise they read zero).
    pub timed: bool,
    /// Time spent running tasks.
    #[serde(serialize_with = "seconds")]
    pub working: Duration,
    /// Time alive and ready but without a task (idle, or waiting for the next one).
    #[serde(serialize_with = "seconds")]
    pub waiting: Duration,
    /// Time from asking for a worker until it was ready (process start, initializer).
    #[serde(serialize_with = "seconds")]
    pub starting: Duration,
    /// Each time a worker of this slot was replaced, and why, oldest first.
    pub restarts: Vec<Restart>,
}

/// A worker that was replaced: which process, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// The pid of the process that ended.
    pub pid: u32,
    /// Why it ended.
    pub cause: RestartCause,
}

/// Why a worker process was replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RestartCause {
    /// It ran `max_tasks_per_child` tasks and retired.
    MaxTasksPerChild,
    /// A signal killed it (a crash: `abort()`, a segfault, a kill from outside).
    Signal(i32),
    /// It exited with this code in the middle of a task.
    Exit(i32),
    /// The pool killed it: a task ran past the task timeout.
    Timeout,
    /// The pool killed it to cancel the task it ran.
    Cancelled,
    /// An allocation failed under the pool's memory limit.
    MemoryLimit,
    /// It broke the pool's frame protocol (what was wrong) and was killed.
    Protocol(String),
}

impl fmt::Display for RestartCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartCause::MaxTasksPerChild => write!(f, "max_tasks_per_child"),
            RestartCause::Signal(s) => {
                write!(f, "signal {s} ({})", crate::error::signal_name(*s))
            }
            RestartCause::Exit(c) => write!(f, "exit code {c}"),
            RestartCause::Timeout => write!(f, "timeout kill"),
            RestartCause::Cancelled => write!(f, "cancel kill"),
            RestartCause::MemoryLimit => write!(f, "memory limit"),
            RestartCause::Protocol(why) => write!(f, "protocol: {why}"),
        }
    }
}

/// One of the slowest jobs: a submitted task, or a chunk of a map.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlowTask {
    /// For a map-style call, the index of the job's first item; `None` for a `submit`.
    pub index: Option<usize>,
    /// How many items the job held (1 for a `submit` or a chunk of one).
    pub items: usize,
    /// How long the job ran.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// The slot that ran it.
    pub slot: usize,
    /// The process that ran it.
    pub pid: u32,
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Insights {
    /// Items run by all workers together.
    pub fn tasks(&self) -> u64 {
        self.workers.iter().map(|w| w.tasks).sum()
    }

    /// Restarts of all workers together.
    pub fn restarts(&self) -> usize {
        self.workers.iter().map(|w| w.restarts.len()).sum()
    }
}

/// `1.234 s`, `12.3 ms` or `45 µs`: three significant digits and a unit.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

fn share(part: Duration, whole: Duration) -> String {
    if whole.is_zero() {
        "-".into()
    } else {
        format!("{:.0}%", 100.0 * part.as_secs_f64() / whole.as_secs_f64())
    }
}

impl fmt::Display for Insights {
    /// A table in the spirit of mpire's `print_insights`: one row per worker, a total row,
    /// then the restarts and the slowest jobs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = |w: &WorkerInsights| match &w.thread {
            Some(name) => name.clone(),
            None => w
                .pids
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(","),
        };
        let width = self.workers.iter().map(|w| who(w).len()).max().unwrap_or(0);
        let width = width.max("pid(s)".len());
        writeln!(
            f,
            "{:<4}  {:<width$}  {:>7}  {:>10} {:>4}  {:>10} {:>4}  {:>10}  {:>8}",
            "slot", "pid(s)", "tasks", "working", "", "waiting", "", "starting", "restarts"
        )?;
        let mut total = (0u64, Duration::ZERO, Duration::ZERO, Duration::ZERO, 0usize);
        for w in &self.workers {
            let alive = w.working + w.waiting;
            writeln!(
                f,
                "{:<4}  {:<width$}  {:>7}  {:>10} {:>4}  {:>10} {:>4}  {:>10}  {:>8}",
                w.slot,
                who(w),
                w.tasks,
                human(w.working),
                share(w.working, alive),
                human(w.waiting),
                share(w.waiting, alive),
                human(w.starting),
                w.restarts.len()
            )?;
            total.0 += w.tasks;
            total.1 += w.working;
            total.2 += w.waiting;
            total.3 += w.starting;
            total.4 += w.restarts.len();
        }
        let alive = total.1 + total.2;
        writeln!(
            f,
            "{:<4}  {:<width$}  {:>7}  {:>10} {:>4}  {:>10} {:>4}  {:>10}  {:>8}",
            "all",
            "",
            total.0,
            human(total.1),
            share(total.1, alive),
            human(total.2),
            share(total.2, alive),
            human(total.3),
            total.4
        )?;
        if self.workers.iter().any(|w| !w.timed) {
            writeln!(
                f,
                "(working, waiting and the slowest tasks not measured: build the pool with \
                 .insights(true))"
            )?;
        }
        for w in &self.workers {
            for r in &w.restarts {
                writeln!(
                    f,
                    "restart: slot {} pid {} ended: {}",
                    w.slot, r.pid, r.cause
                )?;
            }
        }
        for (k, t) in self.slowest.iter().enumerate() {
            let what = match (t.index, t.items) {
                (None, _) => "a submitted task".to_string(),
                (Some(i), 1) => format!("item {i}"),
                (Some(i), n) => format!("items {i}..{}", i + n),
            };
            writeln!(
                f,
                "slowest #{}: {what}, {} on slot {} (pid {})",
                k + 1,
                human(t.duration),
                t.slot,
                t.pid
            )?;
        }
        Ok(())
    }
}

/// The slowest jobs seen so far. `offer` costs one comparison for a job faster than the
/// fifth slowest, which is nearly every job.
#[derive(Debug, Default)]
pub(crate) struct Slowest {
    tasks: Vec<SlowTask>,
    /// The fastest of `tasks` once it is full (0 until then).
    floor_ns: u64,
}

impl Slowest {
    /// The threshold a job must beat to be worth offering.
    pub(crate) fn floor_ns(&self) -> u64 {
        self.floor_ns
    }

    pub(crate) fn offer(
        &mut self,
        ns: u64,
        index: Option<usize>,
        items: usize,
        slot: usize,
        pid: u32,
    ) {
        if ns <= self.floor_ns {
            return;
        }
        let t = SlowTask {
            index,
            items,
            duration: Duration::from_nanos(ns),
            slot,
            pid,
        };
        if self.tasks.len() < SLOWEST {
            self.tasks.push(t);
        } else if let Some(min) = self.tasks.iter_mut().min_by_key(|t| t.duration) {
            *min = t;
        }
        if self.tasks.len() == SLOWEST {
            self.floor_ns = self
                .tasks
                .iter()
                .map(|t| t.duration)
                .min()
                .unwrap_or_default()
                .as_nanos() as u64;
        }
    }

    /// Slowest first.
    pub(crate) fn sorted(&self) -> Vec<SlowTask> {
        let mut v = self.tasks.clone();
        v.sort_by_key(|t| std::cmp::Reverse(t.duration));
        v
    }
}

/// One slot's account, kept by whoever owns the slot (a process pool's dispatcher): times are
/// CLOCK_MONOTONIC nanoseconds.
#[derive(Debug, Default)]
pub(crate) struct SlotLog {
    pub pids: Vec<u32>,
    pub tasks: u64,
    pub working_ns: u64,
    pub starting_ns: u64,
    /// Time ready, summed over the slot's ended workers.
    pub ready_ns: u64,
    pub restarts: Vec<Restart>,
    /// The current worker: when it was asked for, and when it became ready.
    pub spawned_at: Option<u64>,
    pub ready_at: Option<u64>,
}

impl SlotLog {
    /// A worker process `pid` was asked for at `at`.
    pub(crate) fn spawned(&mut self, pid: u32, at: u64) {
        self.pids.push(pid);
        self.spawned_at = Some(at);
        self.ready_at = None;
    }

    /// The current worker became ready at `at` (clamped into its life so far: the time may
    /// come from the worker, which is not trusted).
    pub(crate) fn ready(&mut self, at: u64, now: u64) {
        if let Some(s) = self.spawned_at
            && self.ready_at.is_none()
        {
            let at = at.clamp(s, now.max(s));
            self.starting_ns += at - s;
            self.ready_at = Some(at);
        }
    }

    /// The current worker ended at `now`.
    pub(crate) fn ended(&mut self, now: u64) {
        match (self.spawned_at.take(), self.ready_at.take()) {
            (_, Some(r)) => self.ready_ns += now.saturating_sub(r),
            (Some(s), None) => self.starting_ns += now.saturating_sub(s),
            (None, None) => {}
        }
    }

    /// The slot as seen at `now`, counting the current worker's life so far.
    pub(crate) fn snapshot(&self, slot: usize, now: u64) -> WorkerInsights {
        let (mut ready, mut starting) = (self.ready_ns, self.starting_ns);
        match (self.spawned_at, self.ready_at) {
            (_, Some(r)) => ready += now.saturating_sub(r),
            (Some(s), None) => starting += now.saturating_sub(s),
            (None, None) => {}
        }
        WorkerInsights {
            slot,
            pids: self.pids.clone(),
            thread: None,
            tasks: self.tasks,
            timed: true,
            working: Duration::from_nanos(self.working_ns),
            waiting: Duration::from_nanos(ready.saturating_sub(self.working_ns)),
            starting: Duration::from_nanos(starting),
            restarts: self.restarts.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowest_keeps_the_five_slowest_sorted() {
        let mut s = Slowest::default();
        for (i, ns) in [5u64, 90, 1, 70, 30, 60, 2, 80, 10].into_iter().enumerate() {
            s.offer(ns, Some(i), 1, 0, 1);
        }
        let got: Vec<u64> = s
            .sorted()
            .iter()
            .map(|t| t.duration.as_nanos() as u64)
            .collect();
        assert_eq!(got, vec![90, 80, 70, 60, 30]);
        assert_eq!(s.floor_ns(), 30);
        assert_eq!(s.sorted()[0].index, Some(1));
    }

    #[test]
    fn a_slot_log_splits_a_life_into_starting_ready_and_working() {
        let mut l = SlotLog::default();
        l.spawned(10, 1_000);
        l.ready(1_300, 2_000);
        l.working_ns = 500;
        l.tasks = 3;
        let w = l.snapshot(0, 2_300); // ready for 1000 ns, 500 of them working
        assert_eq!(w.starting, Duration::from_nanos(300));
        assert_eq!(w.working, Duration::from_nanos(500));
        assert_eq!(w.waiting, Duration::from_nanos(500));
        l.ended(2_300);
        l.spawned(11, 2_400);
        let w = l.snapshot(0, 2_450); // the replacement is still starting
        assert_eq!(w.pids, vec![10, 11]);
        assert_eq!(w.starting, Duration::from_nanos(350));
        // A ready time from the worker outside its life is clamped, never underflows.
        l.ready(5, 2_500);
        assert_eq!(l.snapshot(0, 2_500).starting, Duration::from_nanos(300));
    }

    #[test]
    fn the_table_names_every_worker_restart_and_slow_task() {
        let ins = Insights {
            workers: vec![WorkerInsights {
                slot: 0,
                pids: vec![41, 42],
                thread: None,
                tasks: 12,
                timed: true,
                working: Duration::from_millis(1500),
                waiting: Duration::from_millis(500),
                starting: Duration::from_micros(800),
                restarts: vec![Restart {
                    pid: 41,
                    cause: RestartCause::Signal(6),
                }],
            }],
            slowest: vec![SlowTask {
                index: Some(7),
                items: 1,
                duration: Duration::from_millis(250),
                slot: 0,
                pid: 42,
            }],
        };
        let t = ins.to_string();
        for want in [
            "41,42",
            "12",
            "1.500 s",
            "75%",
            "500.0 ms",
            "25%",
            "800 µs",
            "signal 6 (SIGABRT)",
            "item 7",
            "250.0 ms",
        ] {
            assert!(t.contains(want), "{want:?} missing from\n{t}");
        }
        let j = serde_json::to_value(&ins).unwrap();
        assert_eq!(j["workers"][0]["working"], 1.5);
        assert_eq!(j["workers"][0]["restarts"][0]["cause"]["signal"], 6);
    }
}
