//! Message passing between processes: pipes, connections, queues. See `README.md` beside
//! this file for the queue ring and the authentication handshake.

pub(crate) mod auth;
pub mod connection;
mod listener;
pub(crate) mod pickle;
mod pipe;
mod queue;

pub use connection::Connection;
pub use pipe::Pipe;
pub use queue::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};
