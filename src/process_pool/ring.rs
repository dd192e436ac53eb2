//! A single-producer single-consumer ring of frames in shared memory, and the doorbell
//! (an event count on a futex word) used to sleep until something arrives.
//!
//! See `README.md` beside this file for the layout and the wake-up protocol.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use crate::sys::{SharedMapping, futex_wait, futex_wake};

/// Bytes of ring header before the data (head and tail on separate cache lines).
pub(crate) const RING_HEADER: usize = 256;
const HEAD: usize = 0;
const TAIL: usize = 64;
/// Frame header: payload length (u32) and kind (u32).
const FRAME_HEADER: usize = 8;
/// A frame kind that means "skip to the start of the buffer".
const WRAP: u32 = u32::MAX;

fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// One direction of a worker's channel.
pub(crate) struct Ring {
    map: Arc<SharedMapping>,
    base: usize,
    cap: usize,
}

impl Ring {
    /// A ring whose header is at `base` and whose data (`cap` bytes, a power of two) follows.
    pub(crate) fn new(map: Arc<SharedMapping>, base: usize, cap: usize) -> Ring {
        assert!(cap.is_power_of_two() && cap >= 4096);
        Ring { map, base, cap }
    }

    /// The largest payload `try_push` accepts.
    pub(crate) fn max_payload(&self) -> usize {
        self.cap / 4
    }

    /// Empties the ring. Only while no other process uses it.
    pub(crate) fn reset(&self) {
        self.map
            .atomic_u64(self.base + HEAD)
            .store(0, Ordering::SeqCst);
        self.map
            .atomic_u64(self.base + TAIL)
            .store(0, Ordering::SeqCst);
    }

    fn data(&self, pos: u64) -> usize {
        self.base + RING_HEADER + (pos as usize & (self.cap - 1))
    }

    /// Appends one frame made of `parts`. Returns false if there is no room now.
    pub(crate) fn try_push(&self, kind: u32, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(len <= self.max_payload(), "frame too large for the ring");
        let total = FRAME_HEADER + pad8(len);
        let tail_a = self.map.atomic_u64(self.base + TAIL);
        let head = self
            .map
            .atomic_u64(self.base + HEAD)
            .load(Ordering::Acquire);
        let mut tail = tail_a.load(Ordering::Relaxed);
        let to_end = self.cap - (tail as usize & (self.cap - 1));
        let need = if total > to_end {
            to_end + total
        } else {
            total
        };
        if (tail - head) as usize + need > self.cap {
            return false;
        }
        if total > to_end {
            self.map.write(self.data(tail), &[0, 0, 0, 0]);
            self.map.write(self.data(tail) + 4, &WRAP.to_le_bytes());
            tail += to_end as u64;
        }
        let at = self.data(tail);
        self.map.write(at, &(len as u32).to_le_bytes());
        self.map.write(at + 4, &kind.to_le_bytes());
        let mut off = at + FRAME_HEADER;
        for p in parts {
            self.map.write(off, p);
            off += p.len();
        }
        tail_a.store(tail + total as u64, Ordering::Release);
        true
    }

    /// Whether a frame is waiting.
    pub(crate) fn has_data(&self) -> bool {
        let head = self
            .map
            .atomic_u64(self.base + HEAD)
            .load(Ordering::Relaxed);
        self.map
            .atomic_u64(self.base + TAIL)
            .load(Ordering::Acquire)
            != head
    }

    /// Takes the next frame: its kind, with its payload appended to `out` (cleared first).
    pub(crate) fn pop(&self, out: &mut Vec<u8>) -> Option<u32> {
        let head_a = self.map.atomic_u64(self.base + HEAD);
        let mut head = head_a.load(Ordering::Relaxed);
        let tail = self
            .map
            .atomic_u64(self.base + TAIL)
            .load(Ordering::Acquire);
        loop {
            if head == tail {
                return None;
            }
            let at = self.data(head);
            let mut hdr = [0u8; FRAME_HEADER];
            self.map.read(at, &mut hdr);
            let len = u32::from_le_bytes(hdr[..4].try_into().unwrap()) as usize;
            let kind = u32::from_le_bytes(hdr[4..].try_into().unwrap());
            if kind == WRAP {
                head += (self.cap - (head as usize & (self.cap - 1))) as u64;
                continue;
            }
            if len > self.max_payload() {
                // Corrupted by a dying writer: drop everything rather than read garbage.
                head_a.store(tail, Ordering::Release);
                return None;
            }
            out.clear();
            self.map.read_into_vec(at + FRAME_HEADER, len, out);
            head_a.store(head + (FRAME_HEADER + pad8(len)) as u64, Ordering::Release);
            return Some(kind);
        }
    }
}

/// Whether the ring whose header is at `base` holds a frame.
pub(crate) fn has_data_at(map: &SharedMapping, base: usize) -> bool {
    let head = map.atomic_u64(base + HEAD).load(Ordering::Relaxed);
    map.atomic_u64(base + TAIL).load(Ordering::Acquire) != head
}

/// A doorbell: producers `ring` it after publishing; one consumer `wait`s on it.
///
/// Event-count protocol: the sleeper announces itself in `sleeping`, re-checks for work,
/// then sleeps on `seq` only if nothing changed; producers bump `seq` and wake only when
/// someone announced sleep. Both sides put a SeqCst fence between their publish and their
/// check, so either the sleeper sees the work or the producer sees the sleeper.
pub(crate) struct Bell {
    map: Arc<SharedMapping>,
    off: usize,
}

impl Bell {
    /// The bell at `off` (8 bytes: seq u32, sleeping u32).
    pub(crate) fn new(map: Arc<SharedMapping>, off: usize) -> Bell {
        Bell { map, off }
    }

    /// Tells the consumer something was published (call after publishing).
    pub(crate) fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.map.atomic_u32(self.off + 4).load(Ordering::SeqCst) != 0 {
            self.map.atomic_u32(self.off).fetch_add(1, Ordering::SeqCst);
            futex_wake(self.map.atomic_u32(self.off), u32::MAX);
        }
    }

    /// Waits until `ready()` is true or `timeout` passes: a bounded spin (yielding the CPU
    /// after a while, for machines with few cores), then a futex sleep. Returns `ready()`.
    pub(crate) fn wait(
        &self,
        spin: u32,
        timeout: Option<Duration>,
        ready: impl Fn() -> bool,
    ) -> bool {
        let end = std::time::Instant::now() + Duration::from_millis(2);
        for i in 0..spin {
            if ready() {
                return true;
            }
            // Bounded in time as well: on a loaded machine each yield can take long.
            if i % 64 == 63 && std::time::Instant::now() >= end {
                break;
            }
            if i < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let seq = self.map.atomic_u32(self.off);
        let sleeping = self.map.atomic_u32(self.off + 4);
        let seen = seq.load(Ordering::SeqCst);
        sleeping.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            futex_wait(seq, seen, timeout);
        }
        sleeping.fetch_sub(1, Ordering::SeqCst);
        ready()
    }
}
