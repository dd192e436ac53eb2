//! Shared memory: named segments (Python-compatible). `Value`/`Array` in them are in
//! `sharedctypes.rs`, above this module and `sync`.
//! See `README.md` beside this file for the layout and the owner registry.

pub(crate) mod registry;
mod shared_memory;

pub use crate::sys::SharedMapping;
/// For long-lived owners (the process pool's manager): see
/// [`SharedMemory::sweep_dead_owners`].
pub(crate) use registry::sweep_dead_owners;
pub use shared_memory::SharedMemory;
