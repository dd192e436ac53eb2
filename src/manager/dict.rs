//! `Dict<K, V>`: a shared dictionary (Python's `Manager().dict()`).

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{
    ObjRef, decode, decode_all, decode_maybe, decode_one, encode, expect_bool, expect_ok,
    expect_u64, impl_proxy, unexpected,
};
use super::protocol::{Blob, Kind, Op, Response};
use super::updates;
use crate::error::Result;

/// A dictionary that lives in a [`Manager`](super::Manager) and that every process holding
/// a proxy to it sees (Python's `DictProxy`). Made with [`Manager::dict`](super::Manager::dict).
///
/// Keys are compared by their serialized (postcard) bytes: equal values of ordinary types
/// (integers, strings, tuples, derived structs) have equal bytes. Every method is one
/// atomic operation on the server. Iteration order (`keys`, `values`, `items`) is
/// unspecified.
///
/// A `Dict` is `Serialize`: pass it to a pool task, a [`Process`](crate::Process) or through
/// a [`Queue`](crate::Queue); the copy connects to the server on first use. The serialized
/// form carries the manager's auth key: keep it among your processes.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::Manager;
/// fn plus_one(v: Option<u64>) -> u64 { v.unwrap_or(0) + 1 }
/// let m = Manager::builder().thread(true).update_fn(plus_one).start().unwrap();
/// let d = m.dict::<String, u64>("counts").unwrap();
/// d.insert(&"a".into(), &1).unwrap();
/// assert_eq!(d.update(&"a".into(), plus_one).unwrap(), 2);
/// assert_eq!(d.get(&"a".into()).unwrap(), Some(2));
/// ```
pub struct Dict<K, V> {
    pub(crate) obj: ObjRef,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Dict<K, V> {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Dict {
            obj,
            _t: PhantomData,
        }
    }
}

pub(crate) fn tag<K, V>() -> String {
    format!(
        "dict<{}, {}>",
        std::any::type_name::<K>(),
        std::any::type_name::<V>()
    )
}

impl<K, V> Dict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The object's name on the manager.
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// Sets `key` to `value`; returns the value it had.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        let (k, v) = (encode(key)?, encode(value)?);
        self.obj.call(
            Op::DictInsert(Blob::borrowed(&k), Blob::borrowed(&v)),
            decode_maybe,
        )
    }

    /// A *copy* of the value at `key`.
    ///
    /// Changing the copy changes nothing on the server (Python's classic trap: `d[k].append(x)`
    /// on a managed dict is silently lost). To change a value in place, use
    /// [`update`](Self::update), which does the read-modify-write on the server, atomically.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = encode(key)?;
        self.obj.call(Op::DictGet(Blob::borrowed(&k)), decode_maybe)
    }

    /// Removes `key`; returns its value.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let k = encode(key)?;
        self.obj
            .call(Op::DictRemove(Blob::borrowed(&k)), decode_maybe)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        let k = encode(key)?;
        self.obj
            .call(Op::DictContains(Blob::borrowed(&k)), expect_bool)
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize> {
        self.obj.call(Op::Len, expect_u64).map(|n| n as usize)
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.obj.call(Op::Clear, expect_ok)
    }

    /// Every key (a snapshot, taken atomically).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.obj.call(Op::DictKeys, decode_all)
    }

    /// Every value (a snapshot).
    pub fn values(&self) -> Result<Vec<V>> {
        self.obj.call(Op::DictValues, decode_all)
    }

    /// Every `(key, value)` pair (a snapshot).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.obj.call(Op::DictItems, |r| match r {
            Response::Pairs(p) => p
                .iter()
                .map(|(k, v)| Ok((decode(&k.0)?, decode(&v.0)?)))
                .collect(),
            r => Err(unexpected(r)),
        })
    }

    /// Replaces the value at `key` with `f(current)` (`None` if absent) *on the server*,
    /// as one atomic operation, and returns the new value: the way to count, append or
    /// change a value in place from many processes at once.
    ///
    /// `f` is a `fn` item that the server allows
    /// ([`ManagerBuilder::update_fn`](super::ManagerBuilder::update_fn)): the request
    /// carries its name, never code, and the server runs its own registered function of
    /// that name. One the server does not know is an
    /// [`Error::NotFound`](crate::Error::NotFound) (a closure, which has no name, an
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) before anything is sent);
    /// one over another value type, an [`Error::TypeMismatch`](crate::Error::TypeMismatch).
    /// A panic in `f` fails this call with [`TaskError::Panicked`](crate::TaskError) and
    /// leaves the value as it was. `f` runs under the object's lock: keep it short.
    ///
    /// ```standalone_crate
    /// # multiproc::init();
    /// fn add_x(v: Option<Vec<String>>) -> Vec<String> {
    ///     let mut v = v.unwrap_or_default();
    ///     v.push("x".into());
    ///     v
    /// }
    /// let m = multiproc::Manager::builder().thread(true).update_fn(add_x).start().unwrap();
    /// let d = m.dict::<u8, Vec<String>>("tags").unwrap();
    /// d.update(&1, add_x).unwrap();
    /// assert_eq!(d.update(&1, add_x).unwrap(), ["x", "x"]);
    /// ```
    pub fn update<F>(&self, key: &K, f: F) -> Result<V>
    where
        F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    {
        let _ = f; // Only its name travels.
        let name = updates::name_of::<F>();
        updates::check_nameable(name)?;
        let k = encode(key)?;
        self.obj.call(
            Op::DictUpdate(
                Blob::borrowed(&k),
                name.into(),
                self.obj.tag.as_str().into(),
            ),
            decode_one,
        )
    }
}

impl_proxy!(Dict<K, V>, Kind::Dict, tag::<K, V>());
