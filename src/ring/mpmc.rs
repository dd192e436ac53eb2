//! The many-producer many-consumer flavour, behind [`Queue`](crate::Queue): any number of
//! processes, robust to any of them being SIGKILLed at any instruction.
//!
//! The protocol is described in `README.md` beside this file; in short:
//!
//! * one memfd holds a header and a byte ring of framed messages;
//! * producers serialize under a *producer lock*, consumers deserialize under a *consumer
//!   lock*; each is the robust lock word of `sys::lock` (the holder's thread id; a waiter
//!   that sees the same holder for a while checks that it lives and takes the lock over
//!   from a dead holder; a release touches only a word that still names the releaser);
//! * the ring's state is two 64-bit words, `P = puts << 32 | tail` (written only by the
//!   producer-lock holder) and `C = gets << 32 | head` (consumer-lock holder); each is
//!   changed by one atomic store *after* the bytes it covers are complete, so a process
//!   killed at any point leaves either the old or the new state, never half of one;
//! * a waiter sleeps on an event count (`sys/wait.rs`: `not_empty`, `not_full`, `joined`);
//!   whoever changes `P` or `C` notifies it, which costs no system call when nobody
//!   sleeps. Waits are time-sliced, so nothing depends on a wake-up arriving.

use std::cell::Cell;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::frame::{self, Corrupt};
use crate::error::{Error, Result};
use crate::sys::biased_lock::{BiasError, BiasedHeld, BiasedLock};
use crate::sys::lock::RawError;
use crate::sys::ring_memory::{RingMemory, Side};
use crate::sys::wait::Backoff;
use crate::sys::{EventCount, SharedMapping, Spin};

pub(crate) const MAGIC: u64 = 0x6d70_7175_6575_6532; // "mpqueue2"
pub(crate) const HEADER: usize = 4096;

// Header offsets: each group on its own 128-byte line (no false sharing between the
// producer side and the consumer side).
pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_CAP: usize = 8;
pub(crate) const OFF_MAXSIZE: usize = 16;
pub(crate) const OFF_CLOSED: usize = 24;
pub(crate) const OFF_PROD_LOCK: usize = 128;
const OFF_PROD_CACHED_C: usize = 136;
/// The producer lock's `bias` and `busy` words (`sys::biased_lock`).
pub(crate) const OFF_PROD_BIAS: usize = 144;
pub(crate) const OFF_P: usize = 256;
pub(crate) const OFF_CONS_LOCK: usize = 384;
pub(crate) const OFF_CONS_CACHED_P: usize = 392;
pub(crate) const OFF_CONS_BIAS: usize = 400;
pub(crate) const OFF_C: usize = 512;
/// Event counts (seq, sleepers): items arrived; room freed.
const OFF_NOT_EMPTY: usize = 640;
const OFF_NOT_FULL: usize = 768;
/// Items marked done (`JoinableQueue`), then the event count `join` sleeps on.
const OFF_DONE: usize = 896;
const OFF_JOINED: usize = 900;

/// The one kind of frame a queue holds (anything else is foreign bytes).
const KIND_DATA: u32 = 0x4441_5441;
const FRAME_HEAD: u64 = frame::HEADER as u64;

/// Default ring size: virtual; only the pages in use are ever touched (see `HOT_MIN`).
pub(crate) const DEFAULT_CAPACITY: u64 = 256 << 20;
/// The largest ring.
const MAX_CAPACITY: u64 = 1 << 31;
/// A producer past its ring's `hot` offset goes back to the start as soon as the message
/// fits there, so a queue that is drained as fast as it is filled keeps to its first `hot`
/// bytes (and the rest of the memfd is never allocated). That offset is twice a core's
/// private (level 2) cache, within these bounds: a line recycled sooner is still in the
/// consumer's private cache when the producer writes it again, and each such write must
/// first take it from there. Here (L2 512 KiB), alternated runs of `multiproc bench --filter
/// queue.msgs_64B`, 64-byte messages against the bare ring: 0.53–0.65× with 512 KiB,
/// 0.77–0.82× with 1 MiB, 0.54–0.79× with 2 MiB, 0.55–0.72× with 4 MiB.
const HOT_MIN: u64 = 512 << 10;
const HOT_MAX: u64 = 8 << 20;
/// Where sysfs does not say.
const HOT_DEFAULT: u64 = 1 << 20;
/// Large messages get room for this many in the hot part (as a bare ring of 8 slots has):
/// with only two, producer and consumer take turns instead of working side by side.
const HOT_FRAMES: u64 = 8;

/// This machine's hot offset (see [`HOT_MIN`]), read once per process.
fn hot_bytes() -> u64 {
    static HOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HOT.get_or_init(|| {
        crate::sys::sched::l2_cache_bytes()
            .map_or(HOT_DEFAULT, |l2| {
                l2.saturating_mul(2).clamp(HOT_MIN, HOT_MAX)
            })
            .next_multiple_of(8)
    })
}

/// The offset past which a producer of `s`-byte frames goes back to the start early, in a
/// ring whose hot part is `hot` bytes.
#[inline]
fn hot_end(s: u64, hot: u64) -> u64 {
    hot.max(s.saturating_mul(HOT_FRAMES))
}

/// Spins before yielding, yields before sleeping (the machine may have 2 cores); the spin
/// is bounded in time too (`sys::wait`).
const SPIN: Spin = Spin {
    spins: 256,
    rounds: 256 + 16,
    grow: false,
};
/// How a producer waits for room while it spins: growing hint rounds (see `wait_space`).
const FULL_SPIN: Spin = Spin {
    spins: 32,
    rounds: 32 + 16,
    grow: true,
};
/// Frames of room a spinning producer waits for (`wait_space`).
const SLACK: u64 = 16;
/// Longest single futex sleep: waits re-check their condition (and closed) at least this
/// often, so no wake-up is ever needed for progress.
const SLICE: Duration = Duration::from_millis(50);
#[inline]
fn pack(count: u32, pos: u64) -> u64 {
    ((count as u64) << 32) | pos
}

#[inline]
fn unpack(w: u64) -> (u32, u64) {
    ((w >> 32) as u32, w & 0xffff_ffff)
}

#[inline]
fn frame_size(len: u64) -> u64 {
    frame::size(len as usize) as u64
}

fn corrupted(why: impl std::fmt::Display) -> Error {
    Error::Protocol(format!(
        "the queue's shared memory is corrupted (was it written by another program?): {why}"
    ))
}

/// Values that serialize to at most this many bytes are encoded once, into a per-thread
/// buffer, and copied into the ring.
const SMALL_MESSAGE: usize = 4096;

thread_local! {
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// This thread's serialization buffer of [`SMALL_MESSAGE`] bytes, lent for one `put` and
/// given back when dropped (a `Serialize` that puts into a queue itself gets a new one).
struct Scratch(Vec<u8>);

impl Scratch {
    #[inline]
    fn take() -> Scratch {
        let mut v = SCRATCH.with(Cell::take);
        if v.len() < SMALL_MESSAGE {
            v = vec![0; SMALL_MESSAGE];
        }
        Scratch(v)
    }
}

impl Drop for Scratch {
    #[inline]
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        // Whatever a nested `put` gave back is dropped; one buffer per thread is kept.
        drop(SCRATCH.with(|b| b.replace(v)));
    }
}

/// An item's decoding: the value, or (boxed, off the fast path) why there is none.
type Decoded<T> = std::result::Result<T, Box<Undecodable>>;

/// Why an item at the head did not decode.
enum Undecodable {
    /// Its bytes are not one `T` (the item is consumed all the same).
    Error(Error),
    /// `T`'s `Deserialize` panicked: resumed once the item is consumed.
    Panic(Box<dyn std::any::Any + Send>),
}

impl Undecodable {
    #[cold]
    fn error(e: Error) -> Box<Undecodable> {
        Box::new(Undecodable::Error(e))
    }

    #[cold]
    fn panic(p: Box<dyn std::any::Any + Send>) -> Box<Undecodable> {
        Box::new(Undecodable::Panic(p))
    }

    /// The error to return, or the panic resumed.
    #[cold]
    fn resume(self) -> Error {
        match self {
            Undecodable::Error(e) => e,
            Undecodable::Panic(p) => std::panic::resume_unwind(p),
        }
    }
}

/// Takes a side's lock (the robust lock word of `sys::lock`, biased to the side's first
/// thread: `sys::biased_lock`), taking it over from a holder that died: the ring needs no
/// repair after a death, since each side commits with one atomic store (see the module
/// docs), so that is not reported.
#[inline]
fn lock(side: BiasedLock<'_>, deadline: Option<Instant>) -> Result<BiasedHeld<'_>> {
    match side.lock(deadline) {
        Ok(held) => Ok(held),
        Err(e) => Err(lock_error(e)),
    }
}

#[cold]
fn lock_error(e: BiasError) -> Error {
    match e {
        BiasError::Raw(RawError::Timeout) => Error::Timeout(Duration::ZERO),
        // Nothing in a queue marks its locks unrecoverable: only foreign bytes can.
        BiasError::Raw(RawError::NotRecoverable) => Error::Protocol(
            "the queue's shared memory is corrupted (a lock word is unusable)".into(),
        ),
        BiasError::Barrier(errno) => Error::Io {
            context: "revoking the bias of a queue's lock (membarrier)".into(),
            source: errno.into(),
        },
    }
}

/// Waits on the event count at header offset `off` until `ready()`: a spin by `spin`, then
/// sleeps of at most [`SLICE`]. Returns `Err(Timeout)` once `deadline` has passed.
fn wait_on(
    ring: &Ring,
    off: usize,
    spin: Spin,
    deadline: Option<Instant>,
    ready: impl Fn() -> bool,
) -> Result<()> {
    if ring
        .event(off)
        .wait_until(spin, deadline, Some(SLICE), ready)
    {
        Ok(())
    } else {
        Err(Error::Timeout(Duration::ZERO))
    }
}

/// Where a frame of `s` bytes goes, given the ring state; `Some((pos, wrap))` where `wrap`
/// means a wrap marker must first be written at `t`.
#[inline]
fn place(t: u64, h: u64, n: u32, s: u64, cap: u64, hot: u64) -> Option<(u64, bool)> {
    if n == 0 || t > h {
        // Free: [t, cap) and [0, h). (n == 0 implies t == h.)
        let fits_here = t + s <= cap;
        let fits_start = s <= h;
        if fits_start && (!fits_here || t >= hot_end(s, hot)) {
            Some((0, true))
        } else if fits_here {
            Some((t, false))
        } else {
            None
        }
    } else if t < h && t + s <= h {
        Some((t, false))
    } else {
        None // t == h with n > 0: full
    }
}

/// One mapping of a queue's ring (one per `Queue` handle family in a process).
pub(crate) struct Ring {
    mem: RingMemory,
    fd: OwnedFd,
    cap: u64,
    maxsize: u32,
    /// Where a producer goes back to the start early ([`hot_bytes`]).
    hot: u64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.cap)
            .field("maxsize", &self.maxsize)
            .field("len", &self.len())
            .finish()
    }
}

impl Ring {
    /// A new ring of `cap` bytes holding at most `maxsize` items (0: no item limit).
    pub(crate) fn create(cap: u64, maxsize: u32) -> Result<Ring> {
        if !(4096..=MAX_CAPACITY).contains(&cap) {
            return Err(Error::InvalidArgument(format!(
                "queue capacity must be between 4 KiB and 2 GiB, not {cap} bytes"
            )));
        }
        let cap = cap / 8 * 8;
        let fd = crate::sys::mem::memfd("multiproc-queue", HEADER as u64 + cap)?;
        let map = SharedMapping::map(&fd, HEADER + cap as usize)?;
        map.atomic_u64(OFF_CAP).store(cap, Relaxed);
        map.atomic_u64(OFF_MAXSIZE).store(maxsize as u64, Relaxed);
        map.atomic_u64(OFF_MAGIC).store(MAGIC, Release);
        Ok(Ring {
            mem: RingMemory::new(map, HEADER),
            fd,
            cap,
            maxsize,
            hot: hot_bytes(),
        })
    }

    /// Maps the ring in `fd` (received from another process).
    pub(crate) fn open(fd: OwnedFd) -> Result<Ring> {
        let size = rustix::fs::fstat(&fd)
            .map_err(|e| Error::io("fstat queue memfd", e))?
            .st_size as u64;
        if size < HEADER as u64 + 4096 {
            return Err(Error::Protocol(
                "the queue's shared memory is too small".into(),
            ));
        }
        let map = SharedMapping::map(&fd, size as usize)?;
        let cap = map.atomic_u64(OFF_CAP).load(Relaxed);
        if map.atomic_u64(OFF_MAGIC).load(Acquire) != MAGIC
            || cap + HEADER as u64 != size
            || cap % 8 != 0
            || cap > MAX_CAPACITY
        {
            return Err(Error::Protocol("not a multiproc queue".into()));
        }
        let maxsize = map.atomic_u64(OFF_MAXSIZE).load(Relaxed) as u32;
        Ok(Ring {
            mem: RingMemory::new(map, HEADER),
            fd,
            cap,
            maxsize,
            hot: hot_bytes(),
        })
    }

    pub(crate) fn fd(&self) -> impl AsFd + '_ {
        &self.fd
    }

    #[inline]
    fn word(&self, off: usize) -> &AtomicU32 {
        self.mem.header_u32(off)
    }

    /// The producers' lock.
    #[inline]
    fn producer_lock(&self) -> BiasedLock<'_> {
        self.side_lock(OFF_PROD_LOCK, OFF_PROD_BIAS)
    }

    /// The consumers' lock.
    #[inline]
    fn consumer_lock(&self) -> BiasedLock<'_> {
        self.side_lock(OFF_CONS_LOCK, OFF_CONS_BIAS)
    }

    /// A side's biased lock: its lock word at `lock`, `bias` and `busy` at `bias`.
    #[inline]
    fn side_lock(&self, lock: usize, bias: usize) -> BiasedLock<'_> {
        BiasedLock::new(self.word(lock), self.word(bias), self.word(bias + 4))
    }

    /// The event count at header offset `off` (`seq`, then `sleepers`).
    #[inline]
    fn event(&self, off: usize) -> EventCount<'_> {
        EventCount::new(self.word(off), self.word(off + 4))
    }

    #[inline]
    fn word64(&self, off: usize) -> &AtomicU64 {
        self.mem.header_u64(off)
    }

    /// The frame header at ring offset `pos` (consumer side).
    fn frame_header(&self, pos: usize) -> [u8; frame::HEADER] {
        self.mem
            .with_bytes(Side::Consumer, pos, frame::HEADER, |b| {
                b.try_into().expect("a header's bytes")
            })
    }

    /// A ring position read from shared memory, checked: 8-aligned and inside the ring.
    #[inline]
    fn checked_pos(&self, pos: u64, what: &str) -> Result<u64> {
        if !pos.is_multiple_of(8) || pos >= self.cap {
            return Err(corrupted(format!("{what} {pos} is not a frame boundary")));
        }
        Ok(pos)
    }

    /// Items in the ring now (approximate under concurrency, like `qsize`).
    pub(crate) fn len(&self) -> usize {
        let (gets, _) = unpack(self.word64(OFF_C).load(Acquire));
        let (puts, _) = unpack(self.word64(OFF_P).load(Acquire));
        puts.wrapping_sub(gets) as usize
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    pub(crate) fn maxsize(&self) -> u32 {
        self.maxsize
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.word(OFF_CLOSED).load(Acquire) != 0
    }

    /// Closes the queue for everyone: puts fail, gets drain what is left.
    pub(crate) fn close(&self) {
        self.word(OFF_CLOSED).store(1, SeqCst);
        for off in [OFF_NOT_EMPTY, OFF_NOT_FULL] {
            self.event(off).notify_all();
        }
    }

    /// Where a frame of `s` bytes would go now, under the producer lock.
    fn find_space(&self, s: u64, fresh: bool) -> Result<Option<(u32, u64, u64, bool)>> {
        let (puts, t) = unpack(self.word64(OFF_P).load(Relaxed));
        let t = self.checked_pos(t, "the tail")?;
        let cached = self.word64(OFF_PROD_CACHED_C);
        let c = if fresh {
            let c = self.word64(OFF_C).load(Acquire);
            cached.store(c, Relaxed);
            c
        } else {
            cached.load(Relaxed)
        };
        let (gets, h) = unpack(c);
        let h = self.checked_pos(h, "the head")?;
        let n = puts.wrapping_sub(gets);
        if self.maxsize != 0 && n >= self.maxsize {
            return Ok(None);
        }
        Ok(place(t, h, n, s, self.cap, self.hot).map(|(pos, wrap)| (puts, t, pos, wrap)))
    }

    /// Whether a frame of `s` bytes fits now (no lock; for waiting).
    fn has_space(&self, s: u64) -> bool {
        let (puts, t) = unpack(self.word64(OFF_P).load(SeqCst));
        let (gets, h) = unpack(self.word64(OFF_C).load(SeqCst));
        let n = puts.wrapping_sub(gets);
        (self.maxsize == 0 || n < self.maxsize) && place(t, h, n, s, self.cap, self.hot).is_some()
    }

    fn has_items(&self) -> bool {
        let (puts, _) = unpack(self.word64(OFF_P).load(SeqCst));
        let (gets, _) = unpack(self.word64(OFF_C).load(SeqCst));
        puts != gets
    }

    /// The largest message (serialized) this ring takes.
    pub(crate) fn max_message(&self) -> u64 {
        self.cap - FRAME_HEAD
    }

    /// Appends `value`. Once this returns `Ok`, the item is in shared memory.
    pub(crate) fn put<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let ser_err = |e: postcard::Error| Error::Serialize {
            type_name: std::any::type_name::<T>(),
            message: crate::wire::fdctx::describe(&e),
        };
        if self.is_closed() {
            return Err(Error::Closed("the queue is closed".into()));
        }
        // Small values: one serialization into a per-thread buffer, copied into the ring
        // under the lock. Large ones: measure first, then serialize straight into the ring
        // (one copy of a big message instead of two).
        let mut scratch = Scratch::take();
        let small = match postcard::to_slice(value, &mut scratch.0[..]) {
            Ok(out) => Some(out.len()),
            Err(postcard::Error::SerializeBufferFull) => None,
            Err(e) => return Err(ser_err(e)),
        };
        // The tail expression writes the result in place; the buffer goes back after.
        self.put_encoded(value, small, &scratch.0, deadline)
    }

    fn put_encoded<T: Serialize + ?Sized>(
        &self,
        value: &T,
        small: Option<usize>,
        scratch: &[u8],
        deadline: Option<Instant>,
    ) -> Result<()> {
        let ser_err = |e: postcard::Error| Error::Serialize {
            type_name: std::any::type_name::<T>(),
            message: crate::wire::fdctx::describe(&e),
        };
        let len = match small {
            Some(n) => n as u64,
            None => postcard::experimental::serialized_size(value).map_err(ser_err)? as u64,
        };
        let s = frame_size(len);
        if s > self.cap {
            return Err(Error::InvalidArgument(format!(
                "a message of {len} bytes does not fit in a queue of {} bytes \
                 (make it larger with Queue::builder().capacity_bytes(..))",
                self.cap
            )));
        }
        loop {
            let guard = lock(self.producer_lock(), deadline)?;
            if self.is_closed() {
                return Err(Error::Closed("the queue is closed".into()));
            }
            // The cached `C` first (no cache miss on the consumers' line). A fresh one when
            // that says there is no room, and also when the frame would go past the hot
            // part: the consumers may well have freed the start by now, and going back there
            // is what keeps a busy queue inside its first `hot` bytes.
            let spot = match self.find_space(s, false)? {
                Some(spot) if spot.3 || spot.2 < hot_end(s, self.hot) => Some(spot),
                cached => self.find_space(s, true)?.or(cached),
            };
            if let Some((puts, t, pos, wrap)) = spot {
                if wrap {
                    self.mem
                        .with_bytes_mut(Side::Producer, t as usize, frame::HEADER, |b| {
                            b.copy_from_slice(&frame::WRAP_MARKER)
                        });
                }
                let frame = FRAME_HEAD as usize + len as usize;
                let written = self
                    .mem
                    .with_bytes_mut(Side::Producer, pos as usize, frame, |buf| {
                        let (head, body) = buf.split_at_mut(FRAME_HEAD as usize);
                        let n = match small {
                            Some(n) => {
                                body.copy_from_slice(&scratch[..n]);
                                n
                            }
                            None => postcard::to_slice(value, body).map(|out| out.len())?,
                        };
                        // The header last: a frame is whole before anything names it.
                        head.copy_from_slice(&frame::header(n as u32, KIND_DATA));
                        Ok(n)
                    })
                    .map_err(ser_err)?;
                if written as u64 != len {
                    return Err(Error::Serialize {
                        type_name: std::any::type_name::<T>(),
                        message: "the value serialized to a different size the second time".into(),
                    });
                }
                let mut new_t = pos + s;
                if new_t == self.cap {
                    new_t = 0;
                }
                // The commit point: one store makes the whole frame (and any wrap marker)
                // visible. `Release` is enough: `notify_all` fences (SeqCst) before it reads
                // `sleepers`, and a sleeper fences between announcing itself and its
                // re-check, so one of the two sees the other (`sys/wait.rs`).
                self.word64(OFF_P)
                    .store(pack(puts.wrapping_add(1), new_t), Release);
                drop(guard);
                self.event(OFF_NOT_EMPTY).notify_all();
                return Ok(());
            }
            drop(guard);
            self.wait_space(s, deadline)?;
        }
    }

    fn wait_space(&self, s: u64, deadline: Option<Instant>) -> Result<()> {
        // A producer that keeps the queue full would otherwise read the consumers' line
        // after every get (and each get's commit store would then miss): while it spins,
        // it waits for room for `SLACK` frames, looking less and less often. The sleep
        // after the spin waits for room for one, as `put` promises.
        let room = s.saturating_mul(SLACK).min(self.cap / 4).max(s);
        let mut backoff = Backoff::new(FULL_SPIN, deadline);
        while !(self.is_closed() || self.has_space(room)) {
            if !backoff.snooze() {
                break;
            }
        }
        wait_on(self, OFF_NOT_FULL, Spin::NONE, deadline, || {
            self.is_closed() || self.has_space(s)
        })?;
        if self.is_closed() {
            return Err(Error::Closed("the queue is closed".into()));
        }
        Ok(())
    }

    /// Decodes one item's payload, catching a panic of its `Deserialize` impl (resumed once
    /// the item is consumed: a panicking impl must not leave it stuck at the head). The
    /// value travels as `T` and one word: an `Error` is 80 bytes, and copying that nest of
    /// results through the borrow's closure was a tenth of a 64-byte item's `get`.
    #[inline]
    fn decode_caught<T: DeserializeOwned>(body: &[u8]) -> Decoded<T> {
        match std::panic::catch_unwind(|| crate::wire::codec::decode_exact::<T>(body)) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Undecodable::error(e.into())),
            Err(panic) => Err(Undecodable::panic(panic)),
        }
    }

    /// The item at `h` when it is not a data frame right there: the checked walk of
    /// `frame::next` (through a wrap marker), which names whatever is wrong. Returns where
    /// the item ends and its decoding.
    #[cold]
    fn take_unusual<T: DeserializeOwned>(&self, h: usize, t: usize) -> Result<(usize, Decoded<T>)> {
        let cap = self.cap as usize;
        // Published: `[h, t)`, or through the end when `t <= h` (`t == h` is full).
        let avail = if t > h { t - h } else { cap - h + t };
        let found = frame::next(h, cap - h, avail, cap - frame::HEADER, |off| {
            self.frame_header(off)
        })
        .map_err(|Corrupt(why)| corrupted(why))?;
        let f = found.ok_or_else(|| corrupted("items counted, no bytes published"))?;
        if f.kind != KIND_DATA {
            return Err(corrupted(format!("a frame of unknown kind {:#x}", f.kind)));
        }
        let r = self
            .mem
            .with_bytes(Side::Consumer, f.at + frame::HEADER, f.len, |b| {
                Self::decode_caught::<T>(b)
            });
        Ok((f.at + frame::size(f.len), r))
    }

    /// Removes the oldest item. `Err(Timeout)` after `deadline`; `Err(Closed)` once the
    /// queue is closed and empty.
    pub(crate) fn get<T: DeserializeOwned>(&self, deadline: Option<Instant>) -> Result<T> {
        loop {
            let guard = lock(self.consumer_lock(), deadline)?;
            let (gets, h) = unpack(self.word64(OFF_C).load(Relaxed));
            let cached = self.word64(OFF_CONS_CACHED_P);
            let mut p = cached.load(Relaxed);
            if unpack(p).0 == gets {
                p = self.word64(OFF_P).load(Acquire);
                cached.store(p, Relaxed);
            }
            let (puts, t) = unpack(p);
            if puts != gets {
                let h = self.checked_pos(h, "the head")? as usize;
                let t = self.checked_pos(t, "the tail")? as usize;
                let cap = self.cap as usize;
                // The published bytes from `h` to `t`, or to the end when `t <= h`.
                let contig = if t > h { t - h } else { cap - h };
                // The usual case, checked in three comparisons: a data frame at `h`, whole
                // inside those bytes. One borrow holds its header and payload, and the
                // result stays small (no frame record, no error text).
                let max_len = cap - frame::HEADER;
                let quick = self.mem.with_bytes(Side::Consumer, h, contig, |b| {
                    let (len, kind) = frame::parse(b.get(..frame::HEADER)?.try_into().ok()?);
                    let s = frame::size(len);
                    (kind == KIND_DATA && len <= max_len && s <= contig).then(|| {
                        let body = &b[frame::HEADER..frame::HEADER + len];
                        (h + s, Self::decode_caught::<T>(body))
                    })
                });
                // Anything else (a wrap marker, foreign bytes) takes the checked walk.
                let (end, r) = match quick {
                    Some(x) => x,
                    None => self.take_unusual::<T>(h, t)?,
                };
                let new_h = if end == cap { 0 } else { end as u64 };
                // The commit point for the consumer side (the item is ours from here);
                // `Release` as for `P` (the notify below fences).
                self.word64(OFF_C)
                    .store(pack(gets.wrapping_add(1), new_h), Release);
                drop(guard);
                self.event(OFF_NOT_FULL).notify_all();
                return r.map_err(|e| (*e).resume());
            }
            drop(guard);
            if self.is_closed() {
                // Re-check after seeing `closed`: a put may have completed just before.
                if !self.has_items() {
                    return Err(Error::Closed("the queue is closed and empty".into()));
                }
                continue;
            }
            wait_on(self, OFF_NOT_EMPTY, SPIN, deadline, || {
                self.is_closed() || self.has_items()
            })?;
        }
    }

    /// Marks one item done (`JoinableQueue::task_done`).
    pub(crate) fn task_done(&self) -> Result<()> {
        let done = self.word(OFF_DONE);
        loop {
            let d = done.load(SeqCst);
            let (puts, _) = unpack(self.word64(OFF_P).load(SeqCst));
            if d == puts {
                return Err(Error::InvalidArgument(
                    "task_done() called more times than there were items".into(),
                ));
            }
            if done
                .compare_exchange(d, d.wrapping_add(1), SeqCst, Relaxed)
                .is_ok()
            {
                if d.wrapping_add(1) == puts {
                    self.event(OFF_JOINED).notify_all();
                }
                return Ok(());
            }
        }
    }

    /// Waits until every item put has been marked done (`JoinableQueue::join`).
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<()> {
        let all_done = || {
            let d = self.word(OFF_DONE).load(SeqCst);
            let (puts, _) = unpack(self.word64(OFF_P).load(SeqCst));
            d == puts
        };
        // No spin: the items are being worked on, which takes longer than a spin.
        wait_on(self, OFF_JOINED, Spin::NONE, deadline, all_done)
    }

    /// Test hook: the two lock words, to simulate a holder that died.
    #[cfg(test)]
    pub(crate) fn lock_words(&self) -> (&AtomicU32, &AtomicU32) {
        (self.word(OFF_PROD_LOCK), self.word(OFF_CONS_LOCK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_rules() {
        let cap = 1 << 20;
        const HOT: u64 = HOT_MIN;
        // Empty at 0: write at 0.
        assert_eq!(place(0, 0, 0, 64, cap, HOT), Some((0, false)));
        // Ahead of the consumer, room at the end.
        assert_eq!(place(100, 0, 1, 64, cap, HOT), Some((100, false)));
        // Exactly to the end.
        assert_eq!(place(cap - 64, 8, 1, 64, cap, HOT), Some((cap - 64, false)));
        // No room at the end, room at the start: wrap.
        assert_eq!(place(cap - 8, 128, 1, 64, cap, HOT), Some((0, true)));
        // Neither: full.
        assert_eq!(place(cap - 8, 32, 1, 64, cap, HOT), None);
        // Wrapped: room before the head only.
        assert_eq!(place(64, 256, 3, 192, cap, HOT), Some((64, false)));
        assert_eq!(place(64, 256, 3, 200, cap, HOT), None);
        // t == h with items: full.
        assert_eq!(place(64, 64, 1, 8, cap, HOT), None);
        // Past HOT with room at the start: go back early.
        assert_eq!(place(HOT + 8, HOT, 1, 64, cap, HOT), Some((0, true)));
    }

    #[test]
    fn a_queue_drained_as_fast_as_it_is_filled_keeps_to_its_hot_bytes() {
        // Each put finds the ring empty (its last item was taken): the producer must go
        // back to the start once past `HOT`, even though its cached view of `C` is old.
        // Otherwise it walks the whole (virtual) ring, touching every page of it.
        let r = Ring::create(DEFAULT_CAPACITY, 0).unwrap();
        let msg = vec![7u8; 64];
        let frame = frame_size(postcard::to_stdvec(&msg).unwrap().len() as u64);
        let mut furthest = 0;
        // Three times through the hot part.
        for _ in 0..3 * r.hot / frame {
            r.put(&msg, None).unwrap();
            let (_, t) = unpack(r.word64(OFF_P).load(Relaxed));
            furthest = furthest.max(t);
            assert_eq!(r.get::<Vec<u8>>(None).unwrap(), msg);
        }
        assert!(furthest <= r.hot + 128, "the tail went to {furthest}");
        assert!(
            (HOT_MIN..=HOT_MAX).contains(&r.hot),
            "a hot part of {} bytes",
            r.hot
        );
        // Frames larger than the hot part: it holds `HOT_FRAMES` of them.
        let big = vec![1u8; 1 << 20];
        let s = frame_size(postcard::to_stdvec(&big).unwrap().len() as u64);
        let mut furthest = 0;
        for _ in 0..64 {
            r.put(&big, None).unwrap();
            let (_, t) = unpack(r.word64(OFF_P).load(Relaxed));
            furthest = furthest.max(t);
            assert_eq!(r.get::<Vec<u8>>(None).unwrap().len(), big.len());
        }
        assert!(
            furthest <= hot_end(s, r.hot) + s,
            "the tail went to {furthest}"
        );
    }

    #[test]
    fn dead_lock_holder_is_replaced() {
        let r = Ring::create(1 << 16, 0).unwrap();
        // A tid that cannot exist (above pid_max's hard limit of 2^22).
        r.lock_words().0.store((1 << 22) + 5, Relaxed);
        let t0 = Instant::now();
        r.put(&7u32, Some(Instant::now() + Duration::from_secs(5)))
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(r.get::<u32>(None).unwrap(), 7);
        // A live holder (this thread, via another tid of this process) is not replaced.
        r.lock_words().1.store(std::process::id(), Relaxed);
        let t0 = Instant::now();
        let e = r.get::<u32>(Some(Instant::now() + Duration::from_millis(100)));
        assert!(matches!(e, Err(Error::Timeout(_))), "{e:?}");
        assert!(t0.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_ring_lock_is_released_only_if_still_ours() {
        let r = Ring::create(1 << 16, 0).unwrap();
        let word = r.lock_words().0;
        // The first hold goes through the lock word (and biases the lock to this thread).
        let held = r.producer_lock().lock(None).unwrap();
        assert!(matches!(held, BiasedHeld::Locked(_)));
        // A waiter (wrongly) judged us dead and took the lock over: our release must not
        // undo its hold.
        let other = (1 << 22) + 9;
        word.store(other, Relaxed);
        drop(held);
        assert_eq!(word.load(Relaxed), other);
    }

    #[test]
    fn a_forked_child_that_dies_holding_a_ring_lock_is_detected() {
        let r = Ring::create(1 << 16, 0).unwrap();
        // Cache this thread's id before the fork, as a busy queue would have (and bias the
        // lock to it: the child revokes that first).
        drop(r.producer_lock().lock(None).unwrap());
        let code = crate::sys::lock::in_forked_child(|| {
            let held = r.producer_lock().lock(None).unwrap();
            let through_word = matches!(held, BiasedHeld::Locked(_));
            std::mem::forget(held);
            if through_word { 0 } else { 1 }
        });
        assert_eq!(code, 0, "the child took the parent's bias");
        let t0 = Instant::now();
        let got = r
            .producer_lock()
            .lock(Some(Instant::now() + Duration::from_secs(3)));
        assert!(
            got.is_ok(),
            "the dead child's hold was not detected: {:?}",
            got.err()
        );
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }

    /// The bias (`sys::biased_lock`): the first thread's later holds are plain stores; a
    /// second thread revokes it and waits for a hold in progress; items stay exact.
    #[test]
    fn a_side_is_biased_to_its_first_thread_until_a_second_one_comes() {
        let r = std::sync::Arc::new(Ring::create(1 << 16, 0).unwrap());
        r.put(&1u32, None).unwrap();
        let me = crate::sys::shm::current_tid();
        if !crate::sys::biased_lock::registered() {
            // A process that may not use `membarrier` never biases: every hold is the
            // lock word's, and the queue works as before.
            assert_eq!(r.producer_lock().biased_to(), None);
            let held = r.producer_lock().lock(None).unwrap();
            assert!(matches!(held, BiasedHeld::Locked(_)));
            drop(held);
            assert_eq!(r.get::<u32>(None).unwrap(), 1);
            return;
        }
        assert_eq!(r.producer_lock().biased_to(), Some(me));
        let held = r.producer_lock().lock(None).unwrap();
        assert!(
            matches!(held, BiasedHeld::Biased(..)),
            "the fast path was not taken"
        );
        // A second thread must wait while the biased hold lasts...
        let other = {
            let r = r.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                r.put(&2u32, Some(Instant::now() + Duration::from_secs(5)))
                    .unwrap();
                t0.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            r.len(),
            1,
            "the second producer did not wait for the biased hold"
        );
        drop(held);
        let waited = other.join().unwrap();
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
        // ...and then the bias is gone for good: this thread takes the word too.
        assert_eq!(r.producer_lock().biased_to(), None);
        let held = r.producer_lock().lock(None).unwrap();
        assert!(matches!(held, BiasedHeld::Locked(_)));
        drop(held);
        r.put(&3u32, None).unwrap();
        let got: Vec<u32> = (0..3).map(|_| r.get(None).unwrap()).collect();
        assert_eq!(got, [1, 2, 3]);
    }

    /// A biased thread killed inside its critical section (`busy` left at 1) holds nobody
    /// up for long: the revoker sees that it is gone.
    #[test]
    fn a_biased_holder_that_died_inside_is_detected() {
        let r = Ring::create(1 << 16, 0).unwrap();
        // A tid that cannot exist (above pid_max's hard limit of 2^22), biased and busy.
        r.word(OFF_PROD_BIAS).store((1 << 22) + 7, Relaxed);
        r.word(OFF_PROD_BIAS + 4).store(1, Relaxed);
        let t0 = Instant::now();
        r.put(&7u32, Some(Instant::now() + Duration::from_secs(5)))
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert_eq!(r.get::<u32>(None).unwrap(), 7);
        // A live biased holder (a thread id of this process: the main thread's) inside its
        // critical section is waited for, up to the deadline.
        r.word(OFF_CONS_BIAS).store(std::process::id(), Relaxed);
        r.word(OFF_CONS_BIAS + 4).store(1, Relaxed);
        r.put(&8u32, None).unwrap();
        let t0 = Instant::now();
        let e = r.get::<u32>(Some(Instant::now() + Duration::from_millis(100)));
        assert!(matches!(e, Err(Error::Timeout(_))), "{e:?}");
        assert!(t0.elapsed() >= Duration::from_millis(100));
        // Out of it: the revocation completes and the item is there.
        r.word(OFF_CONS_BIAS + 4).store(0, Release);
        assert_eq!(
            r.get::<u32>(Some(Instant::now() + Duration::from_secs(5)))
                .unwrap(),
            8
        );
    }

    #[test]
    fn wraps_and_fills_bytes() {
        let r = Ring::create(4096, 0).unwrap();
        let msg = vec![1u8; 1000];
        // 1008 + 8 header = 1016 bytes per frame: 4 fit in 4096 (with the t==h rule).
        for _ in 0..4 {
            r.put(&msg, Some(Instant::now())).unwrap();
        }
        assert!(matches!(
            r.put(&msg, Some(Instant::now())),
            Err(Error::Timeout(_))
        ));
        for round in 0..50u32 {
            let got: Vec<u8> = r.get(None).unwrap();
            let want = match round.checked_sub(4) {
                None => vec![1u8; 1000],
                Some(k) => vec![k as u8; 1000 + (k as usize % 7)],
            };
            assert_eq!(got, want, "round {round}");
            r.put(
                &vec![round as u8; 1000 + (round as usize % 7)],
                Some(Instant::now()),
            )
            .unwrap();
        }
        assert_eq!(r.len(), 4);
    }
}

#[cfg(test)]
mod untrusted_tests {
    use super::*;

    /// Writes `bytes` at ring offset `at` and sets `P`/`C` as another process could.
    fn scribble(r: &Ring, at: usize, bytes: &[u8], p: u64, c: u64) {
        r.mem.with_bytes_mut(Side::Producer, at, bytes.len(), |b| {
            b.copy_from_slice(bytes)
        });
        r.word64(OFF_P).store(p, SeqCst);
        r.word64(OFF_C).store(c, SeqCst);
        r.word64(OFF_CONS_CACHED_P).store(0, SeqCst);
    }

    #[test]
    fn a_frame_longer_than_the_published_bytes_is_corruption() {
        let r = Ring::create(1 << 16, 0).unwrap();
        // One item published, 16 bytes (a header and 8 of payload), whose header claims 400.
        let mut head = Vec::new();
        head.extend_from_slice(&400u32.to_le_bytes());
        head.extend_from_slice(&KIND_DATA.to_le_bytes());
        scribble(&r, 0, &head, pack(1, 16), pack(0, 0));
        let got = r.get::<Vec<u8>>(Some(Instant::now()));
        assert!(
            matches!(&got, Err(Error::Protocol(m)) if m.contains("overruns")),
            "{got:?}"
        );
    }

    #[test]
    fn a_whole_frame_of_a_foreign_kind_is_corruption_and_not_decoded() {
        let r = Ring::create(1 << 16, 0).unwrap();
        // A well-formed frame (8 payload bytes that would decode as a u8 and more), of a
        // kind no queue writes.
        let mut frame = frame::header(1, 0x1234).to_vec();
        frame.extend_from_slice(&[7; 8]);
        scribble(&r, 0, &frame, pack(1, 16), pack(0, 0));
        let got = r.get::<u8>(Some(Instant::now()));
        assert!(
            matches!(&got, Err(Error::Protocol(m)) if m.contains("unknown kind 0x1234")),
            "{got:?}"
        );
    }

    #[test]
    fn arbitrary_queue_ring_contents_never_panic_or_read_past_the_published_bytes() {
        const CAP: u64 = 4096;
        let r = Ring::create(CAP, 0).unwrap();
        let mut rng = crate::ring::Rng(0x0000_feed_5eed);
        let (mut items, mut corrupt) = (0, 0);
        for case in 0..5_000 {
            let mut data: Vec<u8> = (0..CAP).map(|_| rng.next() as u8).collect();
            if case % 2 == 0 {
                // Plausible headers at aligned places, so the deep paths are reached.
                for at in (0..CAP as usize).step_by(8 * (1 + rng.below(8) as usize)) {
                    let len = rng.below(if at % 16 == 0 { 64 } else { CAP }) as u32;
                    let kind = [KIND_DATA, frame::WRAP, rng.next() as u32][rng.below(3) as usize];
                    data[at..at + 8].copy_from_slice(&frame::header(len, kind));
                }
            }
            let pos = |rng: &mut crate::ring::Rng| match rng.below(4) {
                0 => rng.next() & 0xffff_ffff,
                _ => rng.below(CAP / 8) * 8,
            };
            let (h, t) = (pos(&mut rng), pos(&mut rng));
            let n = 1 + rng.below(4) as u32;
            scribble(&r, 0, &data, pack(n, t), pack(0, h));
            for _ in 0..CAP / 8 + 1 {
                match r.get::<Vec<u8>>(Some(Instant::now())) {
                    // Whatever decodes came from inside the published bytes.
                    Ok(v) => {
                        items += 1;
                        assert!(v.len() < CAP as usize);
                    }
                    Err(Error::Protocol(m)) => {
                        corrupt += 1;
                        assert!(m.contains("corrupted"), "{m}");
                        break;
                    }
                    Err(Error::WrongType { .. } | Error::Deserialize { .. }) => items += 1,
                    Err(Error::Timeout(_)) => break,
                    Err(e) => panic!("case {case}: {e:?}"),
                }
            }
        }
        assert!(items > 100 && corrupt > 1000, "{items} {corrupt}");
    }

    #[test]
    fn a_foreign_tail_is_refused_by_a_producer() {
        let r = Ring::create(1 << 16, 0).unwrap();
        scribble(&r, 0, &[0; 8], pack(0, (1 << 16) + 8), pack(0, 0));
        let got = r.put(&1u8, Some(Instant::now()));
        assert!(matches!(got, Err(Error::Protocol(_))), "{got:?}");
    }
}
