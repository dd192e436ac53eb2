//! Shared memory mappings with a safe, bounds-checked interface.

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::mm::{MapFlags, ProtFlags};

use crate::error::{Error, Result};

/// A `MAP_SHARED` mapping of a file (memfd or POSIX shm), unmapped on drop.
///
/// Other processes may map the same memory, so its bytes can change at any time; the
/// accessors copy in and out, and atomics are handed out only at aligned offsets.
#[derive(Debug)]
pub(crate) struct SharedMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all access goes through atomics or copies.
unsafe impl Send for SharedMapping {}
// SAFETY: as above; `&SharedMapping` only allows atomic operations and bounded copies.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Maps `len` bytes of `fd` read-write and shared.
    pub(crate) fn map(fd: impl AsFd, len: usize) -> Result<SharedMapping> {
        if len == 0 {
            return Err(Error::InvalidArgument("cannot map zero bytes".into()));
        }
        // SAFETY: a fresh mapping at an address the kernel chooses aliases nothing in Rust.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| Error::io("mmap", e))?;
        Ok(SharedMapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned null"),
            len,
        })
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The base address (for `sys::shm`'s slice views, and pointer identity).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn check(&self, off: usize, len: usize, align: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "shared memory access out of bounds"
        );
        assert!(off.is_multiple_of(align), "misaligned shared memory access");
    }

    /// The `AtomicU32` at byte offset `off` (4-aligned).
    pub(crate) fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`, and
        // AtomicU32 has the layout of u32 and tolerates concurrent access from anyone.
        unsafe { &*(self.ptr.as_ptr().add(off) as *const AtomicU32) }
    }

    /// The `AtomicU64` at byte offset `off` (8-aligned).
    pub(crate) fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: as for `atomic_u32`.
        unsafe { &*(self.ptr.as_ptr().add(off) as *const AtomicU64) }
    }

    /// Copies `src` into the mapping at `off`.
    ///
    /// The protocol using the mapping must ensure nobody reads these bytes concurrently.
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        self.check(off, src.len(), 1);
        // SAFETY: destination in bounds (checked); `src` is a Rust slice that cannot overlap
        // memory we only ever access through this raw pointer.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(off), src.len())
        }
    }

    /// Copies bytes at `off` out of the mapping into `dst`.
    pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
        self.check(off, dst.len(), 1);
        // SAFETY: source in bounds (checked); `dst` is exclusive Rust memory.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        }
    }

    /// Appends `len` bytes at `off` to `dst` without zero-filling first.
    pub(crate) fn read_into_vec(&self, off: usize, len: usize, dst: &mut Vec<u8>) {
        self.check(off, len, 1);
        dst.reserve(len);
        let old = dst.len();
        // SAFETY: `reserve` made room for `len` more bytes; we initialise exactly those bytes
        // by the copy before publishing them with `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(off),
                dst.as_mut_ptr().add(old),
                len,
            );
            dst.set_len(old + len);
        }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping; no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An anonymous memory file of `size` bytes (close-on-exec), for sharing with children.
pub(crate) fn memfd(name: &str, size: u64) -> Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| Error::io("memfd_create", e))?;
    rustix::fs::ftruncate(&fd, size).map_err(|e| Error::io("ftruncate memfd", e))?;
    Ok(fd)
}

/// Like [`memfd`], but its size is sealed (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`).
/// For memory the parent maps and children can reach: a process that reopens the file
/// (through `/proc/<pid>/fd`) cannot shrink it, which would make the parent's next access
/// to the lost pages a SIGBUS. Its contents stay writable.
pub(crate) fn sealed_memfd(name: &str, size: u64) -> Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| Error::io("memfd_create", e))?;
    rustix::fs::ftruncate(&fd, size).map_err(|e| Error::io("ftruncate memfd", e))?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(|e| Error::io("seal memfd", e))?;
    Ok(fd)
}
