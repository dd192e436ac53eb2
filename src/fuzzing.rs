//! Entry points for the fuzz targets (`fuzz/`) and the stable property tests
//! (`tests/fuzz_props.rs`): one per decoder of bytes that come from another process or
//! from the network. Each one turns arbitrary bytes into that decoder's input (a frame, a
//! stream on a socket, a region of shared memory), calls the real decoder, and panics only
//! if the decoder broke a promise (a panic of its own, a read out of bounds, an allocation
//! past its limit, an accepted value that breaks an invariant). No decoding is done here.
//!
//! Behind the non-default `fuzzing` feature; not part of the supported API.
//!
//! ```
//! # #[cfg(feature = "fuzzing")] {
//! let t = multiproc::fuzzing::codec(&[0, 0x80, 0x04, b'.']);
//! assert_eq!(t.ok + t.refused, 1);
//! # }
//! ```

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, TaskError};

/// What one call decoded: items accepted and inputs refused with a typed error (for the
/// property tests, which check that both kinds of path are reached).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Values, frames or handles the decoder accepted.
    pub ok: usize,
    /// Inputs it refused with an error.
    pub refused: usize,
}

impl Tally {
    fn count<T, E>(&mut self, r: &std::result::Result<T, E>) {
        match r {
            Ok(_) => self.ok += 1,
            Err(_) => self.refused += 1,
        }
    }
}

/// Reads an input front to back; past its end every read is zeros, so any input is a
/// complete description.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let b = self.take(N);
        out[..b.len()].copy_from_slice(b);
        out
    }
    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// The message types the value decoders are asked for: scalars, strings, options, enums,
/// sequences and maps, so every postcard shape is reached.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Shape {
    Unit,
    Num(i64, f64),
    Text { name: String, tags: Vec<String> },
    Nested(Option<Box<Shape>>, Vec<(u16, Vec<u8>)>),
    Map(std::collections::BTreeMap<String, u32>),
}

// ---- the process pool's result ring -------------------------------------------------

/// A pool ring in a heap buffer: the counters at the ring's header offsets, and the data
/// area, every access bounds-checked (an out-of-range read panics, which is a finding).
struct HeapRing {
    head: AtomicU64,
    tail: AtomicU64,
    data: Mutex<Vec<u8>>,
}

impl HeapRing {
    fn counter(&self, off: usize) -> &AtomicU64 {
        match off {
            0 => &self.head,
            64 => &self.tail,
            _ => panic!("the ring touched header offset {off}, which holds no counter"),
        }
    }
    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn data_off(off: usize) -> usize {
        off.checked_sub(crate::ring::spsc::RING_HEADER)
            .expect("the ring read its header as data")
    }
}

impl crate::ring::spsc::FrameMemory for HeapRing {
    fn load(&self, off: usize, order: Ordering) -> u64 {
        self.counter(off).load(order)
    }
    fn store(&self, off: usize, v: u64, order: Ordering) {
        self.counter(off).store(v, order)
    }
    fn write(&self, off: usize, src: &[u8]) {
        let at = Self::data_off(off);
        self.bytes()[at..at + src.len()].copy_from_slice(src);
    }
    fn load_word(&self, off: usize, _: Ordering) -> u64 {
        let at = Self::data_off(off);
        u64::from_ne_bytes(self.bytes()[at..at + 8].try_into().expect("8 bytes"))
    }
    fn store_word(&self, off: usize, v: u64, _: Ordering) {
        let at = Self::data_off(off);
        self.bytes()[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn read_into_vec(&self, off: usize, len: usize, dst: &mut Vec<u8>) {
        let at = Self::data_off(off);
        dst.extend_from_slice(&self.bytes()[at..at + len]);
    }
}

/// The dispatcher's read of a worker's result ring (`process_pool::ring::Ring::try_pop`):
/// `head` (u64), `tail` (u64: the producer's, which the consumer never reads), a capacity
/// choice (u8), then the data area (zero-padded). Every frame popped is checked to lie
/// inside the data area (`HeapRing` panics on any access outside it), within the payload
/// limit, and of a kind a producer publishes.
pub fn pool_ring(bytes: &[u8]) -> Tally {
    use crate::ring::{frame::Corrupt, spsc::Ring};
    let mut input = Input(bytes);
    let (head, tail) = (input.u64(), input.u64());
    let cap = 64usize << (input.u8() % 7);
    let mut data = input.take(cap).to_vec();
    data.resize(cap, 0);
    let mem = Arc::new(HeapRing {
        head: AtomicU64::new(head),
        tail: AtomicU64::new(tail),
        data: Mutex::new(data),
    });
    let ring = Ring::new(mem.clone(), 0, cap);
    let mut tally = Tally::default();
    let mut out = Vec::new();
    // A ring's worth of pops: each consumes at least 8 bytes.
    for _ in 0..cap / 8 + 1 {
        let before = mem.head.load(Ordering::Relaxed);
        match ring.try_pop(&mut out) {
            Ok(Some(kind)) => {
                tally.ok += 1;
                let after = mem.head.load(Ordering::Relaxed);
                assert!(out.len() <= ring.max_payload(), "payload past the limit");
                assert!(
                    kind != 0 && kind != crate::ring::frame::WRAP,
                    "kind {kind:#x}"
                );
                assert!(
                    (8..=cap as u64).contains(&after.wrapping_sub(before)),
                    "a pop moved the head by {} bytes in a ring of {cap}",
                    after.wrapping_sub(before)
                );
            }
            Ok(None) => break,
            Err(Corrupt(why)) => {
                assert!(!why.is_empty());
                assert_eq!(
                    mem.head.load(Ordering::Relaxed),
                    before,
                    "a refused frame moved the head"
                );
                tally.refused += 1;
                break;
            }
        }
    }
    tally
}

// ---- the process pool's result frames -----------------------------------------------

/// One frame from a worker's result ring, as the dispatcher decodes it
/// (`layout::decode_result_frame`), then its inline outcomes as a job's sink decodes them
/// (`sink::decode`). Input: a kind choice (u8; 4 is a raw u32 kind next), then the payload.
pub fn pool_frames(bytes: &[u8]) -> Tally {
    use crate::process_pool::layout::{
        Body, K_INIT_FAILED, K_RESULTS, MAX_OOB, OOB, WorkerFrame, decode_result_frame,
    };
    let mut input = Input(bytes);
    let kind = match input.u8() % 5 {
        0 => K_RESULTS,
        1 => K_RESULTS | OOB,
        2 => K_INIT_FAILED,
        3 => K_INIT_FAILED | OOB,
        _ => input.u32(),
    };
    let payload = input.rest();
    let mut tally = Tally::default();
    match decode_result_frame(kind, payload) {
        Ok(WorkerFrame::Results {
            count, first, body, ..
        }) => {
            tally.ok += 1;
            assert!(count >= 1);
            match body {
                Body::Inline(b) => {
                    assert!(b.len() >= count, "fewer bytes than outcomes");
                    let typed = crate::process_pool::sink::decode::<Shape>(first, count, b, true);
                    let plain = crate::process_pool::sink::decode::<u32>(first, count, b, false);
                    assert_eq!((typed.len(), plain.len()), (count, count));
                    for r in &typed {
                        tally.count(r);
                    }
                    for (i, r) in typed.iter().enumerate() {
                        if let Err(e) = r {
                            // Indexed decoding names the item it failed.
                            assert_eq!(e.index(), Some(first + i), "{e:?}");
                        }
                    }
                }
                Body::OutOfBand(n) => assert!(n <= MAX_OOB && n >= count as u64),
            }
        }
        Ok(WorkerFrame::InitFailed(body)) => {
            tally.ok += 1;
            match body {
                Body::Inline(b) => tally.count(&postcard::from_bytes::<TaskError>(b)),
                Body::OutOfBand(n) => assert!(n <= MAX_OOB),
            }
        }
        Err(why) => {
            assert!(!why.is_empty());
            tally.refused += 1;
        }
    }
    tally
}

// ---- the queue ring -----------------------------------------------------------------

/// A [`Queue`](crate::Queue)'s ring received from another process (`ipc::ring::Ring::open`,
/// then `get`): the region is built in a memfd from the input, then opened and drained.
///
/// Input: flags (u8: bit 0 takes magic and capacity from the input, else they are right;
/// bits 1-6 pick the capacity; bit 7 takes the side locks' bias words from the input, else
/// they are 0), `P`, `C`, the consumer's cached `P` (u64 each), the two lock words and
/// `closed` (u32 each), `maxsize` (u64), [the producer's and the consumer's `bias` and
/// `busy` (u32 each)], [magic, capacity (u64 each)], then the data area.
pub fn queue_ring(bytes: &[u8]) -> Tally {
    use crate::ring::mpmc::{self as ring, HEADER, MAGIC};
    let mut input = Input(bytes);
    let flags = input.u8();
    let cap = 4096u64 << (((flags & 0x7f) >> 1) % 3);
    let mut header = vec![0u8; HEADER];
    let mut put = |off: usize, v: &[u8]| header[off..off + v.len()].copy_from_slice(v);
    put(ring::OFF_P, &input.array::<8>());
    put(ring::OFF_C, &input.array::<8>());
    put(ring::OFF_CONS_CACHED_P, &input.array::<8>());
    put(ring::OFF_PROD_LOCK, &input.array::<4>());
    put(ring::OFF_CONS_LOCK, &input.array::<4>());
    put(ring::OFF_CLOSED, &input.array::<4>());
    put(ring::OFF_MAXSIZE, &input.array::<8>());
    if flags & 0x80 != 0 {
        for side in [ring::OFF_PROD_BIAS, ring::OFF_CONS_BIAS] {
            put(side, &input.array::<4>());
            put(side + 4, &input.array::<4>());
        }
    }
    if flags & 1 != 0 {
        put(ring::OFF_MAGIC, &input.array::<8>());
        put(ring::OFF_CAP, &input.array::<8>());
    } else {
        put(ring::OFF_MAGIC, &MAGIC.to_le_bytes());
        put(ring::OFF_CAP, &cap.to_le_bytes());
    }
    let data = input.take(cap as usize);
    let fd = memfd_with(&[&header, data], HEADER as u64 + cap);
    let mut tally = Tally::default();
    let r = match ring::Ring::open(fd) {
        Ok(r) => r,
        Err(e) => {
            assert!(matches!(e, Error::Protocol(_)), "{e:?}");
            tally.refused += 1;
            return tally;
        }
    };
    // Each successful get consumes an item count, and the counts are 32-bit: bound it.
    for i in 0..64 {
        let deadline = Some(Instant::now());
        let got = if i % 2 == 0 {
            r.get::<Shape>(deadline).map(drop)
        } else {
            r.get::<Vec<u8>>(deadline).map(drop)
        };
        match got {
            Ok(()) => tally.ok += 1,
            // Refused content, or nothing (more) to take: both end the drain.
            Err(Error::Timeout(_) | Error::Closed(_)) => break,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                tally.refused += 1;
                if matches!(e, Error::Protocol(_)) {
                    break;
                }
            }
        }
    }
    tally
}

fn memfd_with(parts: &[&[u8]], size: u64) -> OwnedFd {
    let fd = crate::sys::mem::memfd("multiproc-fuzz", size).expect("memfd");
    let mut f = std::fs::File::from(fd);
    for p in parts {
        f.write_all(p).expect("write memfd");
    }
    OwnedFd::from(f)
}

// ---- connections --------------------------------------------------------------------

/// The most input the socket-based targets send (all of it fits in a socket buffer, so
/// nothing waits for a reader).
const STREAM_MAX: usize = 64 << 10;

/// A [`Connection`](crate::Connection) whose peer sent `stream` and then shut down its
/// writing side; the peer socket is returned so that replies have somewhere to go.
fn connection_fed(stream: &[u8], max_message: usize) -> (crate::Connection, UnixStream) {
    let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
    theirs
        .write_all(&stream[..stream.len().min(STREAM_MAX)])
        .expect("socket write");
    theirs
        .shutdown(std::net::Shutdown::Write)
        .expect("socket shutdown");
    let c = crate::Connection::from_fd(OwnedFd::from(ours), true, true, max_message);
    (c, theirs)
}

/// A connection's framing and message decoding (`Connection::recv_bytes`, `recv`): the
/// input is what the peer wrote (after a choice of message limit, u8). Messages are read
/// until the stream ends or breaks; each is checked against the limit.
pub fn connection(bytes: &[u8]) -> Tally {
    let mut input = Input(bytes);
    let how = input.u8();
    let max = [256, 70 << 10, crate::connection::DEFAULT_MAX_MESSAGE][how as usize % 3];
    let (c, _peer) = connection_fed(input.rest(), max);
    let mut tally = Tally::default();
    for i in 0.. {
        let r = match (how as usize / 3 + i) % 3 {
            0 => c.recv_bytes().map(|m| assert!(m.len() <= max)),
            1 => c.recv::<Shape>().map(drop),
            _ => c.recv::<(u64, String)>().map(drop),
        };
        match r {
            Ok(()) => tally.ok += 1,
            Err(Error::Closed(_)) => break,
            Err(e @ Error::Protocol(_)) => {
                tally.refused += 1;
                // A stream that lost its framing stays broken.
                assert!(matches!(c.recv_bytes(), Err(Error::Protocol(_))), "{e}");
                break;
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::WrongType { .. } | Error::Deserialize { .. }),
                    "{e:?}"
                );
                tally.refused += 1;
            }
        }
    }
    tally
}

/// The authentication handshake (`auth::answer_challenge` and `auth::deliver_challenge`,
/// CPython's): a choice of side (u8), then everything the peer sends. Only a correct digest
/// of the key may be welcomed, and a bad message is an `AuthenticationFailed`.
pub fn handshake(bytes: &[u8]) -> Tally {
    let mut input = Input(bytes);
    let side = input.u8();
    let (c, _peer) = connection_fed(input.rest(), crate::connection::DEFAULT_MAX_MESSAGE);
    let key = b"fuzzing key";
    let deadline = Instant::now() + Duration::from_secs(2);
    let r = if side % 2 == 0 {
        crate::ipc::auth::answer_challenge(&c, key, deadline)
    } else {
        // The challenge is random: the peer cannot answer it from fixed bytes.
        let r = crate::ipc::auth::deliver_challenge(&c, key, deadline);
        assert!(r.is_err(), "a peer answered a random challenge blind");
        r
    };
    if let Err(e) = &r {
        assert!(
            matches!(e, Error::AuthenticationFailed(_) | Error::Closed(_)),
            "{e:?}"
        );
    }
    let mut tally = Tally::default();
    tally.count(&r);
    tally
}

// ---- values ---------------------------------------------------------------------------

/// Exact decoding of a message as one value (`codec::decode_exact`, with its pickle
/// detection): a type choice (u8), then the message.
pub fn codec(bytes: &[u8]) -> Tally {
    use crate::wire::codec::decode_exact;
    let mut input = Input(bytes);
    let which = input.u8();
    let msg = input.rest();
    fn run<T: serde::de::DeserializeOwned>(msg: &[u8]) -> std::result::Result<(), Error> {
        decode_exact::<T>(msg).map(drop).map_err(|e| {
            let t = e.clone().into_task_error(Some(1));
            assert!(!t.to_string().is_empty());
            Error::from(e)
        })
    }
    let r = match which % 6 {
        0 => run::<u64>(msg),
        1 => run::<String>(msg),
        2 => run::<Vec<u8>>(msg),
        3 => run::<Shape>(msg),
        4 => run::<TaskError>(msg),
        _ => run::<(Option<u8>, Vec<Shape>, char)>(msg),
    };
    if let Err(e) = &r {
        assert!(
            matches!(e, Error::WrongType { .. } | Error::Deserialize { .. }),
            "{e:?}"
        );
        assert!(!e.to_string().is_empty());
    }
    let mut tally = Tally::default();
    tally.count(&r);
    tally
}

/// A pickle from a Python peer (`Connection::recv_pickle`'s `unpickle`): a type choice
/// (u8), then the pickle. Unpickling never runs code, so anything that is not plain data
/// is a `Deserialize` error.
pub fn pickle(bytes: &[u8]) -> Tally {
    use crate::ipc::pickle::unpickle;
    let mut input = Input(bytes);
    let which = input.u8();
    let msg = input.rest();
    let r = match which % 4 {
        0 => unpickle::<serde_pickle::Value>(msg).map(drop),
        1 => unpickle::<(i64, String, Option<f64>)>(msg).map(drop),
        2 => unpickle::<std::collections::HashMap<String, Vec<i32>>>(msg).map(drop),
        _ => unpickle::<Shape>(msg).map(drop),
    };
    if let Err(e) = &r {
        assert!(matches!(e, Error::Deserialize { .. }), "{e:?}");
    }
    let mut tally = Tally::default();
    tally.count(&r);
    tally
}

// ---- the manager --------------------------------------------------------------------

/// The manager's messages (`manager::protocol`): a choice (u8) of what is decoded — a
/// client's hello or request as the server reads them, or the server's welcome or
/// response as a client reads them (with the client's decoding of the values in it).
pub fn manager(bytes: &[u8]) -> Tally {
    use crate::manager::client::{decode_all, decode_maybe, decode_one};
    use crate::manager::protocol::{Hello, Request, Response, Welcome};
    let mut input = Input(bytes);
    let which = input.u8();
    let msg = input.rest();
    let mut tally = Tally::default();
    match which % 4 {
        0 => tally.count(&postcard::from_bytes::<Hello>(msg)),
        1 => tally.count(&postcard::from_bytes::<Welcome>(msg)),
        2 => tally.count(&postcard::from_bytes::<Request<'_>>(msg)),
        _ => match postcard::from_bytes::<Response<'_>>(msg) {
            Ok(r) => {
                tally.ok += 1;
                // What a client does with each kind of answer.
                let r = match r {
                    Response::Err(w) => Err(w.into_error("fuzz")),
                    r @ Response::Blob(_) => decode_one::<Shape>(r).map(drop),
                    r @ Response::MaybeBlob(_) => decode_maybe::<String>(r).map(drop),
                    r @ Response::Blobs(_) => decode_all::<Shape>(r).map(drop),
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    assert!(!e.to_string().is_empty());
                }
            }
            Err(_) => tally.refused += 1,
        },
    }
    tally
}

// ---- MPI ------------------------------------------------------------------------------

/// The messages MPI ranks exchange (`mpi::wire`): a choice (u8) of message, then the frame.
#[cfg(feature = "mpi")]
pub fn mpi_wire(bytes: &[u8]) -> Tally {
    use crate::mpi::wire::{Down, Hello, Ready, Start, Up, offsets_valid, unframe};
    let mut input = Input(bytes);
    let which = input.u8();
    let frame = input.rest();
    let mut tally = Tally::default();
    let ok = match which % 5 {
        0 => unframe::<Hello>(frame).is_some(),
        1 => unframe::<Start>(frame).is_some(),
        2 => unframe::<Ready>(frame).is_some(),
        3 => match unframe::<Down>(frame) {
            Some((Down::Job { offsets, .. }, payload)) => {
                if offsets_valid(&offsets, payload.len()) {
                    // What a serving rank then does: item i is offsets[i]..offsets[i + 1]
                    // (the last runs to the end), all in bounds.
                    for (i, &o) in offsets.iter().enumerate() {
                        let end = offsets.get(i + 1).map_or(payload.len(), |&e| e as usize);
                        assert!(payload.get(o as usize..end).is_some());
                    }
                }
                true
            }
            other => other.is_some(),
        },
        _ => match unframe::<Up>(frame) {
            Some((Up::Results { first, count, .. }, payload)) => {
                // The root decodes only a count it is waiting for; the property decoded
                // here is that a count gives that many outcomes whatever the bytes.
                let count = (count as usize).min(payload.len() + 1);
                let out = crate::process_pool::sink::decode::<Shape>(
                    first as usize,
                    count,
                    payload,
                    true,
                );
                assert_eq!(out.len(), count);
                true
            }
            other => other.is_some(),
        },
    };
    if ok {
        tally.ok += 1;
    } else {
        tally.refused += 1;
    }
    tally
}

// ---- shared-memory headers ----------------------------------------------------------

/// A shared-memory handle received from another process, whose segment that process
/// wrote: [`Value`](crate::Value), [`Array`](crate::Array) and every synchronization
/// primitive check the header when they attach, then one operation (with a zero timeout:
/// the words may name a live holder) must not panic or read past the segment.
///
/// Input: a kind (u8), flags (u8: bit 0 writes the right magic and kind in the cell's
/// header, bit 3 a lock's in the next cell; bits 1-2 attach at offset 0, at 64, or at a raw
/// offset, u32, next), the segment's size less 1 (u16, at most 4 KiB), then its bytes
/// (zero-padded).
pub fn shm_header(bytes: &[u8]) -> Tally {
    let mut input = Input(bytes);
    let which = input.u8() % 9;
    let flags = input.u8();
    let off = match flags >> 1 & 3 {
        0 => 0,
        1 => 64,
        _ => input.u32(),
    };
    let size = (u16::from_le_bytes(input.array()) as usize % 4096) + 1;
    let mut data = input.take(size).to_vec();
    data.resize(size, 0);
    let mut stamp = |at: usize, kind: u32| {
        if let Some(cell) = data.get_mut(at..at + 8) {
            crate::sync::stamp_header(cell, kind);
        }
    };
    // `Kind`'s numbers, in the order of the match below.
    if flags & 1 != 0 {
        stamp(off as usize, which as u32 + 1);
    }
    if flags & 8 != 0 {
        stamp(off as usize + 64, 1);
    }
    let seg = crate::SharedMemory::create(size).expect("shared memory");
    seg.write_at(0, &data).expect("write segment");
    // The handle as it crosses a process boundary: the segment's name and the offset (a
    // condition sends its lock's too: the cell after it).
    let cell = (seg.name(), off);
    let handle = if which == 5 {
        postcard::to_stdvec(&((seg.name(), off.wrapping_add(64)), cell))
    } else {
        postcard::to_stdvec(&cell)
    }
    .expect("encode handle");
    let zero = Duration::ZERO;
    let mut tally = Tally::default();
    fn attach<T: serde::de::DeserializeOwned>(h: &[u8]) -> std::result::Result<T, String> {
        crate::wire::codec::decode_exact::<T>(h).map_err(|e| Error::from(e).to_string())
    }
    macro_rules! with {
        ($t:ty, |$v:ident| $op:expr) => {{
            let r = attach::<$t>(&handle);
            tally.count(&r);
            if let Ok($v) = r {
                let _ = $op;
            }
        }};
    }
    match which {
        0 => with!(crate::Lock, |l| l.acquire_timeout(zero).is_ok()),
        1 => with!(crate::RLock, |l| l.acquire_timeout(zero).is_ok()),
        2 => with!(crate::Semaphore, |s| (
            s.acquire_timeout(zero).is_some(),
            s.get_value()
        )),
        3 => with!(crate::BoundedSemaphore, |s| (
            s.acquire_timeout(zero).is_some(),
            s.release().is_ok()
        )),
        4 => with!(crate::Event, |e| e.wait_timeout(zero)),
        5 => with!(crate::Condition, |c| c
            .lock()
            .acquire_timeout(zero)
            .map(|g| c.wait_timeout(g, zero).is_ok())),
        6 => with!(crate::Barrier, |b| (
            b.parties(),
            b.n_waiting(),
            b.wait_timeout(zero).is_ok()
        )),
        7 => with!(crate::Value<u64>, |v| v.lock_timeout(zero).map(|g| *g)),
        _ => with!(crate::Array<u32>, |a| a
            .lock_timeout(zero)
            .map(|g| g.iter().copied().fold(0u32, u32::wrapping_add))),
    }
    tally
}

/// The owner registry of shared-memory segments (`shm::registry`): files other processes
/// of this user wrote in `/dev/shm`, and segment names there, parsed as text.
pub fn shm_registry(bytes: &[u8]) -> Tally {
    use crate::shm::registry::{Entry, owner_of, parse};
    let text = String::from_utf8_lossy(bytes);
    let mut tally = Tally::default();
    for (name, entry) in parse(&text) {
        tally.ok += 1;
        // Every entry came from a line `<head> <name>` of the text.
        assert!(text.contains(name));
        if let Entry::Owned(ino) = entry {
            assert!(text.contains(&ino.to_string()));
        }
    }
    for name in text.split(['\n', '/', ' ']) {
        match owner_of(name) {
            Some((pid, _start)) => {
                assert!(name.starts_with("mp-") && name.contains(&pid.to_string()));
                tally.ok += 1
            }
            None => tally.refused += 1,
        }
    }
    tally
}
