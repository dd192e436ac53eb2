//! The `Executor` trait shared by every pool, and the machinery behind `map` and `imap`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, TaskError};
use crate::future::TaskFuture;
use crate::sys::Spin;
use crate::sys::wait::Backoff;

/// A map's collector waiting for the next batch while results stream: 100 hints, then
/// yields, 2,000 rounds and 2 ms at most (`sys::wait`), then the condition variable.
const COLLECT_SPIN: Spin = Spin {
    spins: 100,
    rounds: 2000,
    grow: false,
};

/// Where finished results of one `map`/`imap` call gather until the caller takes them.
///
/// Results arrive in batches (a chunk, or part of one) of consecutive indices.
#[doc(hidden)]
pub struct MapState<R> {
    inner: Mutex<MapInner<R>>,
    cv: Condvar,
    cancelled: AtomicBool,
    ordered: bool,
    /// Batches delivered so far: lets the consumer spin briefly without the lock. On a
    /// cache line of its own: the consumer's spin reads it, and sharing the lock's line
    /// made every delivery's lock and unlock wait for that line to come back (the lock
    /// was most of the dispatcher's time in a map of chunk size 1).
    delivered: crossbeam_utils::CachePadded<AtomicUsize>,
}

impl<R> std::fmt::Debug for MapState<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapState")
            .field("ordered", &self.ordered)
            .field("delivered", &self.delivered)
            .field("cancelled", &self.cancelled)
            .finish_non_exhaustive()
    }
}

/// Decodes the next encoded outcome of item `index` from the front of the bytes, advancing
/// past it (see `process_pool::sink`).
pub(crate) type DecodeOne<R> = fn(usize, &mut &[u8]) -> Result<R, TaskError>;

/// Decodes the outcomes of `count` items from `index` into `out` while they are values;
/// returns the first error instead (what `map` wants: no `Result` per item on the way).
pub(crate) type DecodeInto<R> = fn(usize, usize, &[u8], &mut Vec<R>) -> Result<(), TaskError>;

/// How a process pool's batch is decoded: one item at a time, or all into a `Vec`.
pub(crate) struct Decoders<R> {
    pub(crate) one: DecodeOne<R>,
    pub(crate) into: DecodeInto<R>,
}

impl<R> Clone for Decoders<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Decoders<R> {}

/// One delivery of the outcomes of consecutive items: values already (a thread pool), or
/// still the bytes a worker wrote, decoded one by one as the caller takes them. Decoding
/// there, not on the dispatcher thread, costs the map one pass over the outcomes instead
/// of three (decode into a `Vec`, hand it over, move each out) and leaves the dispatcher
/// free to feed the workers.
pub(crate) enum Batch<R> {
    Values(std::vec::IntoIter<Result<R, TaskError>>),
    Encoded(Encoded<R>),
}

/// The bytes of a [`Batch`] not yet decoded.
pub(crate) struct Encoded<R> {
    /// Index of the next item, and how many are left.
    index: usize,
    left: usize,
    bytes: Vec<u8>,
    /// Where in `bytes` the next item starts.
    at: usize,
    /// Where each later part begins: its first item's index and first byte. The parts are
    /// the frames of a dispatcher round, perhaps from different workers, so an outcome
    /// whose length cannot be trusted stops only its own part: an item's bytes end where
    /// its part does.
    parts: VecDeque<(usize, usize)>,
    decode: Decoders<R>,
}

impl<R> Encoded<R> {
    /// The bytes left in the current part.
    fn rest(&self) -> &[u8] {
        let end = self.parts.front().map_or(self.bytes.len(), |&(_, at)| at);
        self.bytes.get(self.at..end).unwrap_or_default()
    }

    /// Items left in the current part.
    fn part_len(&self) -> usize {
        self.parts
            .front()
            .map_or(self.left, |&(first, _)| first - self.index)
    }

    /// Moves on to the next part once the current one's items are taken.
    fn next_part(&mut self) {
        if let Some(&(first, at)) = self.parts.front()
            && first == self.index
        {
            self.at = at;
            self.parts.pop_front();
        }
    }
}

impl<R> Batch<R> {
    /// The encoded outcomes of `count` items from `start` (`decode` reads each).
    pub(crate) fn encoded(start: usize, count: usize, bytes: Vec<u8>, decode: Decoders<R>) -> Self {
        Self::encoded_parts(start, count, bytes, VecDeque::new(), decode)
    }

    /// As [`encoded`](Self::encoded), the bytes made of parts (see [`Encoded::parts`]).
    pub(crate) fn encoded_parts(
        start: usize,
        count: usize,
        bytes: Vec<u8>,
        parts: VecDeque<(usize, usize)>,
        decode: Decoders<R>,
    ) -> Self {
        Batch::Encoded(Encoded {
            index: start,
            left: count,
            bytes,
            at: 0,
            parts,
            decode,
        })
    }

    /// Items left in the batch.
    pub(crate) fn len(&self) -> usize {
        match self {
            Batch::Values(v) => v.len(),
            Batch::Encoded(e) => e.left,
        }
    }

    /// Moves every value into `out`, or stops at the first error and returns it.
    pub(crate) fn drain_into(self, out: &mut Vec<R>) -> Result<(), TaskError> {
        match self {
            Batch::Values(v) => {
                for r in v {
                    out.push(r?);
                }
                Ok(())
            }
            Batch::Encoded(mut e) => loop {
                let n = e.part_len();
                (e.decode.into)(e.index, n, e.rest(), out)?;
                e.index += n;
                e.left -= n;
                if e.left == 0 {
                    return Ok(());
                }
                e.next_part();
            },
        }
    }
}

impl<R> Iterator for Batch<R> {
    type Item = Result<R, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Result<R, TaskError>> {
        let e = match self {
            Batch::Values(v) => return v.next(),
            Batch::Encoded(e) => e,
        };
        if e.left == 0 {
            return None;
        }
        e.next_part();
        let mut rest = e.rest();
        let before = rest.len();
        let r = (e.decode.one)(e.index, &mut rest);
        e.at += before - rest.len();
        e.index += 1;
        e.left -= 1;
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

struct MapInner<R> {
    /// Ordered mode: batches by first index.
    by_index: BTreeMap<usize, Batch<R>>,
    /// Unordered mode: batches in completion order.
    fifo: VecDeque<(usize, Batch<R>)>,
    waiting: bool,
    /// When the consumer last began to wait: spinning only pays while results stream in,
    /// that is while it waits again moments after its last wait.
    last: Option<std::time::Instant>,
}

impl<R> MapState<R> {
    pub(crate) fn new(ordered: bool) -> Arc<MapState<R>> {
        Arc::new(MapState {
            inner: Mutex::new(MapInner {
                by_index: BTreeMap::new(),
                fifo: VecDeque::new(),
                waiting: false,
                last: None,
            }),
            cv: Condvar::new(),
            cancelled: AtomicBool::new(false),
            ordered,
            delivered: crossbeam_utils::CachePadded::new(AtomicUsize::new(0)),
        })
    }

    /// Hands over the results of items `start..start + results.len()`.
    pub(crate) fn deliver(&self, start: usize, results: Vec<Result<R, TaskError>>) {
        self.deliver_batch(start, Batch::Values(results.into_iter()));
    }

    /// Hands over the outcomes of items `start..start + results.len()`.
    pub(crate) fn deliver_batch(&self, start: usize, results: Batch<R>) {
        self.deliver_batches([(start, results)]);
    }

    /// Hands over several batches (each with its first index) under one lock: the lock's
    /// line and `delivered`'s, which the consumer has just read, are each one cache miss
    /// however many come (a dispatcher round's, from every worker).
    pub(crate) fn deliver_batches(&self, batches: impl IntoIterator<Item = (usize, Batch<R>)>) {
        let mut g = self.inner.lock().unwrap();
        let mut any = false;
        for (start, results) in batches {
            if results.len() == 0 {
                continue;
            }
            any = true;
            if self.ordered {
                g.by_index.insert(start, results);
            } else {
                g.fifo.push_back((start, results));
            }
        }
        if !any {
            return;
        }
        self.delivered.fetch_add(1, Ordering::Release);
        if g.waiting {
            g.waiting = false;
            drop(g);
            self.cv.notify_one();
        }
    }

    /// Whether the consumer gave up (remaining items need not run).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Blocks until the batch starting at `next` (ordered) or any batch (unordered) is in.
    pub(crate) fn take(&self, next: usize) -> (usize, Batch<R>) {
        let mut g = self.inner.lock().unwrap();
        // One spin per sleep: it goes on across batches that arrive while it lasts.
        let (mut backoff, mut spent) = (Backoff::new(COLLECT_SPIN, None), false);
        loop {
            if self.ordered {
                if let Some(b) = g.by_index.remove(&next) {
                    return (next, b);
                }
            } else if let Some(b) = g.fifo.pop_front() {
                return b;
            }
            // A short bounded spin first: a cross-CPU wake-up costs tens of µs, more than
            // the next batch usually takes to arrive while a map is streaming.
            // The clock is read here, once per wait, not at each delivery: in a map of
            // small tasks the dispatcher's clock read per delivered batch was a cost of
            // every task.
            let now = std::time::Instant::now();
            let streaming = g
                .last
                .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_micros(500));
            g.last = Some(now);
            if streaming && !spent {
                let seen = self.delivered.load(Ordering::Acquire);
                drop(g);
                while self.delivered.load(Ordering::Acquire) == seen {
                    if !backoff.snooze() {
                        spent = true;
                        break;
                    }
                }
                // Look again under the lock either way: a batch may have landed since.
                g = self.inner.lock().unwrap();
                continue;
            }
            g.waiting = true;
            g = self.cv.wait(g).unwrap();
            (backoff, spent) = (Backoff::new(COLLECT_SPIN, None), false);
        }
    }
}

/// Sends one chunk of items (with the index of the first) to the pool, results to go into
/// the given state. Type-erased so [`Imap`] does not depend on the pool type.
pub(crate) type Feeder<'a, R> = Box<dyn FnMut(usize, &Arc<MapState<R>>) -> usize + 'a>;

/// The lazy iterator of `imap` and `imap_unordered`: yields each task's outcome, in input
/// order (`imap`) or as they finish (`imap_unordered`). At most a bounded number of items
/// is in flight, so memory does not grow with the input. Dropping it cancels what has not
/// started.
pub struct Imap<'a, R> {
    feeder: Feeder<'a, R>,
    state: Arc<MapState<R>>,
    chunksize: usize,
    window: usize,
    submitted: usize,
    yielded: usize,
    next: usize,
    exhausted: bool,
    /// The batch being yielded.
    local: Batch<R>,
    bar: Option<indicatif::ProgressBar>,
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("chunksize", &self.chunksize)
            .field("window", &self.window)
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .field("exhausted", &self.exhausted)
            .finish_non_exhaustive()
    }
}

impl<'a, R> Imap<'a, R> {
    pub(crate) fn new(
        feeder: Feeder<'a, R>,
        ordered: bool,
        chunksize: usize,
        workers: usize,
        total: Option<usize>,
        progress: bool,
    ) -> Imap<'a, R> {
        let chunksize = chunksize.max(1);
        // Enough in flight to keep every worker busy while results travel back; bounded so
        // memory does not grow with the input.
        let window = (chunksize * 8 * workers.max(1)).max(2048);
        let bar = progress.then(|| crate::progress::bar(total));
        Imap {
            feeder,
            state: MapState::new(ordered),
            chunksize,
            window,
            submitted: 0,
            yielded: 0,
            next: 0,
            exhausted: false,
            local: Batch::Values(Vec::new().into_iter()),
            bar,
        }
    }

    fn fill(&mut self) {
        while !self.exhausted
            && self.submitted - self.yielded + self.chunksize <= self.window.max(self.chunksize)
        {
            let n = (self.feeder)(self.submitted, &self.state);
            if n == 0 {
                self.exhausted = true;
            }
            self.submitted += n;
        }
    }
}

impl<R> Imap<'_, R> {
    /// The progress bar's `(position, length, finished)`, if this map shows one. For tests.
    #[doc(hidden)]
    pub fn __progress(&self) -> Option<(u64, Option<u64>, bool)> {
        self.bar
            .as_ref()
            .map(|b| (b.position(), b.length(), b.is_finished()))
    }
}

impl<R> Imap<'_, R> {
    /// Takes every remaining outcome into `out` in order, or returns the first error (in
    /// order). A batch at a time: `map`'s loop, without a `Result` per item.
    pub(crate) fn take_all_into(&mut self, out: &mut Vec<R>) -> Result<(), TaskError> {
        let mut batch = std::mem::replace(&mut self.local, Batch::Values(Vec::new().into_iter()));
        loop {
            let n = batch.len();
            self.yielded += n;
            if let Some(b) = &self.bar {
                b.inc(n as u64);
            }
            batch.drain_into(out)?;
            self.fill();
            if self.yielded == self.submitted {
                if let Some(b) = &self.bar {
                    b.finish();
                }
                return Ok(());
            }
            let (start, next) = self.state.take(self.next);
            debug_assert!(!self.state.ordered || start == self.next);
            self.next = start + next.len();
            batch = next;
        }
    }
}

impl<R> Iterator for Imap<'_, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Result<R, TaskError>> {
        if self.local.len() == 0 {
            self.fill();
            if self.yielded == self.submitted {
                if let Some(b) = &self.bar {
                    b.finish();
                }
                return None;
            }
            let (start, batch) = self.state.take(self.next);
            debug_assert!(!self.state.ordered || start == self.next);
            self.next = start + batch.len();
            self.local = batch;
        }
        let r = self.local.next()?;
        self.yielded += 1;
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let pending = self.submitted - self.yielded;
        (pending, if self.exhausted { Some(pending) } else { None })
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        self.state.cancel();
    }
}

/// Largest automatic chunk: past this, bigger chunks save nothing measurable, while they
/// would hold more memory and balance work worse.
const MAX_AUTO_CHUNK: usize = 4096;

/// Python's automatic chunk size, `len / (4 × workers)` rounded up, capped.
pub(crate) fn auto_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers.max(1)).clamp(1, MAX_AUTO_CHUNK)
}

/// The known length of an iterator, if its size hint is exact.
pub(crate) fn exact_len(it: &impl Iterator) -> Option<usize> {
    match it.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

/// A value that can cross into a worker process: serializable, sendable, owned. Every
/// argument and result of an [`Executor`] task is one.
///
/// A type without serde's traits fails `cargo check` with this trait's message:
///
/// ```compile_fail,E0277
/// use multiproc::{Executor, ThreadPool};
/// struct Point { x: i32 }
/// let pool = ThreadPool::new(1).unwrap();
/// Executor::submit(&pool, |p: Point| p.x, Point { x: 1 }).unwrap();
/// ```
///
/// ```
/// use multiproc::{Executor, ThreadPool};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Point { x: i32 }
/// let pool = ThreadPool::new(1).unwrap();
/// assert_eq!(Executor::submit(&pool, |p: Point| p.x, Point { x: 1 }).unwrap().result(), Ok(1));
/// ```
///
/// # What postcard cannot carry
///
/// A process pool encodes values with postcard, a compact format without field names or
/// type tags. Types whose `Deserialize` asks the format what comes next
/// (`deserialize_any`) cannot be decoded from it: `serde_json::Value`, `#[serde(untagged)]`
/// and internally tagged (`#[serde(tag = "...")]`) enums, `#[serde(flatten)]` fields, and
/// `skip_serializing_if`. They work on a [`ThreadPool`](crate::ThreadPool) (nothing is
/// encoded) and fail on a [`ProcessPool`](crate::ProcessPool); in debug builds, `submit`
/// and `map` check this on the argument before sending it and say so in an
/// [`Error::Serialize`] naming the type. Send such data as a `String` of JSON, or as a
/// plain struct or externally tagged enum.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's argument or result: it must be serializable (serde), `Send` and owned",
    label = "not a `Payload`",
    note = "for your own type, add `#[derive(serde::Serialize, serde::Deserialize)]` to it, and `serde = {{ version = \"1\", features = [\"derive\"] }}` to Cargo.toml's [dependencies] (or write `#[derive(multiproc::serde::Serialize, multiproc::serde::Deserialize)] #[serde(crate = \"multiproc::serde\")]`)",
    note = "a `ThreadPool`'s own `submit`, `map` and `imap` take any `Send` value; the `Executor` methods need serde so the same call runs on a `ProcessPool`"
)]
pub trait Payload: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}

/// A postcard error, with what to do about it where postcard's own words do not say.
pub(crate) fn explain_postcard(e: &postcard::Error) -> String {
    match e {
        postcard::Error::WontImplement | postcard::Error::NotYetImplemented => format!(
            "{e}: postcard, the encoding between processes, cannot decode this type because \
             its Deserialize needs `deserialize_any` (serde_json::Value, untagged or internally \
             tagged enums, #[serde(flatten)], skip_serializing_if); send it as a String of JSON \
             or as plain structs and externally tagged enums (see multiproc::Payload), or run \
             it on a ThreadPool"
        ),
        _ => e.to_string(),
    }
}

/// Bytes to reserve for `n` framed values of `A`, so the buffer is allocated once: a
/// frame's length, then postcard (at most about the value's size for plain data), and 8
/// bytes of slack (the encoder writes a value's last short piece as one 8-byte word).
pub(crate) fn encoded_room<A>(n: usize) -> usize {
    n * (4 + std::mem::size_of::<A>().clamp(1, 64)) + 8
}

/// Encodes a chunk of a map for a pool whose workers are other processes (a process pool,
/// MPI): each run of items that encode goes to `send(bytes, offsets, index of its first
/// item)` as one job; an item that does not is its own `Serialize` error in `sink`, after
/// the job before it. One panic guard per run (`bootstrap::task::encode_run`).
pub(crate) fn encode_chunk<A: Payload, R>(
    items: &[A],
    start: usize,
    sink: &MapState<R>,
    mut send: impl FnMut(Vec<u8>, &[u32], usize),
) {
    let mut data = Vec::with_capacity(encoded_room::<A>(items.len()));
    let mut offsets = Vec::with_capacity(items.len());
    let check = |b: &[u8]| debug_check_decodes::<A>(b);
    let mut k = 0;
    loop {
        let r = crate::bootstrap::task::encode_run(&items[k..], &mut data, &mut offsets, check);
        if !offsets.is_empty() {
            send(std::mem::take(&mut data), &offsets, start + k);
            offsets.clear();
        }
        let Err((j, message)) = r else { return };
        let failed = start + k + j;
        sink.deliver(
            failed,
            vec![Err(TaskError::Serialize {
                index: Some(failed),
                type_name: std::any::type_name::<A>().into(),
                message,
            })],
        );
        k += j + 1;
    }
}

/// In debug builds, whether values of type `A` (given one, encoded) decode again, checked
/// once per type: a type postcard cannot decode then fails at `submit` with the reason,
/// not in a worker. `None` when it does (or in release builds).
pub(crate) fn debug_check_decodes<A: Payload>(bytes: &[u8]) -> Option<String> {
    if !cfg!(debug_assertions) {
        return None;
    }
    static CHECKED: Mutex<BTreeMap<std::any::TypeId, Option<String>>> = Mutex::new(BTreeMap::new());
    let id = std::any::TypeId::of::<A>();
    if let Some(r) = CHECKED.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return r.clone();
    }
    // `Deserialize` is user code: a panic there is the worker's to report, not ours.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        postcard::from_bytes::<A>(bytes).map(drop)
    }));
    let verdict = match decoded {
        Ok(Err(e @ (postcard::Error::WontImplement | postcard::Error::NotYetImplemented))) => {
            Some(explain_postcard(&e))
        }
        _ => None,
    };
    CHECKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, verdict.clone());
    verdict
}

/// A function an [`Executor`] can run anywhere: a `fn` item or a closure that captures
/// nothing (a process pool ships it by code address, so it must carry no data).
///
/// A closure that captures something not `Copy` fails `cargo check` with this trait's
/// message. One that captures only `Copy` data, and a `fn` pointer, cannot be told apart
/// by any stable trait bound: they fail at `cargo build`, in an error whose
/// "while instantiating" note names the line that called `submit` (or `Process::start`)
/// and the culprit's type.
///
/// ```compile_fail,E0080
/// # multiproc::init();
/// use multiproc::{Executor, ProcessPool};
/// let pool = ProcessPool::new(1).unwrap();
/// let offset = 3u32;
/// pool.submit(move |x: u32| x + offset, 1).unwrap(); // captures `offset`
/// ```
///
/// ```compile_fail,E0080
/// # multiproc::init();
/// use multiproc::{Executor, ProcessPool};
/// fn double(x: u32) -> u32 { x * 2 }
/// let pool = ProcessPool::new(1).unwrap();
/// let f: fn(u32) -> u32 = double; // a fn pointer: an address, not a type
/// pool.submit(f, 1).unwrap();
/// ```
///
/// ```compile_fail,E0277
/// # multiproc::init();
/// use multiproc::{Executor, ProcessPool};
/// let pool = ProcessPool::new(1).unwrap();
/// let name = String::from("x");
/// pool.submit(move |x: usize| x + name.len(), 1).unwrap(); // fails `cargo check`
/// ```
///
/// The same with the data as the argument, and the function by its name:
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Executor, ProcessPool};
/// fn double(x: u32) -> u32 { x * 2 }
/// let pool = ProcessPool::new(1).unwrap();
/// assert_eq!(pool.submit(|(x, offset): (u32, u32)| x + offset, (1, 3)).unwrap().result(), Ok(4));
/// assert_eq!(pool.submit(double, 1).unwrap().result(), Ok(2));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a pool task: it must be a `fn` item or a closure that captures nothing, taking one argument",
    label = "not a `fn` item or non-capturing closure of one argument",
    note = "pass what the closure captures as the task's argument instead (a tuple for several, with `submit_star`/`starmap`), or use `ThreadPool::submit`, which takes capturing closures"
)]
pub trait PoolFn<A, R>: Fn(A) -> R + Copy + Send + Sync + 'static {}
impl<F: Fn(A) -> R + Copy + Send + Sync + 'static, A, R> PoolFn<A, R> for F {}

/// How a map-style call splits its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Chunksize {
    /// Python's rule, `len / (4 × workers)` (at most 4096) when the length is known, else 1.
    #[default]
    Auto,
    /// This many items per chunk.
    Fixed(usize),
}

impl Chunksize {
    pub(crate) fn resolve(self, len: Option<usize>, workers: usize) -> usize {
        match (self, len) {
            (Chunksize::Fixed(n), _) => n.max(1),
            (Chunksize::Auto, Some(len)) => auto_chunksize(len, workers),
            (Chunksize::Auto, None) => 1,
        }
    }
}

/// What every pool can do: the `concurrent.futures.Executor` and `multiprocessing.Pool`
/// API, over threads ([`ThreadPool`](crate::ThreadPool)) or processes
/// ([`ProcessPool`](crate::ProcessPool)). Code written against it runs unchanged on either.
///
/// `f` is a `fn` item or a non-capturing closure; arguments and results are serializable
/// so they can cross into a worker process.
///
/// ```
/// use multiproc::{Executor, ThreadPool};
/// fn square(x: u64) -> u64 { x * x }
/// fn sum_of_squares(pool: &impl Executor, n: u64) -> u64 {
///     pool.map(square, 0..n).unwrap().into_iter().sum()
/// }
/// assert_eq!(sum_of_squares(&ThreadPool::new(2).unwrap(), 4), 14);
/// ```
pub trait Executor {
    /// Number of workers.
    fn workers(&self) -> usize;

    /// Whether map-style calls show a progress bar.
    fn progress(&self) -> bool {
        false
    }

    /// Schedules `f(arg)` and returns its future.
    fn submit<F, A, R>(&self, f: F, arg: A) -> Result<TaskFuture<R>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload;

    /// Python's `Pool.apply_async`: the same as [`submit`](Executor::submit).
    fn apply_async<F, A, R>(&self, f: F, arg: A) -> Result<TaskFuture<R>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        self.submit(f, arg)
    }

    /// Schedules `f(a, b, ...)` for a function of several arguments, given as a tuple
    /// (Python's `submit(f, a, b)`; the one-argument form is [`submit`](Executor::submit)).
    ///
    /// A separate method rather than one `submit` for every arity: `submit` keeps its
    /// plain `Fn(A) -> R` bound, from which Rust infers an unannotated closure's argument
    /// type; a bound that accepts every arity would make `|x| x + 1` need annotations.
    ///
    /// ```
    /// use multiproc::{Executor, ThreadPool};
    /// fn print_sum(a: i32, b: i32) -> i32 { println!("{}", a + b); a + b }
    /// let pool = ThreadPool::new(2).unwrap();
    /// assert_eq!(pool.submit_star(print_sum, (1, 2)).unwrap().result().unwrap(), 3);
    /// ```
    fn submit_star<F, Args, R>(&self, f: F, args: Args) -> Result<TaskFuture<R>>
    where
        F: StarFn<Args, Output = R>,
        Args: Payload,
        R: Payload,
    {
        self.submit(move |args: Args| f.call_star(args), args)
    }

    /// Python's `Pool.apply_async(f, (a, b))`: the same as
    /// [`submit_star`](Executor::submit_star).
    fn apply_async_star<F, Args, R>(&self, f: F, args: Args) -> Result<TaskFuture<R>>
    where
        F: StarFn<Args, Output = R>,
        Args: Payload,
        R: Payload,
    {
        self.submit_star(f, args)
    }

    /// Python's `Pool.apply`: runs `f(arg)` in the pool and waits for the result.
    fn apply<F, A, R>(&self, f: F, arg: A) -> Result<R>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
    {
        Ok(self.submit(f, arg)?.result()?)
    }

    /// Sends one chunk, `items`, the first having index `start`. The pool takes what it
    /// keeps (a thread pool, the items) and leaves the rest: the caller reuses the `Vec`
    /// for the next chunk, so a map of chunk size 1 allocates none per item.
    #[doc(hidden)]
    fn dispatch_chunk<F, A, R>(
        &self,
        f: F,
        start: usize,
        items: &mut Vec<A>,
        sink: &Arc<MapState<R>>,
    ) where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload;

    /// `imap` with an explicit chunk size (Python: `imap(f, it, chunksize)`).
    fn imap_chunked<F, A, R, I>(&self, f: F, iter: I, chunksize: Chunksize) -> Imap<'_, R>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
        Self: Sized,
    {
        make_imap(self, f, iter.into_iter(), chunksize, true)
    }

    /// `imap_unordered` with an explicit chunk size.
    fn imap_unordered_chunked<F, A, R, I>(&self, f: F, iter: I, chunksize: Chunksize) -> Imap<'_, R>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
        Self: Sized,
    {
        make_imap(self, f, iter.into_iter(), chunksize, false)
    }

    /// Lazily applies `f` to every item, yielding outcomes in input order. Each error is
    /// yielded in its place and the rest go on.
    fn imap<F, A, R, I>(&self, f: F, iter: I) -> Imap<'_, R>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
        Self: Sized,
    {
        self.imap_chunked(f, iter, Chunksize::Auto)
    }

    /// Like [`imap`](Executor::imap), yielding outcomes as they finish.
    fn imap_unordered<F, A, R, I>(&self, f: F, iter: I) -> Imap<'_, R>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'static,
        Self: Sized,
    {
        self.imap_unordered_chunked(f, iter, Chunksize::Auto)
    }

    /// `map` with an explicit chunk size.
    fn map_chunked<F, A, R, I>(&self, f: F, iter: I, chunksize: Chunksize) -> Result<Vec<R>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
        Self: Sized,
    {
        // Like Python, `map` needs the input's length first (so the chunk size can be
        // chosen): an iterator that knows it exactly (a range, a `Vec`) is taken one chunk
        // at a time, any other is collected first. `imap` is the lazy form.
        let iter = iter.into_iter();
        // On an error, dropping the iterator cancels everything not yet started.
        let mut out;
        let r = match exact_len(&iter) {
            Some(n) => {
                out = Vec::with_capacity(n);
                make_imap(self, f, iter, chunksize, true).take_all_into(&mut out)
            }
            None => {
                let items: Vec<A> = iter.collect();
                out = Vec::with_capacity(items.len());
                make_imap(self, f, items.into_iter(), chunksize, true).take_all_into(&mut out)
            }
        };
        r.map_err(Error::Task)?;
        Ok(out)
    }

    /// Applies `f` to every item and returns the results in input order, or the first
    /// error in input order (after cancelling the rest).
    fn map<F, A, R, I>(&self, f: F, iter: I) -> Result<Vec<R>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
        Self: Sized,
    {
        self.map_chunked(f, iter, Chunksize::Auto)
    }

    /// Python's `Pool.map_async`: schedules `f` over every item at once and returns one
    /// future of the whole `Vec` (in input order), or of the first error in input order
    /// (the rest are then cancelled). Cancelling the future cancels the items not started.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// use multiproc::{Executor, ProcessPool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = ProcessPool::new(2).unwrap();
    /// let all = pool.map_async(square, 0..5).unwrap();
    /// // ... other work ...
    /// assert_eq!(all.result().unwrap(), vec![0, 1, 4, 9, 16]);
    /// ```
    fn map_async<F, A, R, I>(&self, f: F, iter: I) -> Result<TaskFuture<Vec<R>>>
    where
        F: PoolFn<A, R>,
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
        Self: Sized,
    {
        let items: Vec<A> = iter.into_iter().collect();
        let n = items.len();
        let cs = Chunksize::Auto.resolve(Some(n), self.workers());
        let sink = MapState::new(true);
        let state = crate::future::FutureState::<Vec<R>>::new(None);
        // Whoever waits on the future needs no thread of its own: one collector thread per
        // call gathers the batches (Python's `map_async` has its result-handler thread).
        let (st, sk) = (state.clone(), sink.clone());
        let link: Arc<dyn crate::future::PoolLink> = Arc::new(CancelMap(sink.clone()));
        state.set_link(Arc::downgrade(&link), 0);
        std::thread::Builder::new()
            .name("multiproc-map-async".into())
            .spawn(move || {
                collect_all(&sk, &st, n);
                drop(link);
            })
            .map_err(|e| Error::io("spawn the map_async collector thread", e))?;
        let mut items = items.into_iter();
        let mut start = 0;
        while start < n {
            let mut chunk: Vec<A> = items.by_ref().take(cs).collect();
            let k = chunk.len();
            self.dispatch_chunk(f, start, &mut chunk, &sink);
            start += k;
        }
        Ok(TaskFuture::from_state(state))
    }

    /// Python's `Pool.starmap_async`: [`map_async`](Executor::map_async) for functions of
    /// several arguments, each item a tuple.
    ///
    /// ```
    /// use multiproc::{Executor, ThreadPool};
    /// fn add(a: i32, b: i32) -> i32 { a + b }
    /// let pool = ThreadPool::new(2).unwrap();
    /// let f = pool.starmap_async(add, vec![(1, 2), (3, 4)]).unwrap();
    /// assert_eq!(f.result().unwrap(), vec![3, 7]);
    /// ```
    fn starmap_async<F, Args, R, I>(&self, f: F, iter: I) -> Result<TaskFuture<Vec<R>>>
    where
        F: StarFn<Args, Output = R>,
        Args: Payload,
        R: Payload,
        I: IntoIterator<Item = Args>,
        Self: Sized,
    {
        self.map_async(move |args: Args| f.call_star(args), iter)
    }

    /// `map` for functions of several arguments (Python's `starmap`): each item is the
    /// tuple of arguments, so `add(a, b)` runs over `vec![(1, 2), (3, 4)]`.
    fn starmap<F, Args, R, I>(&self, f: F, iter: I) -> Result<Vec<R>>
    where
        F: StarFn<Args, Output = R>,
        Args: Payload,
        R: Payload,
        I: IntoIterator<Item = Args>,
        Self: Sized,
    {
        self.map(move |args: Args| f.call_star(args), iter)
    }
}

/// A function of several arguments that [`starmap`](Executor::starmap) calls with a tuple.
/// Implemented for every `Fn` of 1 to 4 arguments that a pool can run.
pub trait StarFn<Args>: Copy + Send + Sync + 'static {
    /// What it returns.
    type Output;
    /// Calls it with the tuple's elements as arguments.
    fn call_star(&self, args: Args) -> Self::Output;
}

macro_rules! star_fn {
    ($($a:ident),+) => {
        impl<Func, $($a,)+ Ret> StarFn<($($a,)+)> for Func
        where
            Func: Fn($($a),+) -> Ret + Copy + Send + Sync + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn call_star(&self, ($($a,)+): ($($a,)+)) -> Ret {
                self($($a),+)
            }
        }
    };
}
star_fn!(A1);
star_fn!(A1, A2);
star_fn!(A1, A2, A3);
star_fn!(A1, A2, A3, A4);

/// Lets cancelling a `map_async` future cancel the items not yet started.
struct CancelMap<R>(Arc<MapState<R>>);

impl<R: Send> crate::future::PoolLink for CancelMap<R> {
    fn cancel(&self, _: u64) {
        self.0.cancel();
    }

    fn help(&self) {}
}

/// Gathers the `n` results of a [`map_async`](Executor::map_async) into its future.
fn collect_all<R>(sink: &MapState<R>, fut: &crate::future::FutureState<Vec<R>>, n: usize) {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if fut.is_done() {
            // Cancelled by its caller: the items not yet started need not run.
            sink.cancel();
            return;
        }
        let (_, batch) = sink.take(out.len());
        if let Err(e) = batch.drain_into(&mut out) {
            sink.cancel();
            fut.complete(Err(e));
            return;
        }
    }
    fut.complete(Ok(out));
}

fn make_imap<'a, E, F, A, R, It>(
    pool: &'a E,
    f: F,
    iter: It,
    chunksize: Chunksize,
    ordered: bool,
) -> Imap<'a, R>
where
    E: Executor,
    F: PoolFn<A, R>,
    A: Payload,
    R: Payload,
    It: Iterator<Item = A> + 'a,
{
    let (workers, progress) = (pool.workers(), pool.progress());
    lazy_imap(
        iter,
        chunksize,
        ordered,
        workers,
        progress,
        move |start, items, sink| pool.dispatch_chunk(f, start, items, sink),
    )
}

/// An [`Imap`] that takes `iter` one chunk at a time, when the window has room, and hands
/// each chunk to `dispatch(first index, items, results)`: the part every pool shares.
pub(crate) fn lazy_imap<'a, A: 'a, R: 'a>(
    mut iter: impl Iterator<Item = A> + 'a,
    chunksize: Chunksize,
    ordered: bool,
    workers: usize,
    progress: bool,
    mut dispatch: impl FnMut(usize, &mut Vec<A>, &Arc<MapState<R>>) + 'a,
) -> Imap<'a, R> {
    let total = exact_len(&iter);
    let cs = chunksize.resolve(total, workers);
    let mut items = Vec::new();
    let feeder: Feeder<'a, R> = Box::new(move |start, sink| {
        items.extend(iter.by_ref().take(cs));
        let n = items.len();
        if n > 0 {
            dispatch(start, &mut items, sink);
        }
        // Dropped now (a process pool has encoded them; a thread pool took them), its
        // room kept for the next chunk: one `Vec` for every chunk.
        items.clear();
        n
    });
    Imap::new(feeder, ordered, cs, workers, total, progress)
}
