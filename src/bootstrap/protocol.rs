//! Messages between a parent and its fork server or spawned children (postcard over a
//! `SOCK_SEQPACKET` socket, one message per packet, fds attached with `SCM_RIGHTS`).

use serde::{Deserialize, Serialize};

use crate::error::ExitStatus;

/// Payloads up to this size travel inside the packet; larger ones in a memfd.
pub(crate) const INLINE_MAX: usize = 32 * 1024;

/// Parent to fork server, or parent to spawned child.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Start {
    /// Matches the `Started` reply.
    pub id: u64,
    /// Code offset of the child's entry point.
    pub entry: i64,
    /// The entry point's payload, or `None` if it is in the last fd (a memfd).
    pub payload: Option<Vec<u8>>,
    /// Length of the payload in the memfd.
    pub payload_len: u64,
}

/// Fork server or spawned child to parent.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Reply {
    /// First message: who we are.
    Hello { build_id: String, pid: u32 },
    /// A child was forked for request `id`.
    Started { id: u64, pid: u32 },
    /// Forking for request `id` failed.
    StartFailed { id: u64, error: String },
    /// A forked child exited.
    Exited { pid: u32, status: ExitStatus },
    /// Instead of a hello: this process runs the program's own code (it asked to start a
    /// child) although multiproc started it as a worker, because `init()` did not run.
    NotInitialized { pid: u32 },
}
