//! The only `unsafe` of the command-line tool: raw views of shared memory for the bench's
//! bare baselines (a spinning ring, a process-shared pthread mutex), and a real segfault for
//! fault injection. The library keeps its own `unsafe` under `src/sys/`; the limits are
//! written the simplest correct way, outside it, so they measure the OS and the hardware
//! and nothing of multiproc.

use std::sync::atomic::AtomicU64;

use multiproc::SharedMemory;

/// The first `n` words of a segment as atomics.
pub(super) fn atomics(shm: &SharedMemory, n: usize) -> &[AtomicU64] {
    &shm.atomic_u64s()[..n]
}

/// Copies `src` into the segment at `off` (the producer's side of the bare ring).
pub(super) fn write_at(shm: &SharedMemory, off: usize, src: &[u8]) {
    assert!(off + src.len() <= shm.len());
    let p = shm.as_ptr();
    // SAFETY: in bounds (checked); the ring protocol gives this range to the producer alone
    // until it publishes it, so no other process reads or writes it meanwhile.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p.add(off), src.len()) }
}

/// Copies from the segment at `off` into `dst` (the consumer's side).
pub(super) fn read_at(shm: &SharedMemory, off: usize, dst: &mut [u8]) {
    assert!(off + dst.len() <= shm.len());
    let p = shm.as_ptr();
    // SAFETY: in bounds (checked); a published frame is not written until the consumer
    // releases it.
    unsafe { std::ptr::copy_nonoverlapping(p.add(off), dst.as_mut_ptr(), dst.len()) }
}

/// A process-shared pthread mutex at offset 64 of a segment, guarding the word at 0.
pub(super) struct PthreadMutex<'a> {
    shm: &'a SharedMemory,
}

impl<'a> PthreadMutex<'a> {
    const OFF: usize = 64;

    /// Initializes the mutex in a fresh segment.
    pub(super) fn init(shm: &'a SharedMemory) -> PthreadMutex<'a> {
        let m = Self { shm };
        // SAFETY: the segment has room for a mutex at OFF (asserted in `ptr`); attribute
        // and mutex are initialized before use, in this process, before any other sees them.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutex_init(m.ptr(), &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        m
    }

    /// A mutex another process initialized.
    pub(super) fn attach(shm: &'a SharedMemory) -> PthreadMutex<'a> {
        Self { shm }
    }

    fn ptr(&self) -> *mut libc::pthread_mutex_t {
        assert!(self.shm.len() >= Self::OFF + std::mem::size_of::<libc::pthread_mutex_t>());
        // SAFETY: in bounds (asserted).
        unsafe {
            self.shm
                .as_slice()
                .as_ptr()
                .cast_mut()
                .add(Self::OFF)
                .cast()
        }
    }

    /// Adds one to the counter at offset 0 under the mutex, `n` times.
    pub(super) fn count(&self, n: u64) {
        let (m, c) = (self.ptr(), self.shm.as_ptr().cast::<u64>());
        for _ in 0..n {
            // SAFETY: `m` is an initialized process-shared mutex; the counter word is only
            // accessed under it.
            unsafe {
                libc::pthread_mutex_lock(m);
                c.write_volatile(c.read_volatile() + 1);
                libc::pthread_mutex_unlock(m);
            }
        }
    }

    /// One uncontended lock and unlock.
    pub(super) fn lock_unlock(&self) {
        let m = self.ptr();
        // SAFETY: as in `count`.
        unsafe {
            libc::pthread_mutex_lock(std::hint::black_box(m));
            libc::pthread_mutex_unlock(m);
        }
    }
}

/// The bare system calls of a shared-memory segment's life: create (shm_open, ftruncate,
/// mmap), open (shm_open, fstat, mmap), two munmaps and the unlink.
pub(super) fn shm_syscalls(name: &str, size: usize) {
    use rustix::{fs::Mode, shm};
    let fd = shm::open(
        name,
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        Mode::from_raw_mode(0o600),
    )
    .expect("shm_open");
    rustix::fs::ftruncate(&fd, size as u64).expect("ftruncate");
    let fd2 = shm::open(name, shm::OFlags::RDWR, Mode::empty()).expect("shm_open");
    let len = rustix::fs::fstat(&fd2).expect("fstat").st_size as usize;
    // SAFETY: fresh shared mappings of live fds, unmapped right after; no Rust reference is
    // made into them.
    unsafe {
        use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};
        let rw = ProtFlags::READ | ProtFlags::WRITE;
        let a = mmap(std::ptr::null_mut(), size, rw, MapFlags::SHARED, &fd, 0).expect("mmap");
        let b = mmap(std::ptr::null_mut(), len, rw, MapFlags::SHARED, &fd2, 0).expect("mmap");
        munmap(b, len).expect("munmap");
        munmap(a, size).expect("munmap");
    }
    drop((fd, fd2));
    shm::unlink(name).expect("shm_unlink");
}

/// Crashes this process with a real segfault (a write through a null pointer), as a task
/// with a memory bug does. For fault injection (`mpi-rank`).
#[cfg(feature = "mpi")]
pub(crate) fn segfault() -> ! {
    // SAFETY: none: this write is meant to fault and kill the process; nothing after it runs.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    unreachable!("a null write faults")
}
