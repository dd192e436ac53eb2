//! `Value<T>` and `Array<T>`: plain-old-data in shared memory with a lock (Python's
//! `multiprocessing.Value` and `Array`).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SharedMemory;
use crate::error::{Error, Result};
use crate::sync::lock::{AcquireError, LockGuard};
use crate::sync::{CELL, Cell, CellRef, Kind, Lock};

/// Layout of a segment holding `len` values of `T`: a header cell (kind, element size and
/// alignment, length), the lock's cell, then the data.
fn data_offset<T>() -> usize {
    (2 * CELL).next_multiple_of(align_of::<T>())
}

/// `len` zeroed `T`s with a lock, in a new segment.
struct Block<T> {
    header: Cell,
    lock: Lock,
    len: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Block<T> {
    fn clone(&self) -> Self {
        Block {
            header: self.header.clone(),
            lock: self.lock.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Block<T> {
    fn new(kind: Kind, len: usize) -> Result<Block<T>> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(data_offset::<T>()))
            .ok_or_else(|| Error::InvalidArgument(format!("{len} values is too many")))?;
        let seg = Cell::segment(bytes)?;
        let header = Cell::init(&seg, 0, kind);
        header
            .word(0)
            .store(size_of::<T>() as u32, Ordering::Relaxed);
        header
            .word(1)
            .store(align_of::<T>() as u32, Ordering::Relaxed);
        header.word64(8).store(len as u64, Ordering::Release);
        let lock = Lock::from_cell(Cell::init(&seg, CELL, Kind::Lock));
        Ok(Block {
            header,
            lock,
            len,
            _t: PhantomData,
        })
    }

    fn attach(name: &str, kind: Kind) -> Result<Block<T>> {
        let seg = Arc::new(SharedMemory::open(name)?);
        let header = Cell::attach(seg.clone(), 0, kind)?;
        let size = header.word(0).load(Ordering::Relaxed) as usize;
        let align = header.word(1).load(Ordering::Relaxed) as usize;
        let len = header.word64(8).load(Ordering::Acquire) as usize;
        if size != size_of::<T>() || align != align_of::<T>() {
            return Err(Error::InvalidArgument(format!(
                "segment {name:?} holds elements of {size} bytes aligned to {align}, not {}",
                std::any::type_name::<T>()
            )));
        }
        if len
            .checked_mul(size)
            .and_then(|b| b.checked_add(data_offset::<T>()))
            .is_none_or(|end| end > seg.len())
        {
            return Err(Error::InvalidArgument(format!(
                "segment {name:?} is too small for its length"
            )));
        }
        let lock = Lock::from_cell(Cell::attach(seg, CELL, Kind::Lock)?);
        Ok(Block {
            header,
            lock,
            len,
            _t: PhantomData,
        })
    }

    fn shm(&self) -> &SharedMemory {
        self.header.shm()
    }

    fn elems(&self) -> &[T] {
        self.shm().mapping().pod_slice(data_offset::<T>(), self.len)
    }

    #[allow(clippy::mut_from_ref)]
    fn elems_mut(&self) -> &mut [T] {
        self.shm()
            .mapping()
            .pod_slice_mut(data_offset::<T>(), self.len)
    }

    fn read(&self, i: usize) -> T {
        assert!(
            i < self.len,
            "index {i} out of range for length {}",
            self.len
        );
        self.shm()
            .mapping()
            .read_pod(data_offset::<T>() + i * size_of::<T>())
    }

    fn write(&self, i: usize, v: T) {
        assert!(
            i < self.len,
            "index {i} out of range for length {}",
            self.len
        );
        self.shm()
            .mapping()
            .write_pod(data_offset::<T>() + i * size_of::<T>(), v)
    }

    /// Runs `f` with the lock held. A dead previous holder is reported once as
    /// [`Error::OwnerDied`]; the lock is then marked consistent so the value stays usable.
    fn locked<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        match self.lock.acquire() {
            Ok(_g) => Ok(f()),
            Err(AcquireError::OwnerDied(mut g)) => {
                g.mark_consistent();
                Err(Error::OwnerDied)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn serialize_block<T, S: Serializer>(b: &Block<T>, s: S) -> std::result::Result<S::Ok, S::Error> {
    b.header.to_ref().serialize(s)
}

fn deserialize_block<'de, T: Pod, D: Deserializer<'de>>(
    d: D,
    kind: Kind,
) -> std::result::Result<Block<T>, D::Error> {
    let r = CellRef::deserialize(d)?;
    Block::attach(r.name(), kind).map_err(serde::de::Error::custom)
}

// ---- Value ----------------------------------------------------------------------------

/// One plain-old-data value in shared memory, with a lock, for threads and processes
/// alike (Python's `multiprocessing.Value`).
///
/// [`get`](Value::get) and [`set`](Value::set) take the lock for one read or write;
/// [`lock`](Value::lock) holds it across a read-modify-write. Clones share the value; pass
/// a clone to a [`Process`](crate::Process) or a pool task.
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Process, Value};
/// fn bump(v: Value<i64>) { *v.lock().unwrap() += 10; }
/// let v = Value::new(32i64).unwrap();
/// Process::start(bump, v.clone()).unwrap().join();
/// assert_eq!(v.get().unwrap(), 42);
/// ```
pub struct Value<T> {
    block: Block<T>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            block: self.block.clone(),
        }
    }
}

impl<T: Pod> Value<T> {
    /// A new shared value.
    pub fn new(value: T) -> Result<Value<T>> {
        let block = Block::new(Kind::Value, 1)?;
        block.write(0, value);
        Ok(Value { block })
    }

    /// Reads the value under the lock. [`Error::OwnerDied`] if the previous holder died
    /// (reported once; the value is then usable again).
    pub fn get(&self) -> Result<T> {
        self.block.locked(|| self.block.read(0))
    }

    /// Writes the value under the lock.
    pub fn set(&self, value: T) -> Result<()> {
        self.block.locked(|| self.block.write(0, value))
    }

    /// Reads without the lock (Python's `RawValue`): may see a value being written.
    pub fn get_unsynchronized(&self) -> T {
        self.block.read(0)
    }

    /// Writes without the lock (Python's `RawValue`).
    pub fn set_unsynchronized(&self, value: T) {
        self.block.write(0, value)
    }

    /// The lock guarding the value (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.block.lock
    }

    /// Takes the lock and gives access to the value until the guard is dropped.
    pub fn lock(&self) -> std::result::Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.guarded(self.block.lock.acquire())
    }

    /// As [`lock`](Self::lock), waiting at most `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> std::result::Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.guarded(self.block.lock.acquire_timeout(timeout))
    }

    fn guarded<'a>(
        &'a self,
        acquired: std::result::Result<LockGuard<'a>, AcquireError<LockGuard<'a>>>,
    ) -> std::result::Result<ValueGuard<'a, T>, AcquireError<ValueGuard<'a, T>>> {
        // The view is made only once the lock is held.
        let make = |g| ValueGuard {
            guard: g,
            value: &mut self.block.elems_mut()[0],
        };
        match acquired {
            Ok(g) => Ok(make(g)),
            Err(e) => Err(e.map(make)),
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({:?})", self.get_unsynchronized())
    }
}

impl<T> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_block(&self.block, s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Value {
            block: deserialize_block(d, Kind::Value)?,
        })
    }
}

/// Access to a [`Value`] while holding its lock.
///
/// ```
/// let v = multiproc::Value::new([0u8; 4]).unwrap();
/// {
///     let mut g = v.lock().unwrap();
///     g[0] = 1;
///     g[3] = g[0] + 1; // a read-modify-write nobody can interleave with
/// }
/// assert_eq!(v.get().unwrap(), [1, 0, 0, 2]);
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    // Field order: `value` is never used after the guard releases the lock.
    value: &'a mut T,
    guard: LockGuard<'a>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.value).finish()
    }
}

impl<T> ValueGuard<'_, T> {
    /// After an owner died: declares the value repaired.
    pub fn mark_consistent(&mut self) {
        self.guard.mark_consistent()
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

// ---- Array ----------------------------------------------------------------------------

/// A fixed-length array of plain-old-data in shared memory, with a lock (Python's
/// `multiprocessing.Array`).
///
/// ```standalone_crate
/// # multiproc::init();
/// use multiproc::{Array, Process};
/// fn square(a: Array<f64>) {
///     for x in a.lock().unwrap().iter_mut() { *x *= *x; }
/// }
/// let a = Array::from_slice(&[1.0, 2.0, 3.0]).unwrap();
/// Process::start(square, a.clone()).unwrap().join();
/// assert_eq!(a.to_vec().unwrap(), [1.0, 4.0, 9.0]);
/// ```
pub struct Array<T> {
    block: Block<T>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            block: self.block.clone(),
        }
    }
}

impl<T: Pod> Array<T> {
    /// `len` zeroed values.
    pub fn new(len: usize) -> Result<Array<T>> {
        Ok(Array {
            block: Block::new(Kind::Array, len)?,
        })
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        let a = Self::new(values.len())?;
        a.block.elems_mut().copy_from_slice(values);
        Ok(a)
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Whether it has no values.
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    /// Reads value `i` under the lock. Panics if `i` is out of range (before taking the
    /// lock, so the lock is not abandoned).
    pub fn get(&self, i: usize) -> Result<T> {
        self.check_index(i);
        self.block.locked(|| self.block.read(i))
    }

    /// Writes value `i` under the lock. Panics if `i` is out of range (before taking the
    /// lock).
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.check_index(i);
        self.block.locked(|| self.block.write(i, value))
    }

    fn check_index(&self, i: usize) {
        assert!(
            i < self.len(),
            "index {i} out of range for length {}",
            self.len()
        );
    }

    /// A copy of all values, taken under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.block.locked(|| self.block.elems().to_vec())
    }

    /// The lock guarding the array (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.block.lock
    }

    /// Takes the lock and gives access to the values until the guard is dropped.
    pub fn lock(&self) -> std::result::Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.guarded(self.block.lock.acquire())
    }

    /// As [`lock`](Self::lock), waiting at most `timeout`.
    pub fn lock_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> std::result::Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.guarded(self.block.lock.acquire_timeout(timeout))
    }

    fn guarded<'a>(
        &'a self,
        acquired: std::result::Result<LockGuard<'a>, AcquireError<LockGuard<'a>>>,
    ) -> std::result::Result<ArrayGuard<'a, T>, AcquireError<ArrayGuard<'a, T>>> {
        // The view is made only once the lock is held.
        let make = |g| ArrayGuard {
            guard: g,
            values: self.block.elems_mut(),
        };
        match acquired {
            Ok(g) => Ok(make(g)),
            Err(e) => Err(e.map(make)),
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array({}, len {})", self.block.shm().name(), self.len())
    }
}

impl<T> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_block(&self.block, s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Array {
            block: deserialize_block(d, Kind::Array)?,
        })
    }
}

/// Access to an [`Array`] while holding its lock.
///
/// ```
/// let a = multiproc::Array::<u32>::new(3).unwrap();
/// a.lock().unwrap().copy_from_slice(&[3, 1, 2]);
/// a.lock().unwrap().sort();
/// assert_eq!(a.to_vec().unwrap(), [1, 2, 3]);
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    values: &'a mut [T],
    guard: LockGuard<'a>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ArrayGuard").field(&self.values).finish()
    }
}

impl<T> ArrayGuard<'_, T> {
    /// After an owner died: declares the values repaired.
    pub fn mark_consistent(&mut self) {
        self.guard.mark_consistent()
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.values
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.values
    }
}
