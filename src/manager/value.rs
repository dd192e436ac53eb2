//! `Value<T>`: one shared value (Python's `Manager().Value()`).

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{ObjRef, decode_one, encode, expect_ok, impl_proxy};
use super::protocol::{Blob, Kind, Op};
use crate::error::Result;

/// One value of type `T` that lives in a [`Manager`](super::Manager). Made with
/// [`Manager::value`](super::Manager::value).
///
/// ```standalone_crate
/// # multiproc::init();
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let v = m.value("best", 0.5f64).unwrap();
/// v.set(&0.75).unwrap();
/// assert_eq!(v.update(|x| x * 2.0).unwrap(), 1.5);
/// assert_eq!(v.get().unwrap(), 1.5);
/// ```
pub struct Value<T> {
    pub(crate) obj: ObjRef,
    _t: PhantomData<fn() -> T>,
}

impl<T> Value<T> {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Value {
            obj,
            _t: PhantomData,
        }
    }
}

pub(crate) fn tag<T>() -> String {
    format!("value<{}>", std::any::type_name::<T>())
}

impl<T: Serialize + DeserializeOwned> Value<T> {
    /// The object's name on the manager.
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// A copy of the value (see [`Dict::get`](super::Dict::get) about copies).
    pub fn get(&self) -> Result<T> {
        self.obj.call(Op::ValueGet, decode_one)
    }

    /// Replaces the value.
    pub fn set(&self, v: &T) -> Result<()> {
        let b = encode(v)?;
        self.obj.call(Op::ValueSet(Blob::borrowed(&b)), expect_ok)
    }

    /// Replaces the value with `f(value)` on the server, atomically, and returns the new
    /// value; the rules of [`Dict::update`](super::Dict::update) apply.
    pub fn update<F>(&self, f: F) -> Result<T>
    where
        F: Fn(T) -> T + Copy + Send + Sync + 'static,
        T: 'static,
    {
        // The server hands the function an `Option<T>` (always `Some` for a value).
        let code = crate::bootstrap::ship_task::<_, Option<T>, T>(move |v: Option<T>| match v {
            Some(v) => f(v),
            None => unreachable!("a manager value always has a value"),
        });
        self.obj.call_shipping(
            Op::ValueUpdate(code, self.obj.tag.as_str().into()),
            decode_one,
        )
    }
}

impl_proxy!(Value<T>, Kind::Value, tag::<T>());
