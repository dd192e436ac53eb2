//! Objects to and from Python peers: `Connection::send_pickle` / `recv_pickle`.
//!
//! A Python program's `conn.send(obj)` pickles `obj` into one message and `conn.recv()`
//! unpickles one; these do the same on the Rust side with serde-pickle, for plain data:
//!
//! | Python                  | Rust                                                    |
//! |-------------------------|---------------------------------------------------------|
//! | `None`                  | `()`, `Option::None`                                    |
//! | `bool`, `int`, `float`  | `bool`, integers (up to 64 bits), `f32`/`f64`           |
//! | `str`                   | `String`, `&str`                                        |
//! | `bytes`                 | `serde_bytes::ByteBuf` (a plain `Vec<u8>` is a list)    |
//! | `list`, `tuple`         | `Vec<T>`, tuples                                        |
//! | `dict`                  | `HashMap`, `BTreeMap`, structs (by field name)          |
//!
//! Unpickling here never runs code: a pickle that names a Python class or function (a
//! `GLOBAL` or `REDUCE`) is an [`Error::Deserialize`], not an import, so a peer's bytes are
//! data only. Messages stay bounded by [`Connection::max_message_size`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

use super::Connection;
use crate::error::{Error, Result};

impl Connection {
    /// Sends `value` pickled, as Python's `conn.send(obj)` does, so a Python peer gets it
    /// from `conn.recv()`. Structs become dicts, sequences lists, tuples tuples.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let (a, b) = multiproc::Pipe::duplex().unwrap();
    /// let mut scores = BTreeMap::new();
    /// scores.insert("ada".to_string(), 3);
    /// a.send_pickle(&(1, "two", vec![3.0], scores.clone())).unwrap();
    /// let got: (i32, String, Vec<f64>, BTreeMap<String, i32>) = b.recv_pickle().unwrap();
    /// assert_eq!(got, (1, "two".to_string(), vec![3.0], scores));
    /// ```
    pub fn send_pickle<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let bytes = serde_pickle::to_vec(&value, serde_pickle::SerOptions::new()).map_err(|e| {
            Error::Serialize {
                type_name: std::any::type_name::<T>(),
                message: format!("{e} (pickle carries plain data only)"),
            }
        })?;
        self.send_bytes(&bytes)
    }

    /// Receives one pickled object, as Python's `conn.recv()` does, and decodes it as `T`.
    ///
    /// ```
    /// let (a, b) = multiproc::Pipe::duplex().unwrap();
    /// a.send_pickle(&Some(7u8)).unwrap();
    /// a.send_pickle(&None::<u8>).unwrap();
    /// assert_eq!(b.recv_pickle::<Option<u8>>().unwrap(), Some(7));
    /// assert_eq!(b.recv_pickle::<Option<u8>>().unwrap(), None);
    /// a.send_pickle("not a number").unwrap();
    /// assert!(matches!(b.recv_pickle::<u8>(), Err(multiproc::Error::Deserialize { .. })));
    /// ```
    pub fn recv_pickle<T: DeserializeOwned>(&self) -> Result<T> {
        unpickle(&self.recv_bytes()?)
    }

    /// Like [`recv_pickle`](Connection::recv_pickle), giving up after `timeout`
    /// ([`Error::Timeout`]).
    pub fn recv_pickle_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        unpickle(&self.recv_bytes_timeout(timeout)?)
    }
}

pub(crate) fn unpickle<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    // `Deserialize` impls are user code: a panic in one fails this message, not the caller.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serde_pickle::from_slice(bytes, serde_pickle::DeOptions::new())
    }));
    let message = match decoded {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => e.to_string(),
        Err(p) => format!(
            "the Deserialize impl panicked: {}",
            crate::bootstrap::task::take_panic(&*p).0
        ),
    };
    Err(Error::Deserialize {
        type_name: std::any::type_name::<T>(),
        message: format!("{message} (from a pickled message)"),
    })
}
