//! `Value<T>` and `Array<T>`: plain-old-data in shared memory with a lock (Python's
//! `multiprocessing.Value` and `Array`, from its `sharedctypes`). Like Python's, this sits
//! above both `shm` (the segment) and `sync` (the lock); the layout is in `shm/README.md`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shm::SharedMemory;
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
        // A `Value` is one element; its methods read element 0 without asking.
        if kind == Kind::Value && len != 1 {
            return Err(Error::InvalidArgument(format!(
                "segment {name:?} holds {len} values, not the one of a Value"
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

    /// A copy of every value (atomic copies: see `SharedMapping`; under the lock, whole).
    fn read_all(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        if size_of::<T>() == 0 {
            return v; // nothing to copy (and bytemuck refuses zero-sized casts)
        }
        self.shm()
            .mapping()
            .read(data_offset::<T>(), bytemuck::cast_slice_mut(&mut v));
        v
    }

    fn write_all(&self, values: &[T]) {
        debug_assert_eq!(values.len(), self.len);
        if size_of::<T>() == 0 {
            return;
        }
        self.shm()
            .mapping()
            .write(data_offset::<T>(), bytemuck::cast_slice(values));
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

    /// Reads without the lock (Python's `RawValue`): may see part of a value being
    /// written (a torn value; still a valid `T`, since `T` is plain old data). Safe
    /// whatever else happens: it is a copy made of atomic accesses, and no guard holds a
    /// reference into the shared memory.
    ///
    /// ```
    /// let v = multiproc::Value::new(7u32).unwrap();
    /// let g = v.lock().unwrap();
    /// assert_eq!(v.get_unsynchronized(), 7); // the guard's changes are not written yet
    /// drop(g);
    /// ```
    pub fn get_unsynchronized(&self) -> T {
        self.block.read(0)
    }

    /// Writes without the lock (Python's `RawValue`); a guard held meanwhile overwrites
    /// it when dropped.
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
        // The copy is taken only once the lock is held.
        let make = |g| ValueGuard {
            value: self.block.read(0),
            block: &self.block,
            guard: g,
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
/// The guard works on a copy of the value, taken when the lock was acquired and written
/// back when the guard is dropped, just before the lock is released (also while unwinding,
/// and after an owner died). No Rust reference into the shared memory exists, so a
/// [`get_unsynchronized`](Value::get_unsynchronized) in another thread, or a process that
/// ignores the lock, can race with it without undefined behaviour. A guard that is leaked
/// (`mem::forget`) writes nothing back.
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
///
/// Not `Send`, as the [`LockGuard`] inside it; sending one to another thread does not
/// compile:
///
/// ```compile_fail,E0277
/// let v = multiproc::Value::new(0u64).unwrap();
/// let guard = v.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard));
/// });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    value: T,
    block: &'a Block<T>,
    // Dropped after `Drop::drop` has written the value back.
    guard: LockGuard<'a>,
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.value).finish()
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.block.write(0, self.value);
    }
}

impl<T: Pod> ValueGuard<'_, T> {
    /// After an owner died: declares the value repaired.
    pub fn mark_consistent(&mut self) {
        self.guard.mark_consistent()
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
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
        a.block.write_all(values);
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
        self.block.locked(|| self.block.read_all())
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
        // The copy is taken only once the lock is held.
        let make = |g| ArrayGuard {
            values: self.block.read_all(),
            block: &self.block,
            guard: g,
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
/// Like a [`ValueGuard`], it works on a copy: all values are copied out when the lock is
/// acquired and back when the guard is dropped (two copies of the array; for a large array
/// of which you touch a few values, [`Array::get`]/[`Array::set`] are cheaper). No Rust
/// reference into the shared memory exists, so nothing that ignores the lock can make this
/// undefined behaviour.
///
/// ```
/// let a = multiproc::Array::<u32>::new(3).unwrap();
/// a.lock().unwrap().copy_from_slice(&[3, 1, 2]);
/// a.lock().unwrap().sort();
/// assert_eq!(a.to_vec().unwrap(), [1, 2, 3]);
/// ```
///
/// Not `Send`, as the [`LockGuard`] inside it; sending one to another thread does not
/// compile:
///
/// ```compile_fail,E0277
/// let a = multiproc::Array::<u32>::new(3).unwrap();
/// let guard = a.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard));
/// });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    values: Vec<T>,
    block: &'a Block<T>,
    // Dropped after `Drop::drop` has written the values back.
    guard: LockGuard<'a>,
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ArrayGuard").field(&self.values).finish()
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.block.write_all(&self.values);
    }
}

impl<T: Pod> ArrayGuard<'_, T> {
    /// After an owner died: declares the values repaired.
    pub fn mark_consistent(&mut self) {
        self.guard.mark_consistent()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.values
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.values
    }
}
