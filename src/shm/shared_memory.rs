//! `SharedMemory`: a named block of memory that several processes map, like Python's
//! `multiprocessing.shared_memory.SharedMemory`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::registry;
use crate::error::{Error, Result};
use crate::sys::SharedMapping;
use crate::sys::shm::{current_pid, shm_create, shm_open, shm_unlink};

/// A block of memory shared between processes, found by name (a POSIX shared memory
/// object in `/dev/shm`).
///
/// The creator of a segment owns it: dropping the creator's handle unlinks the name (the
/// memory itself lives until the last process unmaps it). If the creator dies without
/// dropping it (SIGKILL), the next multiproc program to create a segment, or a pool's
/// manager, unlinks it; see [`sweep_dead_owners`](SharedMemory::sweep_dead_owners). Call
/// [`persist`](SharedMemory::persist) for a segment that must outlive its creator.
///
/// Handles are [`Serialize`]/[`Deserialize`]: passing one to a [`Process`](crate::Process)
/// sends the name, and the receiving side opens it (without owning it). Send a
/// [`clone_handle`](SharedMemory::clone_handle) and keep the creator's handle until the
/// receiver has opened it: dropping the creator's handle unlinks the name.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Process, SharedMemory};
///
/// fn fill(shm: SharedMemory) {
///     shm.write_at(0, b"hello").unwrap();
/// }
///
/// let shm = SharedMemory::create(4096).unwrap();
/// let p = Process::start(fill, shm.clone_handle().unwrap()).unwrap();
/// p.join();
/// let mut got = [0u8; 5];
/// shm.read_at(0, &mut got).unwrap();
/// assert_eq!(&got, b"hello");
/// ```
///
/// # Python interoperability
///
/// Names are those of CPython on Linux: Python's `SharedMemory(name="x")` opens the same
/// object as `SharedMemory::open("x")`, and sees the same bytes. The size Python reports is
/// the object's size, as here. CPython 3.8 to 3.12 registers *every* segment a Python
/// process opens with its resource tracker, which unlinks it when that process exits
/// (CPython gh-82300), even though Rust created it. In a Python process that only attaches,
/// call `multiprocessing.resource_tracker.unregister(shm._name, "shared_memory")` after
/// opening (3.13: pass `track=False`).
///
/// # Concurrent access
///
/// Other handles and processes may write the memory at any time, so the safe ways in are
/// copies and atomics, through [`SharedMapping`](crate::SharedMapping) (which a handle
/// derefs to): [`read_at`](crate::SharedMapping::read_at),
/// [`write_at`](crate::SharedMapping::write_at), [`to_vec`](crate::SharedMapping::to_vec)
/// and [`atomic_u64s`](crate::SharedMapping::atomic_u64s). A copy that races with a writer
/// may see part of the write, never undefined bytes. Rust slices over the memory
/// ([`as_slice`](crate::SharedMapping::as_slice),
/// [`as_mut_slice`](crate::SharedMapping::as_mut_slice) and their `pod` forms) are
/// `unsafe`: a slice promises that nobody writes its bytes while it lives, which only your
/// protocol (a [`Lock`](crate::Lock), a [`Semaphore`](crate::Semaphore), a hand-over such
/// as a joined process) can keep. For values with a lock of their own, use
/// [`Value`](crate::Value) and [`Array`](crate::Array).
pub struct SharedMemory {
    map: SharedMapping,
    name: String,
    len: usize,
    /// Created by this handle and to be unlinked on drop.
    owner: bool,
    /// The creating process: a copy of the handle in a forked child never unlinks.
    creator: u32,
    /// Recorded in this process's owner registry (a caller-chosen name).
    registered: bool,
}

/// The name without leading slashes (CPython's `shm._name` and POSIX names have one), if it
/// is a valid one.
fn check_name(name: &str) -> Result<&str> {
    let bare = name.trim_start_matches('/');
    if bare.is_empty() || bare.len() > 250 || bare.contains('/') || bare == "." || bare == ".." {
        return Err(Error::InvalidArgument(format!(
            "shared memory name {name:?}: must be 1 to 250 bytes without '/' (a leading one \
             is allowed)"
        )));
    }
    Ok(bare)
}

impl SharedMemory {
    /// Creates a segment of `size` bytes (zero-filled) with a fresh random name.
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(1024).unwrap();
    /// assert_eq!(shm.len(), 1024);
    /// assert!(shm.to_vec().iter().all(|&b| b == 0));
    /// ```
    pub fn create(size: usize) -> Result<SharedMemory> {
        loop {
            let name = registry::random_name();
            match Self::create_inner(name, size, false) {
                Err(Error::AlreadyExists(_)) => continue,
                other => return other,
            }
        }
    }

    /// Creates a segment of `size` bytes called `name` (zero-filled). Fails with
    /// [`Error::AlreadyExists`] if the name is taken.
    ///
    /// ```
    /// use multiproc::{Error, SharedMemory};
    /// let a = SharedMemory::create_named("doc-create-named", 64).unwrap();
    /// assert!(matches!(SharedMemory::create_named("doc-create-named", 64), Err(Error::AlreadyExists(_))));
    /// drop(a); // unlinks
    /// assert!(matches!(SharedMemory::open("doc-create-named"), Err(Error::NotFound(_))));
    /// ```
    pub fn create_named(name: &str, size: usize) -> Result<SharedMemory> {
        let name = check_name(name)?;
        registry::before_create();
        Self::create_inner(name.to_owned(), size, true)
    }

    fn create_inner(name: String, size: usize, register: bool) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::InvalidArgument(
                "a shared memory segment needs at least one byte".into(),
            ));
        }
        let fd = shm_create(&name, size).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::AlreadyExists(format!("shared memory segment {name:?}"))
            }
            _ => Error::io(format!("creating shared memory segment {name:?}"), e),
        })?;
        let unlink_on_error = |e: Error| {
            let _ = shm_unlink(&name);
            e
        };
        let map = SharedMapping::map(&fd, size).map_err(unlink_on_error)?;
        if register {
            // A caller-chosen name does not say who owns it: record it, with its inode so
            // that a sweep never unlinks a later segment of the same name.
            let recorded = rustix::fs::fstat(&fd)
                .map_err(std::io::Error::from)
                .and_then(|st| registry::register(&name, st.st_ino));
            if let Err(e) = recorded {
                return Err(unlink_on_error(Error::io(
                    "recording the segment in the owner registry",
                    e,
                )));
            }
        }
        Ok(SharedMemory {
            map,
            name,
            len: size,
            owner: true,
            creator: current_pid(),
            registered: register,
        })
    }

    /// Opens the existing segment called `name` (created by this or another process, in
    /// Rust or Python; a leading `/`, as in CPython's `shm._name`, is accepted). Fails with
    /// [`Error::NotFound`] if there is none.
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let a = SharedMemory::create(16).unwrap();
    /// let b = SharedMemory::open(a.name()).unwrap();
    /// assert_eq!(b.len(), 16);
    /// ```
    pub fn open(name: &str) -> Result<SharedMemory> {
        let name = check_name(name)?;
        let (fd, len) = shm_open(name).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::NotFound(format!("shared memory segment {name:?}"))
            }
            _ => Error::io(format!("opening shared memory segment {name:?}"), e),
        })?;
        if len == 0 {
            return Err(Error::InvalidArgument(format!(
                "shared memory segment {name:?} is empty (its creator may not have sized it yet)"
            )));
        }
        let map = SharedMapping::map(&fd, len)?;
        Ok(SharedMemory {
            map,
            name: name.to_owned(),
            len,
            owner: false,
            creator: 0,
            registered: false,
        })
    }

    /// Another handle to the same segment (opened anew, not owning it).
    pub fn clone_handle(&self) -> Result<SharedMemory> {
        Self::open(&self.name)
    }

    /// The segment's name, as Python's `SharedMemory.name` (without the leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: segments have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this handle created the segment and will unlink it when dropped.
    pub fn is_owner(&self) -> bool {
        self.owner && self.creator == current_pid()
    }

    /// Removes the name now, as Python's `SharedMemory.unlink()`: processes that have it
    /// mapped keep the memory; nobody can open it any more. Any handle may call it.
    pub fn unlink(&mut self) -> Result<()> {
        let r = shm_unlink(&self.name).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::NotFound(format!("shared memory segment {:?}", self.name))
            }
            _ => Error::io(
                format!("unlinking shared memory segment {:?}", self.name),
                e,
            ),
        });
        if self.is_owner() {
            self.forget_registration();
        }
        self.owner = false;
        r
    }

    /// Keeps the segment after this handle is dropped and after this process ends; someone
    /// must [`unlink`](SharedMemory::unlink) it later (or `rm /dev/shm/<name>`).
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let mut a = SharedMemory::create(8).unwrap();
    /// a.persist().unwrap();
    /// let name = a.name().to_owned();
    /// drop(a);
    /// let mut b = SharedMemory::open(&name).unwrap();
    /// b.unlink().unwrap();
    /// ```
    pub fn persist(&mut self) -> Result<()> {
        if self.is_owner() {
            registry::keep(&self.name, self.registered)
                .map_err(|e| Error::io("recording the segment in the owner registry", e))?;
            self.owner = false;
            self.registered = false;
        }
        Ok(())
    }

    /// Unlinks the segments of creators that died without doing it (SIGKILL, crash, `_exit`)
    /// and returns how many it removed. Runs by itself at the first creation in every
    /// process; long-lived programs may call it from time to time.
    ///
    /// Limitation: creators are recognised by pid and start time, so processes in another
    /// pid namespace that share this `/dev/shm` look dead.
    pub fn sweep_dead_owners() -> usize {
        registry::sweep_dead_owners()
    }

    fn forget_registration(&mut self) {
        if std::mem::take(&mut self.registered) {
            registry::unregister(&self.name);
        }
    }

    pub(crate) fn mapping(&self) -> &SharedMapping {
        &self.map
    }
}

/// The memory itself: copies, atomics, and the `unsafe` slice views.
impl std::ops::Deref for SharedMemory {
    type Target = SharedMapping;
    fn deref(&self) -> &SharedMapping {
        &self.map
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.is_owner() {
            let _ = shm_unlink(&self.name);
            self.forget_registration();
        }
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("len", &self.len)
            .field("owner", &self.is_owner())
            .finish()
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.name.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        SharedMemory::open(&name).map_err(serde::de::Error::custom)
    }
}
