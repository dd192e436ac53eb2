//! `Value<T>`: one shared value (Python's `Manager().Value()`).

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{ObjRef, decode_one, encode, expect_ok, impl_proxy};
use super::protocol::{Blob, Kind, Op};
use super::updates::{self, UpdateFn};
use crate::error::Result;

/// One value of type `T` that lives in a [`Manager`](super::Manager). Made with
/// [`Manager::value`](super::Manager::value).
///
/// ```standalone_crate
/// # multiproc::init();
/// fn double(x: f64) -> f64 { x * 2.0 }
/// let m = multiproc::Manager::builder().thread(true).update_fn(double).start().unwrap();
/// let v = m.value("best", 0.5f64).unwrap();
/// v.set(&0.75).unwrap();
/// assert_eq!(v.update(double).unwrap(), 1.5);
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
    /// value. `f` is a `fn(T) -> T` or `fn(Option<T>) -> T` (given `Some`) that the server
    /// allows; the rules of [`Dict::update`](super::Dict::update) apply.
    pub fn update<Args, F: UpdateFn<T, Args>>(&self, f: F) -> Result<T> {
        let _ = f; // Only its name travels.
        let name = updates::name_of::<F>();
        updates::check_nameable(name)?;
        self.obj.call(
            Op::ValueUpdate(name.into(), self.obj.tag.as_str().into()),
            decode_one,
        )
    }
}

impl_proxy!(Value<T>, Kind::Value, tag::<T>());
