//! Shared memory mappings with a safe, bounds-checked interface.
//!
//! Memory that another process maps may change at any instant, so no safe function here
//! hands out a Rust reference (`&[u8]`, `&T`) to its bytes: a `&[u8]` promises the compiler
//! that the bytes do not change while it lives, and a `&mut` that nobody else touches them.
//! Safe access is by *copies made of atomic accesses* (the bytes may be torn by a concurrent
//! writer, never undefined), and by atomics at aligned offsets. Slice views exist, as
//! `unsafe fn`s whose caller promises that nobody writes (or, for `&mut`, touches) the
//! bytes while the view lives.
//!
//! **One access size per location.** Rust's memory model forbids racing atomic accesses of
//! different sizes to the same byte when one of them writes. So the copies follow a fixed
//! rule: every 8-aligned word that lies wholly inside the mapping is accessed as one
//! `AtomicU64` (a copy that covers only part of a word merges its bytes into it with a
//! compare-and-swap), and the bytes after the last whole word as `AtomicU8`s. The atomic
//! word views handed out ([`SharedMapping::atomic_u64s`]) are those same words.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use bytemuck::Pod;
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::{Error, Result};

/// The memory of a [`SharedMemory`](crate::SharedMemory) segment (which derefs to this):
/// bytes that other handles, threads and processes may read and write at any time.
///
/// [`read_at`](SharedMapping::read_at), [`write_at`](SharedMapping::write_at),
/// [`to_vec`](SharedMapping::to_vec) and [`atomic_u64s`](SharedMapping::atomic_u64s) are
/// safe whatever anyone else does: a copy racing with a writer may see part of each write
/// (as Python's `shm.buf` does), never undefined bytes. The slice views
/// ([`as_slice`](SharedMapping::as_slice) and the others) are `unsafe`: a Rust slice
/// promises that nobody changes the bytes while it lives, which only the program's own
/// protocol (a [`Lock`](crate::Lock), a hand-over) can keep.
///
/// ```
/// use multiproc::SharedMemory;
/// let shm = SharedMemory::create(64).unwrap();
/// let other = shm.clone_handle().unwrap(); // another mapping of the same memory
/// shm.write_at(8, b"hello").unwrap();
/// let mut buf = [0u8; 5];
/// other.read_at(8, &mut buf).unwrap();
/// assert_eq!(&buf, b"hello");
/// assert!(shm.write_at(60, b"hello").is_err()); // out of bounds: an error, not a panic
/// ```
pub struct SharedMapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl std::fmt::Debug for SharedMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMapping")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

// SAFETY: the mapping is plain shared memory; all safe access goes through atomics.
unsafe impl Send for SharedMapping {}
// SAFETY: as above; `&SharedMapping` only allows atomic operations and atomic copies.
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
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a mapping has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The base address, for code that brings its own protocol and its own `unsafe` (a
    /// baseline benchmark, a foreign library that takes a pointer). Getting the pointer is
    /// safe; what may be done through it is what [`as_mut_slice`](Self::as_mut_slice)'s
    /// Safety section says, for the bytes touched. The mapping (and the pointer) lives as
    /// long as the handle.
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4096).unwrap();
    /// assert!(shm.as_ptr().cast::<u64>().is_aligned()); // page-aligned
    /// ```
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    #[inline]
    fn check(&self, off: usize, len: usize, align: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "shared memory access out of bounds"
        );
        assert!(off.is_multiple_of(align), "misaligned shared memory access");
    }

    fn check_range(&self, off: usize, len: usize) -> Result<()> {
        if off.checked_add(len).is_some_and(|end| end <= self.len) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "bytes {off}..{} are outside the {} bytes of shared memory",
                off.saturating_add(len),
                self.len
            )))
        }
    }

    /// The `AtomicU32` at byte offset `off` (4-aligned).
    #[inline]
    pub(crate) fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`, and
        // AtomicU32 has the layout of u32 and tolerates concurrent access from anyone.
        unsafe { &*(self.ptr.as_ptr().add(off) as *const AtomicU32) }
    }

    /// The `AtomicU64` at byte offset `off` (8-aligned).
    #[inline]
    pub(crate) fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: as for `atomic_u32`.
        unsafe { &*(self.ptr.as_ptr().add(off) as *const AtomicU64) }
    }

    fn atomic_u8(&self, off: usize) -> &AtomicU8 {
        assert!(off < self.len, "shared memory access out of bounds");
        // SAFETY: in bounds (checked); AtomicU8 has the layout of u8.
        unsafe { &*(self.ptr.as_ptr().add(off) as *const AtomicU8) }
    }

    /// Every whole 8-byte word of the memory, as atomics (a trailing part word is left
    /// out). Sound to share with anyone: these are the very words the copies use.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let shm = multiproc::SharedMemory::create(20).unwrap();
    /// let words = shm.atomic_u64s();
    /// assert_eq!(words.len(), 2);
    /// words[1].fetch_add(5, Ordering::SeqCst);
    /// let mut b = [0u8; 8];
    /// shm.read_at(8, &mut b).unwrap();
    /// assert_eq!(u64::from_ne_bytes(b), 5);
    /// ```
    pub fn atomic_u64s(&self) -> &[AtomicU64] {
        // SAFETY: `len / 8` whole words from the page-aligned base are in bounds and
        // aligned; AtomicU64 tolerates concurrent access; the slice lives as long as the
        // mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU64>(), self.len / 8) }
    }

    /// Where the whole words end.
    fn words_end(&self) -> usize {
        self.len / 8 * 8
    }

    /// Copies `dst.len()` bytes at `off` out of the mapping (atomic accesses; see the
    /// module docs). Panics if out of bounds.
    fn copy_out(&self, off: usize, dst: &mut [MaybeUninit<u8>]) {
        self.check(off, dst.len(), 1);
        let end = off + dst.len();
        // One part word or byte at a time, by the one-access-size rule (whole words are
        // the body's, below).
        let step = |i: usize, dst: &mut [MaybeUninit<u8>]| -> usize {
            if i < self.words_end() {
                let w = i & !7;
                let bytes = self.atomic_u64(w).load(Relaxed).to_ne_bytes();
                let to = (end - w).min(8);
                for (d, s) in dst[i - off..w + to - off].iter_mut().zip(&bytes[i - w..to]) {
                    d.write(*s);
                }
                w + to
            } else {
                dst[i - off].write(self.atomic_u8(i).load(Relaxed));
                i + 1
            }
        };
        let (mut i, body) = (off, self.whole_words(off, end));
        if i < body.start {
            i = step(i, dst);
        }
        // The whole words in a tight loop: one 8-byte load and store each (a loop of
        // bytes becomes a `memcpy` call per word, and a bounds check per word costs more
        // than the copy).
        let words = &self.atomic_u64s()[body.start / 8..body.end / 8];
        let d = &mut dst[body.start - off..body.end - off];
        for (w, d) in words.iter().zip(d.chunks_exact_mut(8)) {
            let d: &mut [MaybeUninit<u8>; 8] = d.try_into().expect("8");
            *d = w.load(Relaxed).to_ne_bytes().map(MaybeUninit::new);
        }
        i = i.max(body.end);
        while i < end {
            i = step(i, dst);
        }
    }

    /// The whole words (8-aligned, before [`words_end`](Self::words_end)) that lie wholly
    /// inside bytes `off..end`, as a byte range; empty, at `off`, if there are none.
    fn whole_words(&self, off: usize, end: usize) -> std::ops::Range<usize> {
        let first = off.next_multiple_of(8);
        let last = end.min(self.words_end()) & !7;
        if first < last { first..last } else { off..off }
    }

    /// Copies `src` into the mapping at `off` (atomic accesses; see the module docs).
    /// Panics if out of bounds.
    fn copy_in(&self, off: usize, src: &[u8]) {
        self.check(off, src.len(), 1);
        let end = off + src.len();
        // One part word or byte at a time (whole words are the body's, below).
        let step = |i: usize| -> usize {
            if i < self.words_end() {
                let w = i & !7;
                let (from, to) = (i - w, (end - w).min(8));
                let part = &src[i - off..w + to - off];
                // Only part of the word is ours: merge, keeping the other bytes as they
                // are at the instant of the swap.
                let _ = self.atomic_u64(w).fetch_update(Relaxed, Relaxed, |v| {
                    let mut b = v.to_ne_bytes();
                    b[from..to].copy_from_slice(part);
                    Some(u64::from_ne_bytes(b))
                });
                w + to
            } else {
                self.atomic_u8(i).store(src[i - off], Relaxed);
                i + 1
            }
        };
        let (mut i, body) = (off, self.whole_words(off, end));
        if i < body.start {
            i = step(i);
        }
        let words = &self.atomic_u64s()[body.start / 8..body.end / 8];
        let s = &src[body.start - off..body.end - off];
        for (w, s) in words.iter().zip(s.chunks_exact(8)) {
            w.store(u64::from_ne_bytes(s.try_into().expect("8")), Relaxed);
        }
        i = i.max(body.end);
        while i < end {
            i = step(i);
        }
    }

    /// Copies `src` into the memory at byte `off`. Other handles and processes may write
    /// the same bytes at the same time: each byte then holds one of the values written.
    /// [`Error::InvalidArgument`] if the range is outside the memory.
    pub fn write_at(&self, off: usize, src: &[u8]) -> Result<()> {
        self.check_range(off, src.len())?;
        self.copy_in(off, src);
        Ok(())
    }

    /// Copies the bytes at `off` into `dst`. A concurrent writer's bytes may be seen in
    /// part. [`Error::InvalidArgument`] if the range is outside the memory.
    pub fn read_at(&self, off: usize, dst: &mut [u8]) -> Result<()> {
        self.check_range(off, dst.len())?;
        self.read(off, dst);
        Ok(())
    }

    /// A copy of the whole memory.
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(3).unwrap();
    /// shm.write_at(1, &[7]).unwrap();
    /// assert_eq!(shm.to_vec(), [0, 7, 0]);
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.read_into_vec(0, self.len, &mut v);
        v
    }

    /// Writes the bytes of `parts`, one after another, at `off` (8-aligned), then zeros up
    /// to the next multiple of 8: whole-word stores only, for words this writer owns whole
    /// (a ring's frame, padding included). [`write`](Self::write) merges a part word with
    /// the bytes around it by a compare-and-swap, since another writer may store those:
    /// a locked instruction on a line the reader has just read, which waits a cross-core
    /// round trip, and a frame of a few parts paid it at each part's end. Panics if out of
    /// bounds or misaligned.
    pub(crate) fn write_words(&self, off: usize, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(off.is_multiple_of(8), "write_words at a misaligned offset");
        self.check(off, len.next_multiple_of(8), 1);
        let words = &self.atomic_u64s()[off / 8..(off + len).div_ceil(8)];
        // `word[..fill]` are bytes not yet stored; the rest stay zero (the padding).
        let (mut next, mut word, mut fill) = (0, [0u8; 8], 0);
        for part in parts {
            let mut p = *part;
            if fill > 0 {
                let take = (8 - fill).min(p.len());
                word[fill..fill + take].copy_from_slice(&p[..take]);
                (fill, p) = (fill + take, &p[take..]);
                if fill < 8 {
                    continue;
                }
                words[next].store(u64::from_ne_bytes(word), Relaxed);
                next += 1;
            }
            let chunks = p.chunks_exact(8);
            let rest = chunks.remainder();
            for (w, c) in words[next..].iter().zip(chunks) {
                w.store(u64::from_ne_bytes(c.try_into().expect("8")), Relaxed);
            }
            next += p.len() / 8;
            word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            fill = rest.len();
        }
        if fill > 0 {
            words[next].store(u64::from_ne_bytes(word), Relaxed);
        }
    }

    /// Copies `src` into the mapping at `off` (panics if out of bounds: for the crate's own
    /// layouts, where that is a bug).
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        self.copy_in(off, src);
    }

    /// Copies bytes at `off` out of the mapping into `dst` (panics if out of bounds).
    pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
        // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and `copy_out` only writes
        // initialised bytes, so `dst` stays initialised.
        let dst = unsafe { &mut *(dst as *mut [u8] as *mut [MaybeUninit<u8>]) };
        self.copy_out(off, dst);
    }

    /// Appends `len` bytes at `off` to `dst` without zero-filling first.
    pub(crate) fn read_into_vec(&self, off: usize, len: usize, dst: &mut Vec<u8>) {
        dst.reserve(len);
        let old = dst.len();
        self.copy_out(off, &mut dst.spare_capacity_mut()[..len]);
        // SAFETY: `copy_out` initialised exactly these `len` bytes (it panics, leaving the
        // length alone, if the range is out of bounds).
        unsafe { dst.set_len(old + len) };
    }

    /// Reads the `T` at `off` (atomic copy: may be torn by a concurrent writer; every
    /// bit pattern is a valid `T`).
    #[inline]
    pub(crate) fn read_pod<T: Pod>(&self, off: usize) -> T {
        // A whole aligned word is one load of the very `AtomicU64` the copies use (the
        // README's one-access-size rule), not the byte loop: a `Value<u64>` counted under a
        // contended lock spent most of its critical section in that loop, which made the
        // lock look half as fast as a pthread mutex. (A smaller value shares its word with
        // others and goes through the loop's merge.)
        if size_of::<T>() == 8 && off.is_multiple_of(8) {
            let word = self.atomic_u64(off).load(Relaxed);
            return bytemuck::pod_read_unaligned(&word.to_ne_bytes());
        }
        let mut v = T::zeroed();
        self.read(off, bytemuck::bytes_of_mut(&mut v));
        v
    }

    /// Writes `v` at `off` (atomic copy).
    #[inline]
    pub(crate) fn write_pod<T: Pod>(&self, off: usize, v: T) {
        if size_of::<T>() == 8 && off.is_multiple_of(8) {
            let word = u64::from_ne_bytes(bytemuck::bytes_of(&v).try_into().expect("8 bytes"));
            return self.atomic_u64(off).store(word, Relaxed);
        }
        self.write(off, bytemuck::bytes_of(&v));
    }

    /// The whole memory as a byte slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody may write these bytes: not through this or any other
    /// handle, thread or process (a writer in another process is as bad as one here). A
    /// [`Lock`](crate::Lock) held by every writer, or a hand-over such as "the writer has
    /// exited", makes that true. Take the slice again after each acquisition rather than
    /// holding one across releases.
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4).unwrap();
    /// shm.write_at(0, b"abcd").unwrap();
    /// // SAFETY: no other handle to this segment exists, and nothing writes meanwhile.
    /// assert_eq!(unsafe { shm.as_slice() }, b"abcd");
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes that live as long as `self`; u8 has no
        // invalid bit patterns; the caller excludes writers (see above).
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The whole memory as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody else may read or write these bytes: not through this
    /// or any other handle (a [`clone_handle`](crate::SharedMemory::clone_handle) maps the
    /// same memory), thread or process.
    ///
    /// ```compile_fail,E0133
    /// // Safe code cannot get two `&mut` views of one segment:
    /// let mut a = multiproc::SharedMemory::create(8).unwrap();
    /// let mut b = a.clone_handle().unwrap();
    /// let (x, y) = (a.as_mut_slice(), b.as_mut_slice()); // error: call to unsafe function
    /// x[0] = y[0];
    /// ```
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4).unwrap();
    /// // SAFETY: no other handle to this segment exists.
    /// unsafe { shm.as_mut_slice() }.copy_from_slice(b"wxyz");
    /// assert_eq!(shm.to_vec(), b"wxyz");
    /// ```
    #[allow(clippy::mut_from_ref)] // exclusivity is the caller's promise (see Safety)
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; the caller makes the view exclusive (see above).
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }

    /// The memory as plain-old-data values (as many whole `T` as fit).
    ///
    /// # Safety
    ///
    /// As for [`as_slice`](SharedMapping::as_slice).
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(64).unwrap();
    /// shm.write_at(56, &42u64.to_ne_bytes()).unwrap();
    /// // SAFETY: nothing writes the segment while the view lives.
    /// let words = unsafe { shm.as_pod_slice::<u64>() };
    /// assert_eq!((words.len(), words[7]), (8, 42));
    /// ```
    pub unsafe fn as_pod_slice<T: Pod>(&self) -> &[T] {
        // SAFETY: forwarded to the caller (see above).
        let bytes = unsafe { self.as_slice() };
        let whole = bytes.len() - bytes.len() % size_of::<T>().max(1);
        bytemuck::cast_slice(&bytes[..whole])
    }

    /// The memory as mutable plain-old-data values (as many whole `T` as fit).
    ///
    /// # Safety
    ///
    /// As for [`as_mut_slice`](SharedMapping::as_mut_slice).
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(64).unwrap();
    /// // SAFETY: no other handle to this segment exists.
    /// let words = unsafe { shm.as_pod_slice_mut::<u64>() };
    /// words[7] = 42;
    /// assert_eq!(shm.atomic_u64s()[7].load(std::sync::atomic::Ordering::Relaxed), 42);
    /// ```
    #[allow(clippy::mut_from_ref)] // exclusivity is the caller's promise (see Safety)
    pub unsafe fn as_pod_slice_mut<T: Pod>(&self) -> &mut [T] {
        // SAFETY: forwarded to the caller (see above).
        let bytes = unsafe { self.as_mut_slice() };
        let whole = bytes.len() - bytes.len() % size_of::<T>().max(1);
        bytemuck::cast_slice_mut(&mut bytes[..whole])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_every_range_move_exactly_their_bytes() {
        // 45 bytes: five whole words, then five bytes that are accessed one by one. Every
        // (offset, length) goes through the head, body and tail paths in some mix.
        const LEN: usize = 45;
        let fd = memfd("mem-copy-test", LEN as u64).unwrap();
        let map = SharedMapping::map(&fd, LEN).unwrap();
        let pattern: Vec<u8> = (0..LEN as u8).map(|b| b.wrapping_mul(37) | 1).collect();
        for off in 0..=LEN {
            for len in 0..=LEN - off {
                map.write(0, &[0; LEN]);
                map.write(off, &pattern[..len]);
                let mut all = [0u8; LEN];
                map.read(0, &mut all);
                let mut want = [0u8; LEN];
                want[off..off + len].copy_from_slice(&pattern[..len]);
                assert_eq!(all, want, "write of {len} at {off}");
                let mut got = vec![0xEE; len];
                map.read(off, &mut got);
                assert_eq!(got, &pattern[..len], "read of {len} at {off}");
            }
        }
    }

    /// Parts of every split of 0 to 27 bytes, at each aligned offset of a 48-byte mapping:
    /// exactly their bytes, then zeros to the next word, and nothing after that touched.
    #[test]
    fn words_of_parts_are_their_bytes_then_zeros_and_nothing_beyond() {
        const LEN: usize = 48;
        let fd = memfd("mem-words-test", LEN as u64).unwrap();
        let map = SharedMapping::map(&fd, LEN).unwrap();
        let pattern: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(37) | 1).collect();
        for off in (0..16).step_by(8) {
            for len in 0..=27 {
                for a in 0..=len {
                    for b in a..=len {
                        let parts = [&pattern[..a], &pattern[a..b], &pattern[b..len]];
                        map.write(0, &[0xEE; LEN]);
                        map.write_words(off, &parts);
                        let mut all = [0u8; LEN];
                        map.read(0, &mut all);
                        let mut want = [0xEE; LEN];
                        want[off..off + len.next_multiple_of(8)].fill(0);
                        want[off..off + len].copy_from_slice(&pattern[..len]);
                        assert_eq!(all, want, "{len} bytes split at {a}, {b}, at {off}");
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn words_are_written_only_at_aligned_offsets() {
        let fd = memfd("mem-words-test", 64).unwrap();
        SharedMapping::map(&fd, 64).unwrap().write_words(4, &[&[1]]);
    }

    #[test]
    fn pods_round_trip_at_every_offset_and_leave_their_neighbours_alone() {
        // Aligned words take one load or store, everything else the byte loop: both must
        // give the same bytes, and neither may touch a byte beside the value.
        let fd = memfd("mem-test", 64).unwrap();
        let map = SharedMapping::map(&fd, 64).unwrap();
        let check = |off: usize, bytes: &[u8], put: &dyn Fn(), got: &dyn Fn() -> Vec<u8>| {
            map.write(0, &[0xEE; 64]);
            put();
            let mut all = [0u8; 64];
            map.read(0, &mut all);
            let mut want = [0xEE; 64];
            want[off..off + bytes.len()].copy_from_slice(bytes);
            assert_eq!(all, want, "write at {off}");
            assert_eq!(got(), bytes, "read at {off}");
        };
        for off in 0..=48 {
            let a = 0x0102_0304_0506_0708u64;
            check(off, &a.to_ne_bytes(), &|| map.write_pod(off, a), &|| {
                map.read_pod::<u64>(off).to_ne_bytes().to_vec()
            });
            let b = -1.5f32;
            check(off, &b.to_ne_bytes(), &|| map.write_pod(off, b), &|| {
                map.read_pod::<f32>(off).to_ne_bytes().to_vec()
            });
            let c = [9u8, 8, 7, 6, 5, 4, 3, 2];
            check(off, &c, &|| map.write_pod(off, c), &|| {
                map.read_pod::<[u8; 8]>(off).to_vec()
            });
            let d = 0xABCDu16;
            check(off, &d.to_ne_bytes(), &|| map.write_pod(off, d), &|| {
                map.read_pod::<u16>(off).to_ne_bytes().to_vec()
            });
        }
    }
}
