//! The manager's messages: what a client asks and what the server answers (see `README.md`).
//!
//! Every message is one postcard-encoded frame of `ipc::connection` (CPython's framing).
//! Values travel as the postcard bytes of the user's type inside a [`Blob`], so the server
//! never needs to know the types: it stores bytes and a type tag.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::{Error, TaskError};

/// First bytes of a client's hello, so a stray peer is told apart from an old client.
pub(crate) const MAGIC: u32 = 0x6d70_6d67; // "mpmg"
/// Bumped on any incompatible change of the messages below.
pub(crate) const VERSION: u32 = 2;

/// Bytes that serialize as one postcard byte string (length + bytes, one copy), and
/// deserialize borrowed from the frame where they can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob<'a>(pub Cow<'a, [u8]>);

impl<'a> Blob<'a> {
    pub(crate) fn borrowed(b: &'a [u8]) -> Blob<'a> {
        Blob(Cow::Borrowed(b))
    }
    pub(crate) fn owned(b: Vec<u8>) -> Blob<'static> {
        Blob(Cow::Owned(b))
    }
    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.0.into_owned()
    }
}

impl Serialize for Blob<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Blob<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Blob<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Blob<'de>, E> {
                Ok(Blob::borrowed(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob<'de>, E> {
                Ok(Blob::owned(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob<'de>, E> {
                Ok(Blob::owned(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// The client's first message after authentication.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Hello {
    pub magic: u32,
    pub version: u32,
}

/// The server's answer to [`Hello`].
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Welcome {
    pub version: u32,
    /// Random per server run: object ids of another run are not valid here.
    pub instance: u64,
    /// The server closes a connection idle this long (µs); the client reconnects before.
    pub idle_timeout_us: Option<u64>,
}

/// What kind of object a name holds.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dict,
    List,
    Queue,
    Namespace,
    Value,
    Lock,
    RLock,
    Event,
    Semaphore,
    Condition,
    Barrier,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Queue => "queue",
            Kind::Namespace => "namespace",
            Kind::Value => "value",
            Kind::Lock => "lock",
            Kind::RLock => "rlock",
            Kind::Event => "event",
            Kind::Semaphore => "semaphore",
            Kind::Condition => "condition",
            Kind::Barrier => "barrier",
        }
    }
}

/// How long a blocking operation may wait on the server.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Do not wait at all (`try_` forms).
    No,
    /// Wait at most this many µs.
    Micros(u64),
    /// Wait as long as it takes.
    Forever,
}

/// One request: an operation on the object with id `obj` (0 for the server itself).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Request<'a> {
    pub obj: u64,
    #[serde(borrow)]
    pub op: Op<'a>,
}

/// Every operation. Unknown variants (a newer or broken client) fail to decode and close
/// that connection.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Op<'a> {
    /// Create the object `name` or look it up; `tag` must match its creator's.
    Open {
        name: Cow<'a, str>,
        kind: Kind,
        tag: Cow<'a, str>,
        /// Creation parameter: queue maxsize (0: unbounded), semaphore value (bit 63:
        /// bounded), barrier parties.
        param: u64,
        #[serde(borrow)]
        init: Option<Blob<'a>>,
    },
    Ping,
    /// Stop the server.
    Shutdown,
    Len,
    Clear,
    // dict
    DictInsert(#[serde(borrow)] Blob<'a>, #[serde(borrow)] Blob<'a>),
    DictGet(#[serde(borrow)] Blob<'a>),
    DictRemove(#[serde(borrow)] Blob<'a>),
    DictContains(#[serde(borrow)] Blob<'a>),
    DictKeys,
    DictValues,
    DictItems,
    /// Run the registered update function of this name on the value at the key; the tag
    /// is the caller's, checked against the object's as for `Open`.
    DictUpdate(#[serde(borrow)] Blob<'a>, Cow<'a, str>, Cow<'a, str>),
    // list
    ListPush(#[serde(borrow)] Blob<'a>),
    ListGet(u64),
    ListSet(u64, #[serde(borrow)] Blob<'a>),
    ListPop,
    ListExtend(#[serde(borrow)] Vec<Blob<'a>>),
    ListToVec,
    // queue
    QueuePut(#[serde(borrow)] Blob<'a>, Wait),
    QueueGet(Wait),
    QueueClose,
    QueueIsClosed,
    QueueMaxsize,
    // namespace
    NsSet(Cow<'a, str>, Cow<'a, str>, #[serde(borrow)] Blob<'a>),
    NsGet(Cow<'a, str>, Cow<'a, str>),
    NsRemove(Cow<'a, str>),
    NsFields,
    // value
    ValueGet,
    ValueSet(#[serde(borrow)] Blob<'a>),
    /// As `DictUpdate`: function name, the caller's tag.
    ValueUpdate(Cow<'a, str>, Cow<'a, str>),
    // lock, rlock, condition's lock, semaphore
    Acquire(Wait),
    Release,
    Locked,
    // event
    EventSet,
    EventClear,
    EventIsSet,
    EventWait(Wait),
    // semaphore
    SemRelease(u32),
    SemValue,
    // condition
    CondWait(Wait),
    CondNotify(u32),
    CondNotifyAll,
    // barrier
    BarrierWait(Wait),
    BarrierAbort,
    BarrierReset,
    BarrierInfo,
}

/// The server's answer to one request.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Response<'a> {
    Ok,
    Id(u64),
    Bool(bool),
    U64(u64),
    Blob(#[serde(borrow)] Blob<'a>),
    MaybeBlob(#[serde(borrow)] Option<Blob<'a>>),
    Blobs(#[serde(borrow)] Vec<Blob<'a>>),
    Pairs(#[serde(borrow)] Vec<(Blob<'a>, Blob<'a>)>),
    Names(Vec<String>),
    /// A lock was acquired; `owner_died`: its previous holder disconnected holding it.
    Acquired {
        owner_died: bool,
    },
    /// parties, n_waiting, broken
    BarrierInfo(u32, u32, bool),
    Err(WireError),
}

/// An error the server reports for one request (the connection goes on).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    TypeMismatch {
        name: String,
        expected: String,
        found: String,
    },
    NotFound(String),
    InvalidArgument(String),
    Empty,
    Full,
    Closed(String),
    Timeout(u64),
    BrokenBarrier,
    Task(TaskError),
    BinaryMismatch {
        expected: String,
        found: String,
    },
    ShuttingDown,
}

impl WireError {
    pub(crate) fn into_error(self, server: &str) -> Error {
        match self {
            WireError::TypeMismatch {
                name,
                expected,
                found,
            } => Error::TypeMismatch {
                name,
                expected,
                found,
            },
            WireError::NotFound(m) => Error::NotFound(m),
            WireError::InvalidArgument(m) => Error::InvalidArgument(m),
            WireError::Empty => Error::Empty,
            WireError::Full => Error::Full,
            WireError::Closed(m) => Error::Closed(m),
            WireError::Timeout(us) => Error::Timeout(std::time::Duration::from_micros(us)),
            WireError::BrokenBarrier => Error::BrokenBarrier,
            WireError::Task(t) => Error::Task(t),
            WireError::BinaryMismatch { expected, found } => Error::BinaryMismatch {
                path: format!("the manager at {server}"),
                expected,
                found,
            },
            WireError::ShuttingDown => {
                Error::Disconnected(format!("the manager at {server} is shutting down"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_is_a_plain_byte_string_and_borrows() {
        let bytes = postcard::to_stdvec(&Blob::borrowed(b"abc")).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&b"abc".to_vec()).unwrap());
        let b: Blob<'_> = postcard::from_bytes(&bytes).unwrap();
        assert!(matches!(b.0, Cow::Borrowed(_)));
        assert_eq!(&*b.0, b"abc");
    }

    #[test]
    fn unknown_op_code_does_not_decode() {
        let mut bytes = postcard::to_stdvec(&Request {
            obj: 1,
            op: Op::Ping,
        })
        .unwrap();
        *bytes.last_mut().unwrap() = 250;
        assert!(postcard::from_bytes::<Request<'_>>(&bytes).is_err());
    }
}
