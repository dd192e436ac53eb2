//! `List<T>`: a shared list (Python's `Manager().list()`).

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{ObjRef, decode_all, decode_maybe, encode, expect_ok, expect_u64, impl_proxy};
use super::protocol::{Blob, Kind, Op};
use crate::error::Result;

/// A list that lives in a [`Manager`](super::Manager) (Python's `ListProxy`). Made with
/// [`Manager::list`](super::Manager::list).
///
/// Every method is one atomic operation on the server; [`extend`](Self::extend) appends a
/// whole batch atomically, in one round trip (the fast way to append many items). Like
/// every proxy it is `Serialize`: pass it to pool tasks and processes.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Executor, Manager, ProcessPool};
/// fn fetch(out: multiproc::manager::List<String>, link: String) {
///     out.push(&format!("title of {link}")).unwrap();
/// }
/// let m = Manager::start().unwrap();
/// let results = m.list::<String>("results").unwrap();
/// let pool = ProcessPool::new(2).unwrap();
/// let links = ["a", "b", "c"].map(String::from);
/// pool.starmap(fetch, links.map(|l| (results.clone(), l))).unwrap();
/// let mut got = results.to_vec().unwrap();
/// got.sort();
/// assert_eq!(got, ["title of a", "title of b", "title of c"]);
/// ```
pub struct List<T> {
    pub(crate) obj: ObjRef,
    _t: PhantomData<fn() -> T>,
}

impl<T> List<T> {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        List {
            obj,
            _t: PhantomData,
        }
    }
}

pub(crate) fn tag<T>() -> String {
    format!("list<{}>", std::any::type_name::<T>())
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// The object's name on the manager.
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// Appends an item; returns the new length.
    pub fn push(&self, item: &T) -> Result<usize> {
        let b = encode(item)?;
        self.obj
            .call(Op::ListPush(Blob::borrowed(&b)), expect_u64)
            .map(|n| n as usize)
    }

    /// Python's name for [`push`](Self::push).
    pub fn append(&self, item: &T) -> Result<usize> {
        self.push(item)
    }

    /// Appends every item, as one atomic operation and one round trip; returns the new
    /// length. Another client sees all of them or none.
    pub fn extend<Q: Borrow<T>>(&self, items: impl IntoIterator<Item = Q>) -> Result<usize> {
        let enc: Vec<Vec<u8>> = items
            .into_iter()
            .map(|x| encode(x.borrow()))
            .collect::<Result<_>>()?;
        let blobs = enc.iter().map(|b| Blob::borrowed(b)).collect();
        self.obj
            .call(Op::ListExtend(blobs), expect_u64)
            .map(|n| n as usize)
    }

    /// A copy of the item at `index` (`None` past the end). See
    /// [`Dict::get`](super::Dict::get): changing the copy changes nothing on the server.
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        self.obj.call(Op::ListGet(index as u64), decode_maybe)
    }

    /// Replaces the item at `index`; past the end is an
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub fn set(&self, index: usize, item: &T) -> Result<()> {
        let b = encode(item)?;
        self.obj
            .call(Op::ListSet(index as u64, Blob::borrowed(&b)), expect_ok)
    }

    /// Removes and returns the last item.
    pub fn pop(&self) -> Result<Option<T>> {
        self.obj.call(Op::ListPop, decode_maybe)
    }

    /// Number of items.
    pub fn len(&self) -> Result<usize> {
        self.obj.call(Op::Len, expect_u64).map(|n| n as usize)
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.obj.call(Op::Clear, expect_ok)
    }

    /// A copy of every item (a snapshot, taken atomically).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.obj.call(Op::ListToVec, decode_all)
    }
}

impl_proxy!(List<T>, Kind::List, tag::<T>());
