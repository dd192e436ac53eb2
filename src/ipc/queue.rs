//! `Queue`, `SimpleQueue`, `JoinableQueue`: multi-producer, multi-consumer queues between
//! processes and threads, over a shared-memory ring (see `src/ring/mpmc.rs` and its `README.md`).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ring::mpmc::{DEFAULT_CAPACITY, Ring};

/// A FIFO queue shared between processes and threads (`multiprocessing.Queue`).
///
/// Items are postcard-encoded into a ring in shared memory (an anonymous memfd: nothing in
/// `/dev/shm`, freed when the last process holding it exits, however it exits). There is
/// no feeder thread: once [`put`](Self::put) returns `Ok`, the item is in shared memory and
/// survives the producer being killed right after; a consumer killed in the middle of
/// [`get`](Self::get) loses at most the item it was taking and blocks nobody.
///
/// Clone it for more handles in this process; pass it (inside) the argument of a
/// [`Process`](crate::Process) or of a process pool's
/// [`initializer`](crate::ProcessPoolBuilder::initializer) to use it in another process.
/// A pool *task's* argument refuses it, as in Python (a task may run in any worker, long
/// after the queue was sent): give each worker the queue once, through the initializer,
/// and let tasks find it in a `static`:
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Executor, ProcessPool, Queue};
/// use std::sync::OnceLock;
///
/// static RESULTS: OnceLock<Queue<u64>> = OnceLock::new();
/// fn setup(q: Queue<u64>) { let _ = RESULTS.set(q); }
/// fn work(x: u64) { RESULTS.get().unwrap().put(&(x * x)).unwrap(); }
///
/// let q = Queue::new().unwrap();
/// let pool = ProcessPool::builder().workers(2).initializer(setup, q.clone()).build().unwrap();
/// pool.map(work, 0..4).unwrap();
/// let mut got: Vec<u64> = (0..4).map(|_| q.get().unwrap()).collect();
/// got.sort();
/// assert_eq!(got, vec![0, 1, 4, 9]);
/// ```
///
/// Bounds: [`Queue::bounded`] limits the number of items (Python's `maxsize`); every queue
/// is also limited by the bytes of its ring (256 MiB by default, virtual: pages are only
/// touched as the queue fills; see [`QueueBuilder::capacity_bytes`]).
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Process, Queue};
///
/// fn produce(q: Queue<String>) {
///     for i in 0..3 { q.put(&format!("item {i}")).unwrap(); }
/// }
///
/// let q = Queue::new().unwrap();
/// let p = Process::start(produce, q.clone()).unwrap();
/// for i in 0..3 { assert_eq!(q.get().unwrap(), format!("item {i}")); }
/// p.join();
/// ```
pub struct Queue<T> {
    ring: Arc<Ring>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            ring: self.ring.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("ring", &*self.ring).finish()
    }
}

/// Options for a [`Queue`]: item limit and ring size.
#[derive(Debug, Clone)]
pub struct QueueBuilder {
    maxsize: usize,
    capacity: u64,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            maxsize: 0,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

impl QueueBuilder {
    /// At most `n` items at a time (0: no item limit). `put` waits while it is full.
    pub fn maxsize(mut self, n: usize) -> Self {
        self.maxsize = n;
        self
    }

    /// Size of the shared ring in bytes (4 KiB to 2 GiB; default 256 MiB). The largest
    /// message is 8 bytes less, and `put` waits while the items queued fill it, even on a
    /// queue without item limit. Only the part of the ring in use is ever backed by memory,
    /// but every process using the queue maps all of it: with a pool's `memory_limit`
    /// (`RLIMIT_AS`), pass the workers a smaller queue.
    pub fn capacity_bytes(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// Creates the queue.
    pub fn build<T>(self) -> Result<Queue<T>> {
        let maxsize = u32::try_from(self.maxsize)
            .map_err(|_| Error::InvalidArgument("maxsize must be below 2^32".into()))?;
        Ok(Queue {
            ring: Arc::new(Ring::create(self.capacity, maxsize)?),
            _items: PhantomData,
        })
    }
}

fn deadline(timeout: Duration) -> Option<Instant> {
    Some(Instant::now() + timeout)
}

impl Queue<()> {
    /// Options: item limit and ring size; the item type is chosen by `build`.
    ///
    /// ```
    /// let q: multiproc::Queue<u8> =
    ///     multiproc::Queue::builder().maxsize(10).capacity_bytes(1 << 20).build().unwrap();
    /// assert_eq!(q.maxsize(), Some(10));
    /// ```
    pub fn builder() -> QueueBuilder {
        QueueBuilder::default()
    }
}

impl<T> Queue<T> {
    /// A queue with no item limit.
    pub fn new() -> Result<Queue<T>> {
        QueueBuilder::default().build()
    }

    /// A queue of at most `maxsize` items (`Queue(maxsize)`).
    pub fn bounded(maxsize: usize) -> Result<Queue<T>> {
        QueueBuilder::default().maxsize(maxsize.max(1)).build()
    }

    /// The number of items now (approximate while others put and get; Python's `qsize`).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether it holds no items now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it holds its maximum number of items now (never, without an item limit).
    pub fn is_full(&self) -> bool {
        self.ring.maxsize() != 0 && self.len() >= self.ring.maxsize() as usize
    }

    /// The item limit (`None`: unlimited).
    pub fn maxsize(&self) -> Option<usize> {
        (self.ring.maxsize() != 0).then_some(self.ring.maxsize() as usize)
    }

    /// The largest serialized item it takes, in bytes.
    pub fn max_message_size(&self) -> u64 {
        self.ring.max_message()
    }

    /// The ring's size in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.ring.capacity()
    }

    /// Closes the queue, for every process: from now on `put` fails with
    /// [`Error::Closed`], and `get` returns the items left, then fails with
    /// [`Error::Closed`] instead of waiting. Blocked callers wake up.
    pub fn close(&self) {
        self.ring.close()
    }

    /// Whether it has been closed (by any process).
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Appends an item, waiting while the queue is full.
    pub fn put(&self, item: &T) -> Result<()> {
        self.ring.put(item, None)
    }

    /// Appends an item, waiting at most `timeout` for room ([`Error::Timeout`]).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.ring
            .put(item, deadline(timeout))
            .map_err(|e| retime(e, timeout))
    }

    /// Appends an item if there is room now, else fails with [`Error::Full`].
    pub fn try_put(&self, item: &T) -> Result<()> {
        self.ring
            .put(item, Some(Instant::now()))
            .map_err(|e| match e {
                Error::Timeout(_) => Error::Full,
                e => e,
            })
    }

    /// Removes and returns the oldest item, waiting for one.
    ///
    /// An item that is not exactly one `T` (put by a process that took the queue for
    /// another type) is an [`Error::WrongType`]; one that `T`'s `Deserialize` refuses is an
    /// [`Error::Deserialize`]. Either way the item is consumed and the next `get` returns
    /// the next one.
    pub fn get(&self) -> Result<T> {
        self.ring.get(None)
    }

    /// Like [`get`](Self::get), waiting at most `timeout` ([`Error::Timeout`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.ring
            .get(deadline(timeout))
            .map_err(|e| retime(e, timeout))
    }

    /// Removes and returns the oldest item if there is one now, else fails with
    /// [`Error::Empty`].
    pub fn try_get(&self) -> Result<T> {
        self.ring.get(Some(Instant::now())).map_err(|e| match e {
            Error::Timeout(_) => Error::Empty,
            e => e,
        })
    }

    /// An iterator that takes items until the queue is closed and drained (or an error).
    ///
    /// ```
    /// let q = multiproc::Queue::new().unwrap();
    /// for i in 0..3u32 { q.put(&i).unwrap(); }
    /// q.close();
    /// assert_eq!(q.iter().collect::<Vec<u32>>(), [0, 1, 2]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.get().ok())
    }
}

fn retime(e: Error, timeout: Duration) -> Error {
    match e {
        Error::Timeout(_) => Error::Timeout(timeout),
        e => e,
    }
}

#[derive(Serialize, Deserialize)]
struct QueueWire {
    fd: u32,
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fd = crate::wire::fdctx::push_fd(self.ring.fd(), "Queue")
            .map_err(serde::ser::Error::custom)?;
        QueueWire { fd }.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = QueueWire::deserialize(d)?;
        let fd = crate::wire::fdctx::take_fd(w.fd, "Queue").map_err(serde::de::Error::custom)?;
        let ring = Ring::open(fd).map_err(serde::de::Error::custom)?;
        Ok(Queue {
            ring: Arc::new(ring),
            _items: PhantomData,
        })
    }
}

/// A queue without size limit or timeouts (`multiprocessing.SimpleQueue`): `put`, `get`,
/// `is_empty`, `close`.
///
/// ```
/// let q = multiproc::SimpleQueue::new().unwrap();
/// q.put(&"hi".to_string()).unwrap();
/// assert_eq!(q.get().unwrap(), "hi");
/// assert!(q.is_empty());
/// ```
#[derive(Debug)]
pub struct SimpleQueue<T>(Queue<T>);

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue(self.0.clone())
    }
}

impl<T> SimpleQueue<T> {
    /// A new, empty queue.
    pub fn new() -> Result<SimpleQueue<T>> {
        Queue::new().map(SimpleQueue)
    }

    /// Whether it holds no items now.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Closes it for every process (see [`Queue::close`]).
    pub fn close(&self) {
        self.0.close()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// Appends an item.
    pub fn put(&self, item: &T) -> Result<()> {
        self.0.put(item)
    }

    /// Removes and returns the oldest item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.0.get()
    }

    /// Like [`get`](Self::get), waiting at most `timeout` ([`Error::Timeout`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.0.get_timeout(timeout)
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Queue::deserialize(d).map(SimpleQueue)
    }
}

/// A [`Queue`] that also counts unfinished items (`multiprocessing.JoinableQueue`):
/// every item put must be marked [`task_done`](Self::task_done) by its consumer, and
/// [`join`](Self::join) waits until all are. It has every method of [`Queue`].
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{JoinableQueue, Process};
///
/// fn worker(q: JoinableQueue<u32>) {
///     while let Ok(_job) = q.get() { q.task_done().unwrap(); }
/// }
///
/// let q = JoinableQueue::new().unwrap();
/// let p = Process::builder().daemon(true).start(worker, q.clone()).unwrap();
/// for i in 0..10 { q.put(&i).unwrap(); }
/// q.join().unwrap();      // every job done
/// q.close();              // the worker's get fails: it returns
/// p.join();
/// ```
#[derive(Debug)]
pub struct JoinableQueue<T>(Queue<T>);

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue(self.0.clone())
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

impl<T> JoinableQueue<T> {
    /// A queue with no item limit.
    pub fn new() -> Result<JoinableQueue<T>> {
        Queue::new().map(JoinableQueue)
    }

    /// A queue of at most `maxsize` items.
    pub fn bounded(maxsize: usize) -> Result<JoinableQueue<T>> {
        Queue::bounded(maxsize).map(JoinableQueue)
    }

    /// Wraps a queue made with [`Queue::builder`]. Its items already put count as
    /// unfinished.
    pub fn from_queue(q: Queue<T>) -> JoinableQueue<T> {
        JoinableQueue(q)
    }

    /// Marks one item taken with `get` as processed. Fails with [`Error::InvalidArgument`]
    /// if called more times than items were put (Python's `ValueError`).
    pub fn task_done(&self) -> Result<()> {
        self.0.ring.task_done()
    }

    /// Waits until every item ever put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.0.ring.join(None)
    }

    /// Like [`join`](Self::join), giving up with [`Error::Timeout`] after `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.0
            .ring
            .join(deadline(timeout))
            .map_err(|e| retime(e, timeout))
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Queue::deserialize(d).map(JoinableQueue)
    }
}
