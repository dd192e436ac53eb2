//! Cross-process synchronization primitives: futex words in shared memory. See `README.md`
//! beside this file for the lock protocol and how a dead holder is detected.

mod barrier;
mod condition;
mod event;
pub(crate) mod lock;
mod rlock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub use lock::{AcquireError, Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shm::SharedMemory;

/// Every primitive lives in a 64-byte cell (one cache line) of a shared memory segment:
/// a header (magic, kind) and then its words.
pub(crate) const CELL: usize = 64;
const MAGIC: u32 = 0x7973_706d; // "mpsy"
const HEADER: usize = 8;

/// What lives in a cell; checked when a handle is received from another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    BoundedSemaphore = 4,
    Event = 5,
    Condition = 6,
    Barrier = 7,
    Value = 8,
    Array = 9,
}

/// A handle to one cell: the segment (shared by clones of a handle) and the cell's offset.
#[derive(Clone)]
pub(crate) struct Cell {
    seg: Arc<SharedMemory>,
    off: usize,
}

/// What crosses a process boundary for a cell: the segment name and the offset.
#[derive(Serialize, Deserialize)]
pub(crate) struct CellRef {
    name: String,
    off: u32,
}

impl CellRef {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Writes the header a cell of kind number `kind` starts with (as [`Cell::init`] does) at the
/// start of `bytes`: how the fuzz targets get past the header check to the words after it.
#[cfg(feature = "fuzzing")]
pub(crate) fn stamp_header(bytes: &mut [u8], kind: u32) {
    bytes[..4].copy_from_slice(&MAGIC.to_ne_bytes());
    bytes[4..8].copy_from_slice(&kind.to_ne_bytes());
}

impl Cell {
    /// A new segment of `size` bytes, owned by this process.
    pub(crate) fn segment(size: usize) -> Result<Arc<SharedMemory>> {
        Ok(Arc::new(SharedMemory::create(size)?))
    }

    /// Writes a fresh header of `kind` at `off` of `seg` (all words zero).
    pub(crate) fn init(seg: &Arc<SharedMemory>, off: usize, kind: Kind) -> Cell {
        let cell = Cell {
            seg: seg.clone(),
            off,
        };
        let map = seg.mapping();
        map.atomic_u32(off + 4)
            .store(kind as u32, Ordering::Relaxed);
        map.atomic_u32(off).store(MAGIC, Ordering::Release);
        cell
    }

    /// A cell of its own segment.
    pub(crate) fn new(kind: Kind) -> Result<Cell> {
        Ok(Cell::init(&Cell::segment(CELL)?, 0, kind))
    }

    /// The cell of `kind` at `off` of an existing segment; checks the header.
    pub(crate) fn attach(seg: Arc<SharedMemory>, off: usize, kind: Kind) -> Result<Cell> {
        let bad = |what: &str| {
            Err(Error::InvalidArgument(format!(
                "shared memory segment {:?} at offset {off} {what}",
                seg.name()
            )))
        };
        if !off.is_multiple_of(CELL) || off + CELL > seg.len() {
            return bad("cannot hold a synchronization primitive");
        }
        let map = seg.mapping();
        if map.atomic_u32(off).load(Ordering::Acquire) != MAGIC {
            return bad("holds no multiproc primitive");
        }
        let found = map.atomic_u32(off + 4).load(Ordering::Relaxed);
        if found != kind as u32 {
            return bad(&format!(
                "holds a primitive of kind {found}, not a {kind:?}"
            ));
        }
        Ok(Cell { seg, off })
    }

    /// The `i`-th 32-bit word after the header.
    #[inline]
    pub(crate) fn word(&self, i: usize) -> &AtomicU32 {
        self.seg.mapping().atomic_u32(self.off + HEADER + 4 * i)
    }

    /// The 64-bit word at byte `byte` after the header (8-aligned).
    pub(crate) fn word64(&self, byte: usize) -> &AtomicU64 {
        self.seg.mapping().atomic_u64(self.off + HEADER + byte)
    }

    pub(crate) fn shm(&self) -> &Arc<SharedMemory> {
        &self.seg
    }

    pub(crate) fn same(&self, other: &Cell) -> bool {
        self.off == other.off && self.seg.name() == other.seg.name()
    }

    pub(crate) fn to_ref(&self) -> CellRef {
        CellRef {
            name: self.seg.name().to_owned(),
            off: self.off as u32,
        }
    }

    pub(crate) fn from_ref(r: CellRef, kind: Kind) -> Result<Cell> {
        Cell::attach(Arc::new(SharedMemory::open(&r.name)?), r.off as usize, kind)
    }

    /// Name and offset, for `Debug`.
    pub(crate) fn describe(&self) -> String {
        format!("{}+{}", self.seg.name(), self.off)
    }
}

/// `Serialize`/`Deserialize` for a primitive that is one cell.
macro_rules! cell_serde {
    ($ty:ident, $kind:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                self.cell.to_ref().serialize(s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let r = $crate::sync::CellRef::deserialize(d)?;
                let cell =
                    $crate::sync::Cell::from_ref(r, $kind).map_err(serde::de::Error::custom)?;
                Ok($ty::from_cell(cell))
            }
        }
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($ty), self.cell.describe())
            }
        }
    };
}
pub(crate) use cell_serde;

/// How long a blocked waiter sleeps at most before it re-checks that the holder it waits
/// for is alive. Bounds how late a death is noticed.
pub(crate) const LIVENESS_CHECK: std::time::Duration = crate::sys::lock::LIVENESS_CHECK;

/// A deadline from an optional timeout (`None`: wait forever).
pub(crate) fn deadline(timeout: Option<std::time::Duration>) -> Option<std::time::Instant> {
    timeout.and_then(|d| std::time::Instant::now().checked_add(d))
}

/// How long to sleep now: at most `cap`, and not past `deadline`. `None` if it has passed.
pub(crate) fn sleep_for(
    deadline: Option<std::time::Instant>,
    cap: Option<std::time::Duration>,
) -> Option<Option<std::time::Duration>> {
    match deadline {
        None => Some(cap),
        Some(d) => {
            let left = d.checked_duration_since(std::time::Instant::now())?;
            if left.is_zero() {
                return None;
            }
            Some(Some(cap.map_or(left, |c| c.min(left))))
        }
    }
}
