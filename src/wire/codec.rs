//! Decoding a received message as a value of one type, exactly: the one place that decides
//! whether bytes *are* a `T` (connections, queue items, and pool results use it).
//!
//! postcard is not self-describing, so bytes of another type often decode as a prefix:
//! a pickled dict (`80 04 95 …`) reads as the `u64` 512. A message is a `T` only if
//! decoding it as one uses every byte. When it is not, a message that looks like a pickle
//! (what CPython's `Connection.send` writes) is named as one.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, TaskError};

/// Why bytes are not a `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// The Rust type the bytes were read as.
    pub(crate) expected: &'static str,
    why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Why {
    /// The bytes look like a pickle (protocol 2 or later).
    Pickle,
    /// A `T` decoded from the first bytes and `left` of `total` were left over.
    Trailing { left: usize, total: usize },
    /// The bytes do not have the shape of a `T`.
    Malformed(String),
    /// They have its shape, but `T`'s `Deserialize` refused the value.
    Refused(String),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Pickle => write!(
                f,
                "this is a pickled Python object: use `recv_bytes`, or `recv_pickle`"
            ),
            Why::Trailing { left, total } => write!(
                f,
                "{left} of its {total} bytes are left over after one, so it holds another type"
            ),
            Why::Malformed(m) => write!(f, "its bytes do not decode as one ({m})"),
            Why::Refused(m) => write!(f, "the value was refused: {m}"),
        }
    }
}

impl DecodeError {
    fn new(expected: &'static str, bytes: &[u8], why: Why) -> DecodeError {
        let why = if looks_like_pickle(bytes) {
            Why::Pickle
        } else {
            why
        };
        DecodeError { expected, why }
    }

    /// The same failure as a pool task's error (for results of the wrong type).
    #[allow(dead_code)] // the pool's result decoding is to call it (see the ipc README)
    pub(crate) fn into_task_error(self, index: Option<usize>) -> TaskError {
        TaskError::Deserialize {
            index,
            type_name: self.expected.to_string(),
            message: self.why.to_string(),
        }
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Error {
        match e.why {
            // The bytes were a `T`'s; its own checks said no.
            Why::Refused(message) => Error::Deserialize {
                type_name: e.expected,
                message,
            },
            why => Error::WrongType {
                expected: e.expected,
                found: why.to_string(),
            },
        }
    }
}

/// Whether `bytes` look like a pickle: `PROTO` (0x80) with protocol 2..=5 first, `STOP`
/// (`.`) last. Only asked of bytes that are not a `T`, so a `T` starting with 0x80 is safe.
fn looks_like_pickle(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) && bytes.ends_with(b".")
}

fn failure<T>(bytes: &[u8], e: postcard::Error) -> DecodeError {
    let why = match e {
        postcard::Error::SerdeDeCustom => Why::Refused(crate::wire::fdctx::describe(&e)),
        e => Why::Malformed(e.to_string()),
    };
    DecodeError::new(std::any::type_name::<T>(), bytes, why)
}

/// Appends the postcard encoding of `v` to `out`. The one encoder of every value that
/// crosses a process: unlike `postcard::to_io`, a short piece (a varint, a tag: most of
/// what small values are made of) is pushed byte by byte instead of through a `memcpy`
/// call, which was the largest single cost of encoding a map's `u64` items.
pub(crate) fn encode_append<T: Serialize + ?Sized>(
    v: &T,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    postcard::serialize_with_flavor(v, Append(out))
}

/// The postcard flavor of [`encode_append`].
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.0.push(b);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 8 {
            // Gathered in a register and written as one 8-byte word, then cut back to the
            // bytes used: no call, and the `Vec`'s length and capacity are read once
            // (pushed byte by byte, each byte reloaded them: a `u8` store may alias them).
            let mut word = 0u64;
            for (i, &b) in data.iter().enumerate() {
                word |= u64::from(b) << (8 * i);
            }
            let len = self.0.len() + data.len();
            self.0.extend_from_slice(&word.to_le_bytes());
            self.0.truncate(len);
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    #[inline]
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes one `T` from the start of `bytes`, returning it and the bytes after it (for
/// several values packed back to back; the caller checks that nothing is left at the end).
pub(crate) fn decode_take<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), DecodeError> {
    postcard::take_from_bytes::<T>(bytes).map_err(|e| failure::<T>(bytes, e))
}

/// Decodes `bytes` as exactly one `T`: every byte must be used.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (v, rest) = decode_take::<T>(bytes)?;
    if !rest.is_empty() {
        let why = Why::Trailing {
            left: rest.len(),
            total: bytes.len(),
        };
        return Err(DecodeError::new(std::any::type_name::<T>(), bytes, why));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_append_writes_what_postcard_writes_after_what_was_there() {
        let v = (
            7u8,
            300u64,
            "a string longer than sixteen bytes",
            vec![1u16, 2, 3],
        );
        let mut out = vec![0xAA];
        encode_append(&v, &mut out).unwrap();
        assert_eq!(out[0], 0xAA);
        assert_eq!(&out[1..], &postcard::to_stdvec(&v).unwrap()[..]);
    }

    /// Every short piece size (a varint of 1 to 10 bytes; strings across the 8-byte word),
    /// appended after bytes already there, at every spare capacity from none up.
    #[test]
    fn short_pieces_of_every_size_append_exactly() {
        let varints: Vec<u64> = (0..10).map(|k| 1u64 << (7 * k).min(63)).collect();
        let strings: Vec<String> = (0..=17).map(|n| "x".repeat(n)).collect();
        let v = (&varints, &strings, u64::MAX, 0u8, -1i64);
        let want = postcard::to_stdvec(&v).unwrap();
        for spare in 0..12 {
            let mut out = Vec::with_capacity(3 + spare);
            out.extend_from_slice(&[1, 2, 3]);
            encode_append(&v, &mut out).unwrap();
            assert_eq!(out[..3], [1, 2, 3]);
            assert_eq!(&out[3..], &want[..], "spare capacity {spare}");
        }
    }

    #[test]
    fn exact_prefix_and_pickle() {
        assert_eq!(decode_exact::<u64>(&[0x80, 0x01]), Ok(128));
        let two = postcard::to_stdvec(&(5u32, 7u32)).unwrap();
        let e = decode_exact::<u32>(&two).unwrap_err();
        assert!(
            matches!(e.why, Why::Trailing { left: 1, total: 2 }),
            "{e:?}"
        );
        // pickle.dumps({'a': 1}, protocol=4)
        let pickle = b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.";
        let e = Error::from(decode_exact::<u64>(pickle).unwrap_err());
        assert_eq!(
            e.to_string(),
            "expected a message of type u64, but this is a pickled Python object: \
             use `recv_bytes`, or `recv_pickle`"
        );
        let e = decode_exact::<String>(&[0xff, 0xff]).unwrap_err();
        assert!(matches!(e.why, Why::Malformed(_)), "{e:?}");
        let t = e.into_task_error(Some(3));
        assert!(matches!(t, TaskError::Deserialize { index: Some(3), .. }));
    }
}
