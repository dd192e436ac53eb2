//! The worker side: a loop that takes chunks from the task ring and puts results in the
//! result ring.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::bell::Bell;
use super::layout::*;
use crate::bootstrap::TaskCtx;
use crate::bootstrap::task::set_quiet;
use crate::bootstrap::unship_task;
use crate::ring::spsc::Ring;
use crate::sys::SharedMapping;
use crate::sys::clock::Stopwatch;
use crate::sys::fdpass::{recv_with_fds, send_with_fds};
use crate::sys::wait::{Backoff, Spin};

/// Results are flushed to the parent when this many bytes gather (and at chunk end).
const FLUSH_BYTES: usize = 64 * 1024;

struct Worker {
    map: Arc<SharedMapping>,
    base: usize,
    tasks: Ring,
    results: Ring,
    pool_bell: Bell,
    task_bell: Bell,
    sock: OwnedFd,
    ctx: TaskCtx,
}

/// `CLOCK_MONOTONIC` in ns: the clock the worker and the dispatcher share (task timeouts,
/// readiness).
pub(crate) use crate::sys::clock::monotonic_ns as now_ns;

impl Worker {
    /// Publishes a frame, waiting for room if the parent is behind; large payloads go in a
    /// memfd over the socket.
    fn send(&self, kind: u32, header: &[u8], body: &[u8]) {
        if header.len() + body.len() > self.results.max_payload() {
            let fd = crate::sys::mem::memfd("multiproc-result", 0).expect("memfd");
            let mut f = std::fs::File::from(fd);
            std::io::Write::write_all(&mut f, body).expect("write memfd");
            let fd = OwnedFd::from(f);
            send_with_fds(&self.sock, &[0], &[std::os::fd::AsFd::as_fd(&fd)]).expect("send memfd");
            let mut h = header.to_vec();
            h.extend_from_slice(&(body.len() as u64).to_le_bytes());
            return self.push(kind | OOB, &[&h]);
        }
        self.push(kind, &[header, body]);
    }

    fn push(&self, kind: u32, parts: &[&[u8]]) {
        // The parent frees room without ringing anything: poll, after the crate's one
        // bounded spin (`sys::wait`), every 200 µs.
        let mut backoff = Backoff::new(Spin::rounds(100), None);
        while !self.results.try_push(kind, parts) {
            self.pool_bell.ring();
            if !backoff.snooze() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        self.pool_bell
            .ring_unless_helped(self.map.atomic_u32(POOL_HELPERS));
    }

    /// Moves this worker off the CPU of a helping caller, if it is on it: two spinners on
    /// one CPU stay there (see "Helpers" in `README.md`).
    fn leave_the_helpers_cpu(&self) {
        let helped = self.map.atomic_u32(POOL_HELPERS).load(Ordering::Relaxed) != 0;
        let cpu = self.map.atomic_u32(POOL_HELPER_CPU).load(Ordering::Relaxed);
        if helped && crate::sys::wait::shares_cpu_with(cpu) {
            crate::sys::sched::move_off(cpu);
        }
    }

    /// Reads an out-of-band payload announced by a frame.
    fn take_oob(&self, len: usize) -> Vec<u8> {
        let mut one = [0u8; 1];
        let (_, mut fds) = recv_with_fds(&self.sock, &mut one).expect("recv memfd");
        let mut buf = Vec::with_capacity(len);
        let mut f = std::fs::File::from(fds.pop().expect("memfd attached"));
        std::io::Seek::rewind(&mut f)
            .and_then(|_| f.read_to_end(&mut buf))
            .expect("read memfd");
        buf
    }

    fn run(&self, cfg: &WorkerConfig) -> i32 {
        let mut frame = Vec::new();
        let mut out = Vec::with_capacity(FLUSH_BYTES * 2);
        let mut done: u64 = 0;
        let current = self.map.atomic_u64(self.base + CURRENT_TASK);
        let item = self.map.atomic_u64(self.base + CURRENT_ITEM);
        let started = self.map.atomic_u64(self.base + STARTED_NS);
        // Times each job (insights, the dispatcher's estimate of an item's cost); the
        // task-timeout clock stays `now_ns`, which the dispatcher compares with its own.
        let mut watch = Stopwatch::new();
        loop {
            let kind = loop {
                if let Some(k) = self.tasks.pop(&mut frame) {
                    break k;
                }
                self.leave_the_helpers_cpu();
                self.task_bell.wait(2000, None, || self.tasks.has_data());
            };
            if kind == K_STOP {
                return 0;
            }
            let payload: Vec<u8>;
            let (hdr, body) = if kind & OOB != 0 {
                let len = get_u64(&frame, TASK_HDR) as usize;
                payload = self.take_oob(len);
                (&frame[..TASK_HDR], &payload[..])
            } else {
                (&frame[..TASK_HDR], &frame[TASK_HDR..])
            };
            let id = get_u64(hdr, 0);
            let thunk = unship_task(get_u64(hdr, 8) as i64);
            let count = get_u32(hdr, 16) as usize;
            let mut input = body;
            let mut first = 0usize;
            let mut t0 = watch.now_ns();
            out.clear();
            // The start time is stored before the item (and the task) it belongs to. The
            // dispatcher reads task and item, then the start time, then task and item again;
            // seeing item i it must see i's start, not the previous item's, or a fast item
            // right after a slow one would be killed (and blamed) for the slow one's time.
            if cfg.timed {
                started.store(now_ns(), Ordering::Release);
            }
            item.store(0, Ordering::Release);
            // `Release`, as for every word here: the dispatcher only reads them (the
            // timeout check, a cancel, the blame after a death) and this thread reads
            // nothing it writes, so there is no store-then-load to order. A `SeqCst` store
            // was a locked instruction between taking each task and running it.
            current.store(id, Ordering::Release);
            for i in 0..count {
                if cfg.timed {
                    started.store(now_ns(), Ordering::Release);
                }
                item.store(i as u64, Ordering::Release);
                let tag_at = out.len();
                out.push(0);
                let ok = thunk(&mut input, &mut out, &self.ctx);
                out[tag_at] = ok as u8;
                if out.len() >= FLUSH_BYTES && i + 1 < count {
                    self.flush(id, first, i + 1 - first, (&mut watch, &mut t0), &out);
                    out.clear();
                    first = i + 1;
                }
            }
            self.flush(id, first, count - first, (&mut watch, &mut t0), &out);
            current.store(0, Ordering::Release);
            done += count as u64;
            if cfg.max_tasks.is_some_and(|m| done >= m) {
                return 0; // retire: the parent starts a fresh worker
            }
        }
    }

    /// Publishes the results of items `first..first + count` of job `id`, timed since `t0`
    /// (which becomes now).
    fn flush(
        &self,
        id: u64,
        first: usize,
        count: usize,
        (watch, t0): (&mut Stopwatch, &mut u64),
        out: &[u8],
    ) {
        let now = watch.now_ns();
        let mut h = [0u8; RESULTS_HDR];
        put_u64(&mut h, 0, id);
        put_u32(&mut h, 8, first as u32);
        put_u32(&mut h, 12, count as u32);
        put_u64(&mut h, 16, now.saturating_sub(*t0));
        *t0 = now;
        self.send(K_RESULTS, &h, out);
    }
}

/// This worker's result ring, for [`test_corrupt_result_ring`].
static RESULT_RING: std::sync::OnceLock<Ring> = std::sync::OnceLock::new();

/// Breaks the frame protocol from inside a task, as a task that scribbles on its worker's
/// memory would: 0 publishes a header longer than the ring, 1 a frame of unknown kind, 2
/// announces an out-of-band payload of 1 TiB. For fault-injection tests; does nothing
/// outside a pool worker.
pub(crate) fn test_corrupt_result_ring(how: u32) {
    let Some(r) = RESULT_RING.get() else { return };
    match how {
        0 => r.scribble_header(),
        1 => {
            let _ = r.try_push(77, &[&[0u8; 24]]);
        }
        _ => {
            let mut h = [0u8; RESULTS_HDR + 8];
            put_u32(&mut h, 12, 1);
            put_u64(&mut h, RESULTS_HDR, 1 << 40);
            let _ = r.try_push(K_RESULTS | OOB, &[&h]);
        }
    }
}

/// Entry point of a pool worker process (shipped by offset to the child).
pub(crate) fn worker_entry(payload: &[u8], fds: Vec<OwnedFd>) -> i32 {
    let Ok(cfg) = postcard::from_bytes::<WorkerConfig>(payload) else {
        return 97;
    };
    // The pool's memfd and socket, then the fds of the initializer's argument.
    let mut fds = fds.into_iter();
    let (Some(memfd), Some(sock)) = (fds.next(), fds.next()) else {
        return 97;
    };
    let init_fds: Vec<OwnedFd> = fds.collect();
    let Ok(map) = SharedMapping::map(&memfd, total_size(cfg.workers)) else {
        return 97;
    };
    drop(memfd);
    let map = Arc::new(map);
    let base = slot_base(cfg.slot);
    let w = Worker {
        tasks: Ring::new(map.clone(), task_ring(cfg.slot), RING_CAP),
        results: Ring::new(map.clone(), result_ring(cfg.slot), RING_CAP),
        pool_bell: Bell::new(map.clone(), POOL_BELL),
        task_bell: Bell::new(map.clone(), base + TASK_BELL),
        map,
        base,
        sock,
        ctx: TaskCtx {
            pid: std::process::id(),
        },
    };
    let _ = RESULT_RING.set(Ring::new(w.map.clone(), result_ring(cfg.slot), RING_CAP));
    set_quiet(true);
    if let Some(limit) = cfg.memory_limit {
        // Tasks run on this thread. The flag lives in the mapping, kept for good here.
        let map: &'static SharedMapping = Box::leak(Box::new(w.map.clone()));
        let flag = map.atomic_u32(base + ALLOC_FAILED);
        let _ = crate::sys::signal::flag_allocation_failures(&cfg.alloc_error_code, flag);
        let _ = crate::sys::process::set_memory_limit(limit);
    }
    let state = w.map.atomic_u32(base + STATE);
    if let Some((thunk, arg)) = &cfg.initializer {
        let mut out = Vec::new();
        let ok = crate::wire::fdctx::with_fds(init_fds, || {
            unship_task(*thunk)(&mut &arg[..], &mut out, &w.ctx)
        });
        if !ok {
            w.send(K_INIT_FAILED, &[], &out);
            state.store(STATE_INIT_FAILED, Ordering::SeqCst);
            w.pool_bell.ring();
            return 98;
        }
    }
    w.map
        .atomic_u64(base + READY_NS)
        .store(now_ns(), Ordering::Release);
    state.store(STATE_READY, Ordering::SeqCst);
    w.pool_bell.ring();
    w.run(&cfg)
}
