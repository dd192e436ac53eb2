//! `Namespace`: named fields of any serializable types (Python's `Manager().Namespace()`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{ObjRef, decode_one, encode, expect_bool, expect_ok, impl_proxy, unexpected};
use super::protocol::{Blob, Kind, Op, Response};
use crate::error::Result;

/// Named fields, each holding a value of its own serializable type, that live in a
/// [`Manager`](super::Manager) (Python's `Namespace`, where `ns.x = 1` is `ns.set("x", &1)`).
/// Made with [`Manager::namespace`](super::Manager::namespace).
///
/// Each field remembers the type it was set with; reading it as another type is an
/// [`Error::TypeMismatch`](crate::Error::TypeMismatch), a missing field an
/// [`Error::NotFound`](crate::Error::NotFound).
///
/// ```standalone_crate
/// # multiproc::init();
/// let m = multiproc::Manager::builder().thread(true).start().unwrap();
/// let ns = m.namespace("config").unwrap();
/// ns.set("epochs", &10u32).unwrap();
/// ns.set("name", &"run-1".to_string()).unwrap();
/// assert_eq!(ns.get::<u32>("epochs").unwrap(), 10);
/// assert!(matches!(ns.get::<String>("epochs"), Err(multiproc::Error::TypeMismatch { .. })));
/// assert_eq!(ns.fields().unwrap(), ["epochs", "name"]);
/// ```
pub struct Namespace {
    pub(crate) obj: ObjRef,
}

impl Namespace {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        Namespace { obj }
    }

    /// The object's name on the manager.
    pub fn name(&self) -> &str {
        &self.obj.name
    }

    /// Sets `field` to `value` (of any serializable type).
    pub fn set<T: Serialize>(&self, field: &str, value: &T) -> Result<()> {
        let b = encode(value)?;
        self.obj.call(
            Op::NsSet(
                field.into(),
                std::any::type_name::<T>().into(),
                Blob::borrowed(&b),
            ),
            expect_ok,
        )
    }

    /// A copy of `field`'s value.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<T> {
        self.obj.call(
            Op::NsGet(field.into(), std::any::type_name::<T>().into()),
            decode_one,
        )
    }

    /// Removes `field`; returns whether it was there.
    pub fn remove(&self, field: &str) -> Result<bool> {
        self.obj.call(Op::NsRemove(field.into()), expect_bool)
    }

    /// The names of the fields, sorted.
    pub fn fields(&self) -> Result<Vec<String>> {
        self.obj.call(Op::NsFields, |r| match r {
            Response::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        })
    }
}

impl_proxy!(Namespace, Kind::Namespace, "namespace".to_string());
