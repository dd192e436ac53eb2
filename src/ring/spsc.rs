//! The single-producer single-consumer flavour (the process pool's task and result rings):
//! no locks; a frame is published by its own header, and every byte from the producer is
//! checked before use.
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
    /// Loads the data word at `off` (8-aligned): a frame header, which publishes its frame.
    fn load_word(&self, off: usize, order: Ordering) -> u64;
    /// Stores the data word at `off` (8-aligned).
    fn store_word(&self, off: usize, v: u64, order: Ordering);
    /// Copies `src` to `off`.
    fn write(&self, off: usize, src: &[u8]);
    /// Writes `parts` one after another at `off` (8-aligned), then zeros to the next
    /// multiple of 8: bytes the producer owns whole (a frame and its padding).
    fn write_words(&self, off: usize, parts: &[&[u8]]) {
        let mut all: Vec<u8> = parts.concat();
        all.resize(all.len().next_multiple_of(8), 0);
        self.write(off, &all);
    }
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
    fn load_word(&self, off: usize, order: Ordering) -> u64 {
        self.atomic_u64(off).load(order)
    }
    fn store_word(&self, off: usize, v: u64, order: Ordering) {
        self.atomic_u64(off).store(v, order)
    }
    fn write(&self, off: usize, src: &[u8]) {
        SharedMapping::write(self, off, src)
    }
    fn write_words(&self, off: usize, parts: &[&[u8]]) {
        SharedMapping::write_words(self, off, parts)
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
        // The slot at the tail is always zero (unpublished): see `try_push`.
        self.map.store_word(self.data(0), 0, Ordering::SeqCst);
        self.map.store(self.base + HEAD, 0, Ordering::SeqCst);
        self.map.store(self.base + TAIL, 0, Ordering::SeqCst);
        self.seen_head.store(0, Ordering::Relaxed);
    }

    fn data(&self, pos: u64) -> usize {
        self.base + RING_HEADER + (pos as usize & (self.cap - 1))
    }

    /// Appends one frame made of `parts`. Returns false if there is no room now.
    ///
    /// The frame's own header publishes it: the consumer polls the header word at its
    /// position, never `tail` (one cache line per frame crosses to it, not two). So the
    /// slot after each frame is zeroed before the frame is published: the consumer reaches
    /// it only through that frame, and must find "nothing yet" there, not older bytes.
    pub(crate) fn try_push(&self, kind: u32, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(len <= self.max_payload(), "frame too large for the ring");
        assert!(
            kind != frame::WRAP && kind != 0,
            "kind {kind:#x} is not a frame kind"
        );
        let total = frame::size(len);
        let mut tail = self.map.load(self.base + TAIL, Ordering::Relaxed);
        let to_end = self.cap - (tail as usize & (self.cap - 1));
        let wraps = total > to_end;
        // The bytes this frame takes from `tail`, and the zeroed header slot after them.
        let need = if wraps { to_end + total } else { total } + frame::HEADER;
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
        // A wrap marker goes where this frame did not fit, once the frame at the start is
        // written: the marker is then the publication.
        let marker = wraps.then(|| self.data(tail));
        if wraps {
            // The counters wrap (a corrupt consumer may leave them anywhere).
            tail = tail.wrapping_add(to_end as u64);
        }
        // The frame's words are the producer's alone until its header says otherwise:
        // whole words, padding included, with no merge (`SharedMapping::write_words`).
        let at = self.data(tail);
        self.map.write_words(at + frame::HEADER, parts);
        let end = tail.wrapping_add(total as u64);
        self.map
            .store_word(self.data(end), UNPUBLISHED, Ordering::Relaxed);
        // `Release`: whoever sees the header (or the marker) sees the frame and the zeroed
        // slot after it.
        let header = u64::from_ne_bytes(frame::header(len as u32, kind));
        match marker {
            None => self.map.store_word(at, header, Ordering::Release),
            Some(m) => {
                self.map.store_word(at, header, Ordering::Relaxed);
                let wrap = u64::from_ne_bytes(frame::WRAP_MARKER);
                self.map.store_word(m, wrap, Ordering::Release);
            }
        }
        // Only the producer reads `tail` (after a respawn's reset, from a new `Ring`).
        self.map.store(self.base + TAIL, end, Ordering::Relaxed);
        true
    }

    /// Publishes a header longer than the ring admits, as a corrupted producer might
    /// (fault injection).
    pub(crate) fn scribble_header(&self) {
        let tail = self.map.load(self.base + TAIL, Ordering::Relaxed);
        let h = u64::from_ne_bytes(frame::header(self.cap as u32, 3));
        self.map.store_word(self.data(tail), h, Ordering::Release);
        // Past it, so that the next push does not overwrite it.
        self.map
            .store(self.base + TAIL, tail.wrapping_add(8), Ordering::Relaxed);
    }

    /// Whether a frame is waiting (or the ring is corrupt: [`Ring::try_pop`] says which).
    pub(crate) fn has_data(&self) -> bool {
        has_data_at(&*self.map, self.base, self.cap)
    }

    /// Takes the next frame: its kind, with its payload appended to `out` (cleared first).
    /// A corrupt ring reads as empty; see [`Ring::try_pop`] for the checked form.
    pub(crate) fn pop(&self, out: &mut Vec<u8>) -> Option<u32> {
        self.try_pop(out).ok().flatten()
    }

    /// Takes the next frame, checking everything the producer wrote before using it: the
    /// producer may be a worker that corrupted its own memory, so `head`, every header
    /// and every wrap marker are untrusted ([`frame::next`] checks the frame).
    /// Nothing is read outside the ring's data and nothing larger than
    /// [`Ring::max_payload`] is allocated. On a violation the ring is left as it is (the
    /// caller kills the producer and resets the ring).
    pub(crate) fn try_pop(&self, out: &mut Vec<u8>) -> Result<Option<u32>, Corrupt> {
        let head = self.map.load(self.base + HEAD, Ordering::Relaxed);
        // Frames and wrap markers are 8-aligned, so the head always is.
        if !head.is_multiple_of(8) {
            return Err(Corrupt(format!("misaligned ring head {head}")));
        }
        let at = head as usize & (self.cap - 1);
        // `Acquire`: the publication (see `try_push`).
        let first = self.map.load_word(self.data(head), Ordering::Acquire);
        if first == UNPUBLISHED {
            return Ok(None);
        }
        // Everything may count as published (nothing tells how much): the checks that
        // remain are the header's own, and the frame inside the data area.
        let mut first = Some(first);
        let found = frame::next(at, self.cap - at, self.cap, self.max_payload(), |off| {
            let w = match first.take() {
                Some(w) if off == at => w,
                _ => self
                    .map
                    .load_word(self.base + RING_HEADER + off, Ordering::Acquire),
            };
            w.to_ne_bytes()
        })?;
        let Some(f) = found else {
            return Ok(None);
        };
        if f.kind == 0 {
            // No producer publishes kind 0 (`try_push`): this is a wrap marker with nothing
            // published behind it, or foreign bytes.
            return Err(Corrupt("a frame of kind 0 (not published)".into()));
        }
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

/// The header word of a slot no frame is published in yet (no frame has kind 0).
const UNPUBLISHED: u64 = 0;

/// Whether the ring whose header is at `base` (with `cap` data bytes) holds a frame, or
/// is corrupt (a misaligned head).
pub(crate) fn has_data_at<M: FrameMemory + ?Sized>(map: &M, base: usize, cap: usize) -> bool {
    let head = map.load(base + HEAD, Ordering::Relaxed);
    !head.is_multiple_of(8)
        || map.load_word(
            base + RING_HEADER + (head as usize & (cap - 1)),
            Ordering::Relaxed,
        ) != UNPUBLISHED
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
            assert!(r.has_data());
            assert_eq!(r.try_pop(&mut out), Ok(Some(3)));
            assert_eq!(out, p);
            // Where the consumer looks next, an older frame's header may lie in the bytes:
            // the producer zeroed that slot before it published the frame just taken.
            assert!(!r.has_data(), "a stale frame after push {i}");
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
            // Two frames at least: the one to push may need the bytes to the end (it wraps)
            // and 8 more (the slot after it).
            for _ in 0..(round % 7 + 2) {
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
            if case % 5 == 0 {
                // Unpublished slots here and there, so pops also end in "nothing yet".
                for at in (0..CAP).step_by(8 * (1 + rng.below(8) as usize)) {
                    data[at..at + 8].fill(0);
                }
            }
            r.map.write(RING_HEADER, &data);
            let head = match case % 3 {
                0 => rng.next(),
                _ => rng.below(1 << 20) * 8,
            };
            r.map.atomic_u64(HEAD).store(head, Ordering::SeqCst);
            let mut out = Vec::new();
            // Each pop consumes at least 8 bytes, so this ends on any input.
            for _ in 0..CAP / 8 + 1 {
                match r.try_pop(&mut out) {
                    Ok(Some(kind)) => {
                        frames += 1;
                        assert!(kind != 0 && kind != frame::WRAP);
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
/// The data area is loom atomics accessed `Relaxed`, so only the `Release` store of a
/// frame's header (or of its wrap marker) and the consumer's `Acquire` load of it make the
/// frame's bytes visible: with a `Relaxed` header the model reads stale bytes and fails.
/// The third frame lands on the first one's bytes, so the consumer, after it, finds the
/// second one's old header in the slot where it looks next, unless the producer zeroed
/// that slot before publishing (`try_push`): without the zeroing, or with it after the
/// header, the model pops a stale frame and fails. (The other direction, a producer
/// overwriting bytes the consumer is still reading after a `Relaxed` head, is load
/// buffering, which loom does not model.)
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
        fn load_word(&self, off: usize, order: Ordering) -> u64 {
            let (w, shift) = self.byte(off);
            assert_eq!(shift, 0, "a misaligned word at {off}");
            w.load(order)
        }
        fn store_word(&self, off: usize, v: u64, order: Ordering) {
            let (w, shift) = self.byte(off);
            assert_eq!(shift, 0, "a misaligned word at {off}");
            w.store(v, order)
        }
        fn read_into_vec(&self, off: usize, len: usize, dst: &mut Vec<u8>) {
            for i in 0..len {
                let (w, shift) = self.byte(off + i);
                dst.push((w.load(Ordering::Relaxed) >> shift) as u8);
            }
        }
    }

    #[test]
    fn loom_frames_cross_the_ring_whole_and_in_order() {
        // Three 24-byte frames through 64 bytes: the third wraps behind a marker, into the
        // bytes of the first, which the consumer must have finished reading; after it, the
        // consumer looks at offset 24, where the second frame's header was.
        const FRAMES: u32 = 3;
        let payload = |k: u32| vec![k as u8 + 1; 12];
        crate::sys::wait::loom_tests::model(move || {
            let ring = Arc::new(Ring::new(Arc::new(ModelMemory::new()), 0, CAP));
            let producer = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    for k in 0..FRAMES {
                        while !ring.try_push(k + 1, &[&payload(k)]) {
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
                            assert_eq!(kind, k + 1);
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
