//! `Queue<T>`: a queue served by a manager (Python's `Manager().Queue()`).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{ObjRef, decode_one, expect_bool, expect_ok, expect_u64, impl_proxy, wait_for};
use super::protocol::{Blob, Kind, Op, Wait};
use crate::error::Result;

/// A FIFO queue that lives in a [`Manager`](super::Manager): the same API as
/// [`multiproc::Queue`](crate::Queue), reachable from other machines. Made with
/// [`Manager::queue`](super::Manager::queue) (unbounded) or
/// [`Manager::bounded_queue`](super::Manager::bounded_queue).
///
/// A blocking call blocks only the calling thread (each thread has its own connection).
/// If the server goes away, a blocked call returns
/// [`Error::Disconnected`](crate::Error::Disconnected).
///
/// ```standalone_crate
/// # multiproc::init();
/// use std::time::Duration;
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let q = m.queue::<String>("jobs").unwrap();
/// q.put(&"job 1".into()).unwrap();
/// assert_eq!(q.get().unwrap(), "job 1");
/// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(multiproc::Error::Timeout(_))));
/// ```
pub struct Queue<T> {
    pub(crate) obj: ObjRef,
    _t: PhantomData<fn() -> T>,
}

impl<T> Queue<T> {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Queue {
            obj,
            _t: PhantomData,
        }
    }
}

pub(crate) fn tag<T>() -> String {
    format!("queue<{}>", std::any::type_name::<T>())
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// The object's name on the manager.
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    fn put_wait(&self, item: &T, wait: Wait) -> Result<()> {
        let b = encode_item(item)?;
        self.obj
            .call(Op::QueuePut(Blob::borrowed(&b), wait), expect_ok)
    }

    fn get_wait(&self, wait: Wait) -> Result<T> {
        self.obj.call(Op::QueueGet(wait), decode_one)
    }

    /// Appends an item, waiting while the queue is full. A closed queue is an
    /// [`Error::Closed`](crate::Error::Closed).
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_wait(item, Wait::Forever)
    }

    /// Appends an item, waiting at most `timeout` for room
    /// ([`Error::Timeout`](crate::Error::Timeout)).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_wait(item, wait_for(Some(timeout)))
    }

    /// Appends an item if there is room now, else [`Error::Full`](crate::Error::Full).
    pub fn try_put(&self, item: &T) -> Result<()> {
        self.put_wait(item, Wait::No)
    }

    /// Removes and returns the oldest item, waiting for one. Once the queue is closed and
    /// drained: [`Error::Closed`](crate::Error::Closed).
    pub fn get(&self) -> Result<T> {
        self.get_wait(Wait::Forever)
    }

    /// Like [`get`](Self::get), waiting at most `timeout`
    /// ([`Error::Timeout`](crate::Error::Timeout)).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_wait(wait_for(Some(timeout)))
    }

    /// The oldest item if there is one now, else [`Error::Empty`](crate::Error::Empty).
    pub fn try_get(&self) -> Result<T> {
        self.get_wait(Wait::No)
    }

    /// Number of items in it.
    pub fn len(&self) -> Result<usize> {
        self.obj.call(Op::Len, expect_u64).map(|n| n as usize)
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Its bound, `None` if unbounded.
    pub fn maxsize(&self) -> Result<Option<usize>> {
        self.obj
            .call(Op::QueueMaxsize, expect_u64)
            .map(|n| (n > 0).then_some(n as usize))
    }

    /// Whether it holds `maxsize` items.
    pub fn is_full(&self) -> Result<bool> {
        Ok(match self.maxsize()? {
            Some(m) => self.len()? >= m,
            None => false,
        })
    }

    /// Closes it for everyone: `put` fails, `get` drains what is left and then fails,
    /// blocked callers wake up.
    pub fn close(&self) -> Result<()> {
        self.obj.call(Op::QueueClose, expect_ok)
    }

    /// Whether it has been closed.
    pub fn is_closed(&self) -> Result<bool> {
        self.obj.call(Op::QueueIsClosed, expect_bool)
    }
}

fn encode_item<T: Serialize>(item: &T) -> Result<Vec<u8>> {
    super::client::encode(item)
}

impl_proxy!(Queue<T>, Kind::Queue, tag::<T>());
