//! The parent side of a process pool: one thread that owns every worker.
//!
//! It takes jobs from submitters, feeds them to workers' task rings, collects results,
//! notices deaths (reported by the manager thread), timeouts and cancellations, and starts
//! replacement workers. See `README.md` beside this file.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::bell::Bell;
use super::layout::*;
use super::sink::{ByteSink, Part};
use super::worker::now_ns;
use super::{Config, Inner};
use crate::bootstrap::{Child, ChildSpec, start_child};
use crate::error::{Error, ExitStatus, Result, TaskError};
use crate::insights::{Insights, Restart, RestartCause, SlotLog, Slowest};
use crate::ring::spsc::Ring;
use crate::sys::SharedMapping;
use crate::sys::fdpass::{recv_with_fds_nowait, send_with_fds};

/// A chunk of items (often one) with the code to run them and where results go.
pub(crate) struct Job {
    pub id: u64,
    pub thunk: i64,
    /// Concatenated encoded arguments, each framed with its length (what the worker walks).
    pub data: Vec<u8>,
    /// How many: the frames of `data` say where each starts, so no list of offsets is
    /// allocated per job (a chunk of one is most jobs: every `submit`).
    pub count: usize,
    /// Index (in its map) of the first item.
    pub start: usize,
    pub sink: Arc<dyn ByteSink>,
    /// How many times this job's items were retried after a worker died.
    pub attempts: u32,
}

impl Job {
    fn len(&self) -> usize {
        self.count
    }

    /// Where item `k` starts in `data` (`data.len()` for `k == len()`), found by walking the
    /// frames: only a retry after a worker died needs it. Clamped to `data`, whose frames
    /// may have come from another MPI rank.
    fn offset(&self, k: usize) -> usize {
        let mut at = 0;
        for _ in 0..k {
            let len = self
                .data
                .get(at..at + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
            at = at.saturating_add(4 + len as usize).min(self.data.len());
        }
        at
    }

    /// Fails items `from..` with the error `err()` makes.
    fn fail_from(&self, from: usize, err: impl Fn() -> TaskError) {
        for k in from..self.len() {
            self.sink.fail(self.start + k, err());
        }
    }

    /// Items `from..` as a new job with a fresh id.
    fn tail(&self, from: usize, id: u64) -> Job {
        self.slice(from, self.len(), id)
    }

    fn slice(&self, from: usize, to: usize, id: u64) -> Job {
        let b = self.offset(from);
        let e = if to == self.len() {
            self.data.len()
        } else {
            self.offset(to)
        };
        Job {
            id,
            thunk: self.thunk,
            data: self.data[b..e].to_vec(),
            count: to - from,
            start: self.start + from,
            sink: self.sink.clone(),
            attempts: self.attempts,
        }
    }
}

/// Messages to the dispatcher.
pub(crate) enum Msg {
    Job(Job),
    Cancel(u64),
    Died {
        slot: usize,
        generation: u64,
        pid: u32,
        status: ExitStatus,
    },
    Shutdown {
        cancel_pending: bool,
    },
    Terminate,
}

#[derive(Clone, Copy, Debug)]
enum KillReason {
    Timeout,
    Cancel,
    Terminate,
}

struct Inflight {
    job: Job,
    /// Items whose results came back.
    done: usize,
}

pub(crate) struct Slot {
    child: Option<Child>,
    generation: u64,
    inflight: VecDeque<Inflight>,
    inflight_items: usize,
    tasks: Ring,
    results: Ring,
    task_bell: Bell,
    sock: Option<OwnedFd>,
    kill: Option<(u64, u64, KillReason)>,
    /// The worker broke the protocol (what was wrong); it was SIGKILLed.
    corrupt: Option<String>,
    ready: bool,
    stopping: bool,
    /// What this slot's workers did, for `insights`.
    log: SlotLog,
}

pub(crate) struct Dispatcher {
    inner: Arc<Inner>,
    slots: Vec<Slot>,
    pending: VecDeque<Job>,
    memfd: OwnedFd,
    avg_item_ns: f64,
    closing: bool,
    terminating: bool,
    broken: Option<String>,
    buf: Vec<u8>,
    slowest: Slowest,
    /// `dispatch`'s scratch: per slot, whether it was given a job (kept to not allocate).
    given: Vec<bool>,
    /// Results a `collect` holds back for one delivery at its end.
    gathered: Gathered,
}

/// The results of one `collect` for a sink that [`gathers`](ByteSink::gathers): handed
/// over at its end in one `deliver_parts` (a map of small tasks delivered every frame
/// under its own lock, three cache misses on lines its consumer had just touched).
#[derive(Default)]
struct Gathered {
    sink: Option<Arc<dyn ByteSink>>,
    parts: Vec<Part>,
    bytes: Vec<u8>,
}

impl Gathered {
    /// Items `start..start + count`, encoded in `body`, for `sink`: delivered now unless
    /// it gathers; then after the others gathered for it (those for another sink go first).
    fn add(&mut self, sink: &Arc<dyn ByteSink>, start: usize, count: usize, body: &[u8]) {
        // A large body is delivered as it is: gathering it would be one more copy of it,
        // and a buffer that big kept.
        if !sink.gathers() || body.len() > GATHER_MAX {
            return sink.deliver(start, count, body);
        }
        if count == 0 {
            return;
        }
        let same = |s: &Arc<dyn ByteSink>| std::ptr::addr_eq(Arc::as_ptr(s), Arc::as_ptr(sink));
        if !self.sink.as_ref().is_some_and(same) {
            self.flush();
            self.sink = Some(sink.clone());
        }
        let at = self.bytes.len();
        self.bytes.extend_from_slice(body);
        self.parts.push((start, count, at..self.bytes.len()));
    }

    /// Delivers what was gathered.
    fn flush(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink.deliver_parts(&mut self.parts, &self.bytes);
            self.parts.clear();
            self.bytes.clear();
            if self.bytes.capacity() > 4 * GATHER_MAX {
                self.bytes = Vec::new();
            }
        }
    }
}

/// The largest frame body [`Gathered`] holds back.
const GATHER_MAX: usize = 16 << 10;

fn base(slot: usize) -> usize {
    slot_base(slot)
}

/// Starts the worker process for `slot`.
pub(crate) fn start_worker(
    cfg: &Config,
    map: &Arc<SharedMapping>,
    memfd: &OwnedFd,
    tx: &Sender<Msg>,
    slot: usize,
    generation: u64,
) -> Result<(Child, OwnedFd)> {
    let b = base(slot);
    for off in [
        STATE,
        CURRENT_TASK,
        CURRENT_ITEM,
        STARTED_NS,
        ALLOC_FAILED,
        READY_NS,
    ] {
        map.atomic_u64(b + off).store(0, Ordering::SeqCst);
    }
    Ring::new(map.clone(), task_ring(slot), RING_CAP).reset();
    Ring::new(map.clone(), result_ring(slot), RING_CAP).reset();
    let (mine, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socketpair", e))?;
    let wc = WorkerConfig {
        slot,
        workers: cfg.workers,
        memory_limit: cfg.memory_limit,
        alloc_error_code: match cfg.memory_limit {
            Some(_) => crate::sys::signal::alloc_error_code().to_vec(),
            None => Vec::new(),
        },
        max_tasks: cfg.max_tasks_per_child,
        timed: cfg.task_timeout.is_some(),
        initializer: cfg.initializer.clone(),
    };
    let mut spec = ChildSpec::new(
        super::worker::worker_entry,
        postcard::to_stdvec(&wc).expect("config serializes"),
    );
    spec.fds = vec![
        memfd.try_clone().map_err(|e| Error::io("dup memfd", e))?,
        theirs,
    ];
    for fd in &cfg.initializer_fds {
        spec.fds.push(
            fd.try_clone()
                .map_err(|e| Error::io("dup initializer fd", e))?,
        );
    }
    spec.executable = cfg.executable.clone();
    let (tx, bell) = (tx.clone(), Bell::new(map.clone(), POOL_BELL));
    spec.on_exit = Some(Box::new(move |pid, status| {
        let _ = tx.send(Msg::Died {
            slot,
            generation,
            pid,
            status,
        });
        bell.ring();
    }));
    let child = start_child(cfg.start_method, spec)?;
    Ok((child, mine))
}

impl Slot {
    /// The slot of a worker asked for at `spawned_ns` and now ready.
    pub(crate) fn new(
        map: &Arc<SharedMapping>,
        i: usize,
        child: Child,
        sock: OwnedFd,
        spawned_ns: u64,
    ) -> Slot {
        let mut log = SlotLog::default();
        log.spawned(child.pid(), spawned_ns);
        log.ready(u64_at(map, base(i) + READY_NS), now_ns());
        Slot {
            log,
            child: Some(child),
            generation: 0,
            inflight: VecDeque::new(),
            inflight_items: 0,
            tasks: Ring::new(map.clone(), task_ring(i), RING_CAP),
            results: Ring::new(map.clone(), result_ring(i), RING_CAP),
            task_bell: Bell::new(map.clone(), base(i) + TASK_BELL),
            sock: Some(sock),
            kill: None,
            corrupt: None,
            ready: true,
            stopping: false,
        }
    }
}

fn u64_at(map: &SharedMapping, off: usize) -> u64 {
    map.atomic_u64(off).load(Ordering::Acquire)
}

impl Dispatcher {
    pub(crate) fn new(inner: Arc<Inner>, slots: Vec<Slot>, memfd: OwnedFd) -> Dispatcher {
        Dispatcher {
            inner,
            slots,
            pending: VecDeque::new(),
            memfd,
            avg_item_ns: 50_000.0,
            closing: false,
            terminating: false,
            broken: None,
            buf: Vec::new(),
            gathered: Gathered::default(),
            slowest: Slowest::default(),
            given: Vec::new(),
        }
    }

    /// What every slot did so far (see [`Insights`]).
    pub(crate) fn insights(&self) -> Insights {
        let now = now_ns();
        Insights {
            workers: self
                .slots
                .iter()
                .enumerate()
                .map(|(i, s)| s.log.snapshot(i, now))
                .collect(),
            slowest: self.slowest.sorted(),
        }
    }

    fn cfg(&self) -> &Config {
        &self.inner.cfg
    }

    /// One round of work: messages, results, dispatch, timeouts. Returns whether anything
    /// happened and how long the caller may sleep at most (a task deadline).
    pub(crate) fn round(&mut self) -> (bool, Option<Duration>) {
        self.round_of(true)
    }

    /// The round a submitting caller runs to place its job, once it has taken the messages
    /// before it and the job: as [`round`](Self::round) without another look at the
    /// channel and without collecting results. Nothing waits on it for those: whoever
    /// waits for a result collects it or is rung for it (a worker rings unless a caller
    /// helps, and a helper that stops rings for what it left), and the ring of a worker
    /// that just answered is a cache miss on the path of every submit.
    pub(crate) fn place_round(&mut self) -> Option<Duration> {
        self.round_of(false).1
    }

    fn round_of(&mut self, full: bool) -> (bool, Option<Duration>) {
        let mut progress = false;
        if full {
            progress |= self.intake();
            progress |= self.collect();
        }
        progress |= self.dispatch();
        let timeout = self.check_timeouts();
        for (i, s) in self.slots.iter().enumerate() {
            let awaiting = !s.ready && s.child.is_some();
            // A worker rings the pool bell once it is ready; the dispatcher thread's sleep
            // condition looks at its state only while it is awaited. A round run by a
            // caller can start awaiting a worker that was ready (and rang) before, while
            // the dispatcher thread is asleep on a check that did not await it: ring, so it
            // checks again (a pool with pending work slept for good: `worker_faults`'s
            // cancel test, about one run in eight).
            // Written only under the dispatcher's lock, so a plain look first: a round
            // changes it only at a respawn, and a locked instruction per slot per round
            // was on every map's path.
            let flag = &self.inner.awaiting[i];
            if flag.load(Ordering::Relaxed) != awaiting {
                flag.store(awaiting, Ordering::SeqCst);
                if awaiting {
                    self.inner.bell.ring();
                }
            }
        }
        let timeout = if self.closing {
            Some(timeout.unwrap_or(Duration::from_millis(50)))
        } else {
            timeout
        };
        (progress, timeout)
    }

    /// Done once closing and every worker has exited.
    /// Fails every job not yet sent to a worker.
    fn fail_pending(&mut self, why: &str) {
        for job in std::mem::take(&mut self.pending) {
            job.fail_from(0, || TaskError::PoolClosed {
                index: None,
                reason: why.to_string(),
            });
        }
    }

    pub(crate) fn finished(&mut self) -> bool {
        if !self.closing {
            return false;
        }
        let idle = self.pending.is_empty() && self.slots.iter().all(|s| s.inflight.is_empty());
        if idle {
            for s in self.slots.iter_mut() {
                if !s.stopping && s.child.is_some() {
                    s.stopping = true;
                    if s.tasks.try_push(K_STOP, &[]) {
                        s.task_bell.ring();
                    } else if let Some(c) = &s.child {
                        let _ = c.signal(libc::SIGKILL);
                    }
                }
            }
        }
        idle && self.slots.iter().all(|s| s.child.is_none())
    }

    /// Takes every message waiting in the channel, in order.
    pub(crate) fn intake(&mut self) -> bool {
        let mut any = false;
        while let Ok(msg) = self.inner.rx.try_recv() {
            any = true;
            self.take(msg);
        }
        any
    }

    /// Handles one message: from the channel, or a job handed over under the lock
    /// (`ProcessPool::send_job`, after an [`intake`](Self::intake) so order holds).
    pub(crate) fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Job(job) => {
                if let Some(why) = &self.broken {
                    job.fail_from(0, || TaskError::PoolClosed {
                        index: None,
                        reason: why.clone(),
                    });
                } else {
                    self.pending.push_back(job)
                }
            }
            Msg::Cancel(id) => self.cancel(id),
            Msg::Died {
                slot,
                generation,
                pid,
                status,
            } => self.died(slot, generation, pid, status),
            Msg::Shutdown { cancel_pending } => {
                self.closing = true;
                if cancel_pending {
                    for job in std::mem::take(&mut self.pending) {
                        job.fail_from(0, || TaskError::Cancelled { index: None });
                    }
                }
            }
            Msg::Terminate => self.terminate(),
        }
    }

    fn terminate(&mut self) {
        self.closing = true;
        self.terminating = true;
        let why = "the pool was terminated".to_string();
        self.fail_pending(&why);
        for s in self.slots.iter_mut() {
            for inf in s.inflight.drain(..) {
                inf.job.fail_from(inf.done, || TaskError::PoolClosed {
                    index: None,
                    reason: why.clone(),
                });
            }
            s.inflight_items = 0;
            s.stopping = true;
            s.kill = Some((0, 0, KillReason::Terminate));
            if let Some(c) = &s.child {
                let _ = c.signal(libc::SIGKILL);
            }
        }
    }

    fn cancel(&mut self, id: u64) {
        let map = &self.inner.map;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.inflight.iter().any(|inf| inf.job.id == id)
                && u64_at(map, base(i) + CURRENT_TASK) == id
            {
                let item = u64_at(map, base(i) + CURRENT_ITEM);
                s.kill = Some((id, item, KillReason::Cancel));
                if let Some(c) = &s.child {
                    let _ = c.signal(libc::SIGKILL);
                }
            }
        }
    }

    /// Reads every result frame waiting in any slot.
    fn collect(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.slots.len() {
            any |= self.collect_slot(i);
        }
        self.gathered.flush();
        any
    }

    /// Kills a worker that broke the protocol; its death fails its current item with
    /// [`TaskError::Protocol`]. Nothing more is read from its ring.
    fn mark_corrupt(&mut self, i: usize, why: String) {
        let s = &mut self.slots[i];
        if s.corrupt.is_none() {
            s.corrupt = Some(why);
            if let Some(c) = &s.child {
                let _ = c.signal(libc::SIGKILL);
            }
        }
    }

    fn collect_slot(&mut self, i: usize) -> bool {
        let mut any = false;
        let mut buf = std::mem::take(&mut self.buf);
        while self.slots[i].corrupt.is_none() {
            let kind = match self.slots[i].results.try_pop(&mut buf) {
                Ok(Some(kind)) => kind,
                Ok(None) => break,
                Err(e) => {
                    self.mark_corrupt(i, e.0);
                    break;
                }
            };
            any = true;
            if let Err(why) = self.take_frame(i, kind, &buf) {
                self.mark_corrupt(i, why);
            }
        }
        self.buf = buf;
        if !self.slots[i].ready
            && self.slots[i].child.is_some()
            && self
                .inner
                .map
                .atomic_u32(base(i) + STATE)
                .load(Ordering::Acquire)
                == STATE_READY
        {
            let at = u64_at(&self.inner.map, base(i) + READY_NS);
            self.slots[i].log.ready(at, now_ns());
            self.slots[i].ready = true;
            any = true;
        }
        any
    }

    /// Acts on one frame from slot `i`'s worker; an error says how it broke the protocol.
    fn take_frame(&mut self, i: usize, kind: u32, buf: &[u8]) -> std::result::Result<(), String> {
        let oob;
        match decode_result_frame(kind, buf)? {
            WorkerFrame::Results {
                id,
                first,
                count,
                elapsed_ns,
                body,
            } => {
                let s = &self.slots[i];
                let Some(front) = s.inflight.front() else {
                    // Results of jobs a terminate already failed.
                    return if self.terminating {
                        Ok(())
                    } else {
                        Err(format!("results for job {id}, which it was not given"))
                    };
                };
                if front.job.id != id || first != front.done || first + count > front.job.len() {
                    return Err(format!(
                        "results for job {id} items {first}..{}, expected job {} from item {} \
                         of {}",
                        first + count,
                        front.job.id,
                        front.done,
                        front.job.len()
                    ));
                }
                let body: &[u8] = match body {
                    Body::Inline(b) => b,
                    Body::OutOfBand(len) => {
                        oob = self.read_oob(i, len)?;
                        &oob
                    }
                };
                let per = elapsed_ns as f64 / count as f64;
                self.avg_item_ns = 0.8 * self.avg_item_ns + 0.2 * per;
                let s = &mut self.slots[i];
                // Insights: the worker timed this frame's items; it is not trusted, so the
                // sums saturate (and a snapshot clamps waiting at zero).
                s.log.tasks += count as u64;
                s.log.working_ns = s.log.working_ns.saturating_add(elapsed_ns);
                let front = s.inflight.front_mut().expect("checked above");
                if elapsed_ns > self.slowest.floor_ns() {
                    let index = front.job.sink.indexed().then_some(front.job.start + first);
                    let pid = s.log.pids.last().copied().unwrap_or(0);
                    self.slowest.offer(elapsed_ns, index, count, i, pid);
                }
                let start = front.job.start + first;
                self.gathered.add(&front.job.sink, start, count, body);
                front.done += count;
                s.inflight_items -= count;
                if front.done >= front.job.len() {
                    s.inflight.pop_front();
                }
            }
            WorkerFrame::InitFailed(body) => {
                let body: &[u8] = match body {
                    Body::Inline(b) => b,
                    Body::OutOfBand(len) => {
                        oob = self.read_oob(i, len)?;
                        &oob
                    }
                };
                let err =
                    postcard::from_bytes::<TaskError>(body).unwrap_or(TaskError::PoolClosed {
                        index: None,
                        reason: "a worker initializer failed".into(),
                    });
                self.broken = Some(format!("a replacement worker's initializer failed: {err}"));
            }
        }
        Ok(())
    }

    /// Reads an out-of-band payload of `len` bytes (already capped at `MAX_OOB`). The worker
    /// sent its memfd before publishing the frame, so the fd is already queued: the receive
    /// does not block, and a missing fd is a protocol error, not a wait. The fd must be a
    /// regular file (a pipe or socket could block the dispatcher) of exactly `len` bytes,
    /// checked before allocating; the read is capped at `len`.
    fn read_oob(&self, i: usize, len: u64) -> std::result::Result<Vec<u8>, String> {
        let sock = self.slots[i].sock.as_ref().ok_or("no socket")?;
        let mut one = [0u8; 1];
        let fd = match recv_with_fds_nowait(sock, &mut one) {
            Ok((_, mut fds)) => fds.pop(),
            Err(e) => return Err(format!("no out-of-band payload on its socket: {e}")),
        }
        .ok_or("an out-of-band frame without a memfd")?;
        let st = rustix::fs::fstat(&fd).map_err(|e| format!("fstat of its memfd: {e}"))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err("an out-of-band payload that is not a memory file".into());
        }
        if st.st_size as u64 != len {
            return Err(format!(
                "an out-of-band payload of {} bytes announced as {len}",
                st.st_size
            ));
        }
        let mut out = Vec::new();
        out.try_reserve_exact(len as usize)
            .map_err(|_| format!("an out-of-band payload of {len} bytes does not fit in memory"))?;
        let f = std::fs::File::from(fd);
        let mut f = std::io::Read::take(f, len);
        let r = std::io::Seek::rewind(f.get_mut()).and_then(|_| f.read_to_end(&mut out));
        match r {
            Ok(n) if n as u64 == len => Ok(out),
            Ok(n) => Err(format!("its memfd shrank to {n} bytes from {len}")),
            Err(e) => Err(format!("reading its memfd: {e}")),
        }
    }

    /// How many items a worker should hold: enough to cover ~200 µs of work, so a short
    /// task never waits for a round trip, but long tasks are not hoarded by one worker.
    fn depth(&self) -> usize {
        ((200_000.0 / self.avg_item_ns.max(1.0)) as usize).clamp(2, 8192)
    }

    fn dispatch(&mut self) -> bool {
        if self.pending.is_empty() {
            return false; // most rounds (a caller collecting its result): nothing to place
        }
        let mut any = false;
        // Which slots got work this round: only their workers are rung. Ringing an idle,
        // sleeping worker costs a system call here and, on two cores, a CPU taken from the
        // threads doing the work while it spins and finds nothing.
        let mut given = std::mem::take(&mut self.given);
        given.clear();
        given.resize(self.slots.len(), false);
        let depth = self.depth();
        while let Some(job) = self.pending.front() {
            if job.sink.is_cancelled() {
                let job = self.pending.pop_front().unwrap();
                job.fail_from(0, || TaskError::Cancelled { index: None });
                continue;
            }
            // The least-loaded ready worker with room.
            let n = job.len();
            let best = (0..self.slots.len())
                .filter(|&i| {
                    let s = &self.slots[i];
                    s.ready
                        && !s.stopping
                        && s.child.is_some()
                        && s.kill.is_none()
                        && (s.inflight.is_empty() || s.inflight_items + n <= depth)
                })
                .min_by_key(|&i| self.slots[i].inflight_items);
            let Some(i) = best else { break };
            let job = self.pending.pop_front().unwrap();
            if !self.send_job(i, &job) {
                self.pending.push_front(job);
                break;
            }
            job.sink.started();
            let s = &mut self.slots[i];
            s.inflight_items += n;
            s.inflight.push_back(Inflight { job, done: 0 });
            given[i] = true;
            any = true;
        }
        for (s, _) in self.slots.iter().zip(&given).filter(|(_, g)| **g) {
            s.task_bell.ring();
        }
        self.given = given;
        any
    }

    fn send_job(&self, i: usize, job: &Job) -> bool {
        let s = &self.slots[i];
        let mut h = [0u8; TASK_HDR];
        put_u64(&mut h, 0, job.id);
        put_u64(&mut h, 8, job.thunk as u64);
        put_u32(&mut h, 16, job.len() as u32);
        if TASK_HDR + job.data.len() <= s.tasks.max_payload() {
            return s.tasks.try_push(K_TASK, &[&h, &job.data]);
        }
        // Too large for the ring: the arguments travel in a memfd.
        let Some(sock) = &s.sock else { return false };
        let fd = match crate::sys::mem::memfd("multiproc-task", 0) {
            Ok(fd) => fd,
            Err(_) => return false,
        };
        let mut f = std::fs::File::from(fd);
        if std::io::Write::write_all(&mut f, &job.data).is_err() {
            return false;
        }
        let fd = OwnedFd::from(f);
        let mut hl = h.to_vec();
        hl.extend_from_slice(&(job.data.len() as u64).to_le_bytes());
        // Room first, so the fd is never sent for a frame that cannot be published.
        if !s.tasks.try_push(K_TASK | OOB, &[&hl]) {
            return false;
        }
        let _ = send_with_fds(sock, &[0], &[fd.as_fd()]);
        true
    }

    /// Kills workers whose current item ran past the task timeout. Returns how long until
    /// the next deadline.
    fn check_timeouts(&mut self) -> Option<Duration> {
        let timeout = self.cfg().task_timeout?;
        let limit = timeout.as_nanos() as u64;
        let map = self.inner.map.clone();
        let now = now_ns();
        let mut next: Option<u64> = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.kill.is_some() || s.child.is_none() {
                continue;
            }
            let b = base(i);
            let (c1, it1) = (
                u64_at(&map, b + CURRENT_TASK),
                u64_at(&map, b + CURRENT_ITEM),
            );
            let started = u64_at(&map, b + STARTED_NS);
            let (c2, it2) = (
                u64_at(&map, b + CURRENT_TASK),
                u64_at(&map, b + CURRENT_ITEM),
            );
            if c1 == 0 || c1 != c2 || it1 != it2 || started == 0 {
                continue;
            }
            let ran = now.saturating_sub(started);
            if ran >= limit {
                s.kill = Some((c1, it1, KillReason::Timeout));
                if let Some(c) = &s.child {
                    let _ = c.signal(libc::SIGKILL);
                }
            } else {
                let left = limit - ran;
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        }
        // With nothing running, poll again soon: a task may start at any moment.
        Some(Duration::from_nanos(
            next.unwrap_or(limit.min(20_000_000)).max(200_000),
        ))
    }

    fn died(&mut self, i: usize, generation: u64, pid: u32, status: ExitStatus) {
        if i >= self.slots.len() || self.slots[i].generation != generation {
            return;
        }
        // Results published before the death are good.
        self.collect_slot(i);
        self.gathered.flush();
        let map = self.inner.map.clone();
        let b = base(i);
        let kill = self.slots[i].kill.take();
        // Only an abort the worker's handler saw come from std's allocation-failure path is
        // a memory-limit death; a task's own abort() or a C assert is not.
        let alloc_failed = map.atomic_u32(b + ALLOC_FAILED).load(Ordering::Acquire) != 0;
        let corrupt = self.slots[i].corrupt.take();
        // Which item to blame. A kill blames exactly the item it was aimed at: the worker
        // may have moved on before the signal landed, and the item it runs now is innocent.
        // Otherwise the worker's own `CURRENT_*` says (bounds-checked below: a corrupt worker
        // may have written anything there).
        let blamed = match kill {
            Some((task, item, _)) => Some((task, item as usize)),
            None => Some((
                u64_at(&map, b + CURRENT_TASK),
                u64_at(&map, b + CURRENT_ITEM) as usize,
            )),
        };
        let cfg = self.inner.cfg.clone();
        let cause = match (&kill, &corrupt) {
            (Some((_, _, KillReason::Timeout)), _) => RestartCause::Timeout,
            (Some((_, _, KillReason::Cancel)), _) => RestartCause::Cancelled,
            (Some((_, _, KillReason::Terminate)), _) => RestartCause::Signal(libc::SIGKILL),
            (None, Some(why)) => RestartCause::Protocol(why.clone()),
            (None, None) => match (status.signal, status.code) {
                (Some(libc::SIGABRT), _) if cfg.memory_limit.is_some() && alloc_failed => {
                    RestartCause::MemoryLimit
                }
                (Some(sig), _) => RestartCause::Signal(sig),
                // A worker retires between chunks (no current task) with code 0.
                (None, Some(0))
                    if cfg.max_tasks_per_child.is_some() && u64_at(&map, b + CURRENT_TASK) == 0 =>
                {
                    RestartCause::MaxTasksPerChild
                }
                (None, code) => RestartCause::Exit(code.unwrap_or(-1)),
            },
        };
        let mut requeue: Vec<Job> = Vec::new();
        let s = &mut self.slots[i];
        s.log.ended(now_ns());
        s.child = None;
        s.ready = false;
        s.inflight_items = 0;
        let inflight: Vec<Inflight> = s.inflight.drain(..).collect();
        for (k, inf) in inflight.into_iter().enumerate() {
            let job = inf.job;
            let hit =
                |(t, it): (u64, usize)| k == 0 && job.id == t && it >= inf.done && it < job.len();
            let mut at = blamed.filter(|&x| hit(x)).map(|(_, it)| it);
            // A worker that broke the protocol while idle (or lied about what it ran) is
            // still charged to its next item, so a task that corrupts memory every time
            // cannot be requeued forever.
            if at.is_none() && corrupt.is_some() && k == 0 && inf.done < job.len() {
                at = Some(inf.done);
            }
            let Some(cur_item) = at else {
                if inf.done < job.len() {
                    let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                    requeue.push(job.tail(inf.done, id));
                }
                continue;
            };
            // Items finished before the crash whose results were not yet sent run again.
            if cur_item > inf.done {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                requeue.push(job.slice(inf.done, cur_item, id));
            }
            let idx = job.start + cur_item;
            let err = match (&kill, &corrupt) {
                (Some((_, _, KillReason::Timeout)), _) => Some(TaskError::TimedOut {
                    index: None,
                    timeout: cfg.task_timeout.unwrap_or_default(),
                    pid,
                }),
                (Some((_, _, KillReason::Cancel)), _) => Some(TaskError::Cancelled { index: None }),
                (Some((_, _, KillReason::Terminate)), _) => Some(TaskError::PoolClosed {
                    index: None,
                    reason: "the pool was terminated".into(),
                }),
                (None, Some(why)) => Some(TaskError::Protocol {
                    index: None,
                    pid,
                    message: why.clone(),
                }),
                (None, None) if job.attempts < cfg.retries => None,
                (None, None)
                    if cfg.memory_limit.is_some()
                        && alloc_failed
                        && status.signal == Some(libc::SIGABRT) =>
                {
                    Some(TaskError::MemoryLimit {
                        index: None,
                        limit: cfg.memory_limit.unwrap_or_default(),
                        pid,
                    })
                }
                (None, None) => Some(TaskError::WorkerDied {
                    index: None,
                    pid,
                    status,
                }),
            };
            match err {
                Some(e) => job.sink.fail(idx, e),
                None => {
                    let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                    let mut again = job.slice(cur_item, cur_item + 1, id);
                    again.attempts += 1;
                    requeue.push(again);
                }
            }
            if cur_item + 1 < job.len() {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                requeue.push(job.tail(cur_item + 1, id));
            }
        }
        for job in requeue.into_iter().rev() {
            self.pending.push_front(job);
        }
        if self.closing && (self.terminating || self.slots[i].stopping) {
            self.slots[i].sock = None;
            return;
        }
        if self.broken.is_none() {
            self.slots[i].log.restarts.push(Restart { pid, cause });
        }
        self.respawn(i);
    }

    fn respawn(&mut self, i: usize) {
        if let Some(why) = self.broken.clone() {
            self.slots[i].sock = None;
            self.fail_pending(&why);
            return;
        }
        let generation = self.slots[i].generation + 1;
        self.slots[i].generation = generation;
        self.slots[i].stopping = false;
        let tx = self.inner.tx.clone();
        let spawned = now_ns();
        match start_worker(
            &self.inner.cfg,
            &self.inner.map,
            &self.memfd,
            &tx,
            i,
            generation,
        ) {
            Ok((child, sock)) => {
                let s = &mut self.slots[i];
                s.log.spawned(child.pid(), spawned);
                s.child = Some(child);
                s.sock = Some(sock);
            }
            Err(e) => {
                self.slots[i].sock = None;
                if self.slots.iter().all(|s| s.child.is_none()) {
                    let why = format!("no worker could be restarted: {e}");
                    self.fail_pending(&why);
                    self.broken = Some(why);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::task::encode_framed;

    /// A sink that only counts what it is given.
    struct Nothing;

    impl ByteSink for Nothing {
        fn deliver(&self, _: usize, _: usize, _: &[u8]) {}
        fn fail(&self, _: usize, _: TaskError) {}
        fn is_cancelled(&self) -> bool {
            false
        }
    }

    fn job(items: &[&str]) -> Job {
        let mut data = Vec::new();
        for it in items {
            encode_framed(*it, &mut data).unwrap();
        }
        Job {
            id: 1,
            thunk: 0,
            data,
            count: items.len(),
            start: 10,
            sink: Arc::new(Nothing),
            attempts: 2,
        }
    }

    #[test]
    fn a_jobs_slices_are_found_by_walking_its_frames() {
        let j = job(&["a", "bcd", "", "efghij"]);
        let whole = j.slice(0, 4, 7);
        assert_eq!((whole.data.as_slice(), whole.count), (j.data.as_slice(), 4));
        let mid = j.slice(1, 3, 8);
        assert_eq!(mid.data, job(&["bcd", ""]).data);
        assert_eq!((mid.count, mid.start, mid.attempts, mid.id), (2, 11, 2, 8));
        let tail = j.tail(3, 9);
        assert_eq!(tail.data, job(&["efghij"]).data);
        assert_eq!((tail.count, tail.start), (1, 13));
        assert!(j.tail(4, 9).data.is_empty());
    }

    #[test]
    fn frames_that_claim_more_than_the_data_are_clamped() {
        // Another MPI rank's bytes: a length past the end, and a cut-off length.
        let mut j = job(&["a"]);
        j.data = vec![0xff, 0xff, 0xff, 0x7f, 1, 2];
        j.count = 3;
        assert_eq!(j.offset(1), 6);
        assert_eq!(j.offset(3), 6);
        assert!(j.slice(1, 3, 2).data.is_empty());
        j.data.truncate(2);
        assert_eq!(j.offset(2), 2);
    }
}
