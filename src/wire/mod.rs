//! How values cross a process boundary, below everything that sends them: postcard
//! decoding that names a wrong type (`codec.rs`), and the fds that travel beside a value
//! (`fdctx.rs`). Used by `ipc`, the rings, `process`, `process_pool` and `bootstrap`;
//! it uses only `sys` and `error`. See `ipc/README.md` for both protocols.

pub(crate) mod codec;
pub(crate) mod fdctx;
