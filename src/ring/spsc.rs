//! The single-producer single-consumer flavour (the process pool's task and result rings):
//! two byte counters, no locks, every byte from the producer checked before use.
//!
//! See `README.md` beside this file for the protocol.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::frame::{self, Corrupt};
use crate::sys::SharedMapping;

/// Bytes of ring header before the data (head and tail on separate cache lines).
pub(crate) const RING_HEADER: usize = 256;
const HEAD: usize = 0;
const TAIL: usize = 64;

/// The memory a ring lives in: the pool's shared mapping, or (in the loom models) loom's
/// atomics and cells, so the protocol below is model-checked as it is.
pub(crate) trait FrameMemory {
    /// Loads the 64-bit counter at `off`.
    fn load(&self, off: usize, order: Ordering) -> u64;
    /// Stores the 64-bit counter at `off`.
    fn store(&self, off: usize, v: u64, order: Ordering);
    /// Copies `src` to `off`.
    fn write(&self, off: usize, src: &[u8]);
    /// Writes `parts` one after another at `off` (8-aligned), then zeros to the next
    /// multiple of 8: bytes the producer owns whole (a frame and its padding).
    fn write_words(&self, off: usize, parts: &[&[u8]]) {
        let mut all: Vec<u8> = parts.concat();
        all.resize(all.len().next_multiple_of(8), 0);
        self.write(off, &all);
    }
    /// Copies `dst.len()` bytes at `off` into `dst`.
    fn read(&self, off: usize, dst: &mut [u8]);
    /// Appends `len` bytes at `off` to `dst`.
    fn read_into_vec(&self, off: usize, len: usize, dst: &mut Vec<u8>);
}

impl FrameMemory for SharedMapping {
    fn load(&self, off: usize, order: Ordering) -> u64 {
        self.atomic_u64(off).load(order)
    }
    fn store(&self, off: usize, v: u64, order: Ordering) {
        self.atomic_u64(off).store(v, order)
    }
    fn write(&self, off: usize, src: &[u8]) {
        SharedMapping::write(self, off, src)
    }
    fn write_words(&self, off: usize, parts: &[&[u8]]) {
        SharedMapping::write_words(self, off, parts)
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        SharedMapping::read(self, off, dst)
    }
    fn read_into_vec(&self, off: usize, len: usize, dst: &mut Vec<u8>) {
        SharedMapping::read_into_vec(self, off, len, dst)
    }
}

/// The smallest ring (the pool's are 4 KiB and up; the loom models use this).
const MIN_CAP: usize = 64;

/// One direction of a worker's channel.
pub(crate) struct Ring<M: FrameMemory = SharedMapping> {
    map: Arc<M>,
    base: usize,
    cap: usize,
    /// The producer's copy of the consumer's `head`, as last loaded: it says there is room
    /// without a load of the line the consumer writes (a cache miss on every push, on the
    /// round trip's path, when the consumer has just taken the previous frame). The real
    /// `head` only moves forward, so this one is never ahead of it: what it calls free is
    /// free. Only when it finds no room is `head` loaded again. (A ring emptied by
    /// [`reset`](Self::reset) through another `Ring` starts at tail 0, where any stale copy
    /// wraps to "more than the capacity is used", so the first push reloads.)
    seen_head: std::sync::atomic::AtomicU64,
}

impl<M: FrameMemory> Ring<M> {
    /// A ring whose header is at `base` and whose data (`cap` bytes, a power of two) follows.
    pub(crate) fn new(map: Arc<M>, base: usize, cap: usize) -> Ring<M> {
        assert!(cap.is_power_of_two() && cap >= MIN_CAP);
        Ring {
            map,
            base,
            cap,
            seen_head: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The largest payload `try_push` accepts.
    pub(crate) fn max_payload(&self) -> usize {
        self.cap / 4
    }

    /// Empties the ring. Only while no other process uses it.
    pub(crate) fn reset(&self) {
        self.map.store(self.base + HEAD, 0, Ordering::SeqCst);
        self.map.store(self.base + TAIL, 0, Ordering::SeqCst);
        self.seen_head.store(0, Ordering::Relaxed);
    }

    fn data(&self, pos: u64) -> usize {
        self.base + RING_HEADER + (pos as usize & (self.cap - 1))
    }

    /// Appends one frame made of `parts`. Returns false if there is no room now.
    pub(crate) fn try_push(&self, kind: u32, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(len <= self.max_payload(), "frame too large for the ring");
        assert_ne!(
            kind,
            frame::WRAP,
            "the wrap marker's kind is not a frame kind"
        );
        let total = frame::size(len);
        let mut tail = self.map.load(self.base + TAIL, Ordering::Relaxed);
        let to_end = self.cap - (tail as usize & (self.cap - 1));
        let need = if total > to_end {
            to_end + total
        } else {
            total
        };
        // The head is the consumer's (another process's) to write: wrapping arithmetic and
        // a bound before the sum, so a corrupt one reads as a full ring, never a panic.
        let fits = |head: u64| {
            let used = tail.wrapping_sub(head);
            used <= self.cap as u64 && used as usize + need <= self.cap
        };
        if !fits(self.seen_head.load(Ordering::Relaxed)) {
            // `Acquire`: the consumer is done with the bytes it gave back (as before the
            // copy: the happens-before of that load covers every later push using it).
            let head = self.map.load(self.base + HEAD, Ordering::Acquire);
            self.seen_head.store(head, Ordering::Relaxed);
            if !fits(head) {
                return false;
            }
        }
        if total > to_end {
            self.map.write(self.data(tail), &frame::WRAP_MARKER);
            // The counters wrap (a corrupt consumer may leave them anywhere).
            tail = tail.wrapping_add(to_end as u64);
        }
        // The frame's words are the producer's alone until `tail` says otherwise: whole
        // words, padding included, with no merge (`SharedMapping::write_words`).
        let at = self.data(tail);
        self.map
            .write_words(at, &[&frame::header(len as u32, kind)]);
        self.map.write_words(at + frame::HEADER, parts);
        self.map.store(
            self.base + TAIL,
            tail.wrapping_add(total as u64),
            Ordering::Release,
        );
        true
    }

    /// Sets the tail far past the head, as a corrupted producer might (fault injection).
    pub(crate) fn scribble_tail(&self) {
        let head = self.map.load(self.base + HEAD, Ordering::Relaxed);
        self.map.store(
            self.base + TAIL,
            head + 3 * self.cap as u64,
            Ordering::Release,
        );
    }

    /// Whether a frame is waiting.
    pub(crate) fn has_data(&self) -> bool {
        let head = self.map.load(self.base + HEAD, Ordering::Relaxed);
        self.map.load(self.base + TAIL, Ordering::Acquire) != head
    }

    /// Takes the next frame: its kind, with its payload appended to `out` (cleared first).
    /// A corrupt ring reads as empty; see [`Ring::try_pop`] for the checked form.
    pub(crate) fn pop(&self, out: &mut Vec<u8>) -> Option<u32> {
        self.try_pop(out).ok().flatten()
    }

    /// Takes the next frame, checking everything the producer wrote before using it: the
    /// producer may be a worker that corrupted its own memory, so `head`, `tail`, every
    /// frame length and every wrap marker are untrusted ([`frame::next`] checks the frame).
    /// Nothing is read outside the ring's data and nothing larger than
    /// [`Ring::max_payload`] is allocated. On a violation the ring is left as it is (the
    /// caller kills the producer and resets the ring).
    pub(crate) fn try_pop(&self, out: &mut Vec<u8>) -> Result<Option<u32>, Corrupt> {
        let head = self.map.load(self.base + HEAD, Ordering::Relaxed);
        let tail = self.map.load(self.base + TAIL, Ordering::Acquire);
        // Frames and wrap markers are 8-aligned, so both counters always are.
        if !head.is_multiple_of(8) || !tail.is_multiple_of(8) {
            return Err(Corrupt(format!("misaligned ring counters {head}/{tail}")));
        }
        let used = tail.wrapping_sub(head);
        if used > self.cap as u64 {
            return Err(Corrupt(format!(
                "ring tail {tail} is not within {} bytes after head {head}",
                self.cap
            )));
        }
        let at = head as usize & (self.cap - 1);
        let found = frame::next(
            at,
            self.cap - at,
            used as usize,
            self.max_payload(),
            |off| {
                let mut h = [0u8; frame::HEADER];
                self.map.read(self.base + RING_HEADER + off, &mut h);
                h
            },
        )?;
        let Some(f) = found else {
            return Ok(None);
        };
        out.clear();
        self.map
            .read_into_vec(self.base + RING_HEADER + f.at + frame::HEADER, f.len, out);
        self.map.store(
            self.base + HEAD,
            // The counters wrap (a corrupt producer may start them anywhere).
            head.wrapping_add(f.consumed as u64),
            Ordering::Release,
        );
        Ok(Some(f.kind))
    }
}

/// Whether the ring whose header is at `base` holds a frame.
pub(crate) fn has_data_at(map: &SharedMapping, base: usize) -> bool {
    let head = map.atomic_u64(base + HEAD).load(Ordering::Relaxed);
    map.atomic_u64(base + TAIL).load(Ordering::Acquire) != head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Rng;

    const CAP: usize = 4096;

    fn ring() -> Ring {
        let fd = crate::sys::mem::memfd("ring-test", (RING_HEADER + CAP) as u64).unwrap();
        let map = Arc::new(SharedMapping::map(&fd, RING_HEADER + CAP).unwrap());
        Ring::new(map, 0, CAP)
    }

    #[test]
    fn frames_round_trip_across_the_wrap() {
        let r = ring();
        let mut out = Vec::new();
        for i in 0..1000u32 {
            let p = vec![i as u8; (i as usize * 37) % 900];
            assert!(r.try_push(3, &[&p]));
            assert_eq!(r.try_pop(&mut out), Ok(Some(3)));
            assert_eq!(out, p);
        }
        assert_eq!(r.try_pop(&mut out), Ok(None));
    }

    /// The producer's copy of `head` (`seen_head`): a full ring stays full until the
    /// consumer takes a frame, room freed is found, and a ring emptied through another
    /// `Ring` (as a respawn does) loses no frame and overwrites none.
    #[test]
    fn the_producers_copy_of_the_head_never_lets_it_overwrite_a_frame() {
        let r = ring();
        let mut out = Vec::new();
        let (mut pushed, mut popped) = (0u32, 0u32);
        for round in 0..50 {
            while r.try_push(3, &[&pushed.to_le_bytes(), &[0; 100]]) {
                pushed += 1;
            }
            assert!(!r.try_push(3, &[&[0; 100]]), "full stays full");
            for _ in 0..(round % 7 + 1) {
                assert_eq!(r.try_pop(&mut out), Ok(Some(3)));
                assert_eq!(out[..4], popped.to_le_bytes());
                popped += 1;
            }
            assert!(
                r.try_push(3, &[&pushed.to_le_bytes(), &[0; 100]]),
                "room found"
            );
            pushed += 1;
            if round % 10 == 9 {
                Ring::new(r.map.clone(), 0, CAP).reset();
                popped = pushed;
            }
        }
        while let Ok(Some(_)) = r.try_pop(&mut out) {
            assert_eq!(out[..4], popped.to_le_bytes());
            popped += 1;
        }
        assert_eq!(popped, pushed);
    }

    #[test]
    fn arbitrary_ring_contents_never_panic_overrun_or_over_allocate() {
        let r = ring();
        let mut rng = Rng(0xdead_beef_cafe);
        let (mut frames, mut corrupt) = (0, 0);
        for case in 0..20_000 {
            // Arbitrary data, then counters that are sometimes sane and sometimes not.
            let mut data = vec![0u8; CAP];
            for b in data.iter_mut() {
                *b = rng.next() as u8;
            }
            if case % 2 == 0 {
                // Plausible frame headers at aligned places, so deep paths are reached.
                for at in (0..CAP).step_by(8 * (1 + rng.below(16) as usize)) {
                    let len = rng.below(if at % 16 == 0 { 300 } else { CAP as u64 / 3 }) as u32;
                    let kind = [3, 4, u32::MAX, rng.next() as u32][rng.below(4) as usize];
                    data[at..at + 4].copy_from_slice(&len.to_le_bytes());
                    data[at + 4..at + 8].copy_from_slice(&kind.to_le_bytes());
                }
            }
            r.map.write(RING_HEADER, &data);
            let head = match case % 3 {
                0 => rng.next(),
                _ => rng.below(1 << 20) * 8,
            };
            let tail = match case % 4 {
                0 => rng.next(),
                _ => head.wrapping_add(rng.below(CAP as u64 / 8 + 2) * 8),
            };
            r.map.atomic_u64(HEAD).store(head, Ordering::SeqCst);
            r.map.atomic_u64(TAIL).store(tail, Ordering::SeqCst);
            let mut out = Vec::new();
            // Each pop consumes at least 8 bytes, so this ends on any input.
            for _ in 0..CAP / 8 + 1 {
                match r.try_pop(&mut out) {
                    Ok(Some(_)) => {
                        frames += 1;
                        assert!(out.len() <= r.max_payload());
                        assert!(out.capacity() <= 2 * r.max_payload());
                    }
                    Ok(None) => break,
                    Err(Corrupt(msg)) => {
                        corrupt += 1;
                        assert!(!msg.is_empty());
                        break;
                    }
                }
            }
        }
        assert!(frames > 500 && corrupt > 1000, "{frames} {corrupt}");
    }
}

/// A loom model of the ring: one producer pushing frames (one wraps, with a marker) while
/// one consumer pops them, every interleaving and every value the memory model allows.
/// The data area is loom atomics accessed `Relaxed`, so only the ring's own `Release` of
/// `tail` and `Acquire` of it make a frame's bytes visible: with a `Relaxed` tail the model
/// reads stale bytes and fails. (The other direction, a producer overwriting bytes the
/// consumer is still reading after a `Relaxed` head, is load buffering, which loom does not
/// model.)
#[cfg(test)]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicU64;

    const CAP: usize = MIN_CAP;

    /// A ring's memory under loom: head, tail, and the data as 8-byte words.
    struct ModelMemory {
        head: AtomicU64,
        tail: AtomicU64,
        words: Vec<AtomicU64>,
    }

    impl ModelMemory {
        fn new() -> ModelMemory {
            ModelMemory {
                head: AtomicU64::new(0),
                tail: AtomicU64::new(0),
                words: (0..CAP / 8).map(|_| AtomicU64::new(0)).collect(),
            }
        }

        fn counter(&self, off: usize) -> &AtomicU64 {
            match off {
                HEAD => &self.head,
                TAIL => &self.tail,
                _ => panic!("no counter at {off}"),
            }
        }

        fn byte(&self, off: usize) -> (&AtomicU64, usize) {
            let d = off - RING_HEADER;
            (&self.words[d / 8], (d % 8) * 8)
        }
    }

    impl FrameMemory for ModelMemory {
        fn load(&self, off: usize, order: Ordering) -> u64 {
            self.counter(off).load(order)
        }
        fn store(&self, off: usize, v: u64, order: Ordering) {
            self.counter(off).store(v, order)
        }
        fn write(&self, off: usize, src: &[u8]) {
            // Only the producer writes data, so a load-modify-store per word is its own.
            for (i, &b) in src.iter().enumerate() {
                let (w, shift) = self.byte(off + i);
                let v = w.load(Ordering::Relaxed);
                w.store(
                    (v & !(0xff << shift)) | (b as u64) << shift,
                    Ordering::Relaxed,
                );
            }
        }
        fn read(&self, off: usize, dst: &mut [u8]) {
            for (i, b) in dst.iter_mut().enumerate() {
                let (w, shift) = self.byte(off + i);
                *b = (w.load(Ordering::Relaxed) >> shift) as u8;
            }
        }
        fn read_into_vec(&self, off: usize, len: usize, dst: &mut Vec<u8>) {
            let start = dst.len();
            dst.resize(start + len, 0);
            self.read(off, &mut dst[start..]);
        }
    }

    #[test]
    fn loom_frames_cross_the_ring_whole_and_in_order() {
        // Three 24-byte frames through 64 bytes: the third wraps behind a marker, into the
        // bytes of the first, which the consumer must have finished reading.
        const FRAMES: u32 = 3;
        let payload = |k: u32| vec![k as u8 + 1; 12];
        crate::sys::wait::loom_tests::model(move || {
            let ring = Arc::new(Ring::new(Arc::new(ModelMemory::new()), 0, CAP));
            let producer = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    for k in 0..FRAMES {
                        while !ring.try_push(k, &[&payload(k)]) {
                            loom::thread::yield_now();
                        }
                    }
                })
            };
            let mut out = Vec::new();
            for k in 0..FRAMES {
                loop {
                    match ring.try_pop(&mut out) {
                        Ok(Some(kind)) => {
                            assert_eq!(kind, k);
                            assert_eq!(out, payload(k));
                            break;
                        }
                        Ok(None) => loom::thread::yield_now(),
                        Err(Corrupt(why)) => panic!("frame {k}: {why}"),
                    }
                }
            }
            assert_eq!(ring.try_pop(&mut out), Ok(None));
            producer.join().unwrap();
        });
    }
}
