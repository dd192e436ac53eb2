//! Message passing between processes: pipes, connections, queues. See `README.md` beside
//! this file for the queue ring and the authentication handshake.

pub(crate) mod auth;
pub(crate) mod codec;
pub mod connection;
pub(crate) mod fdctx;
pub(crate) mod pickle;
mod pipe;
mod queue;
pub(crate) mod ring;

pub use connection::Connection;
pub use pipe::Pipe;
pub use queue::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};
