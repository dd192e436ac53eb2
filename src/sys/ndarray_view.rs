//! ndarray views of shared memory (feature `ndarray`): Rust's form of numpy's
//! `np.ndarray(shape, dtype, buffer=shm.buf)`, over the same bytes a Python process sees.
//!
//! The views are built from the slice views in `mem.rs` and have their soundness contract:
//! an `ArrayView` is a `&[T]` and an `ArrayViewMut` a `&mut [T]` in ndarray's clothes, so
//! they are `unsafe fn`s with the same `# Safety` sections. What they add is checked and
//! safe: the element type is one numpy has, the offset is aligned for it, and the shape
//! (with its strides) fits the bytes after the offset; anything else is an
//! [`Error::InvalidArgument`], never a panic.

use ndarray::{ArrayView, ArrayViewMut, Dimension, StrideShape};

use crate::error::{Error, Result};
use crate::sys::mem::SharedMapping;

mod sealed {
    pub trait Sealed {}
}

/// An element type that numpy also has, so an array in shared memory means the same on
/// both sides: `f32`, `f64`, `i8`..`i64`, `u8`..`u64` (native byte order, as numpy's
/// defaults on this machine). [`DTYPE`](Element::DTYPE) is numpy's name for it.
///
/// ```
/// use multiproc::Element;
/// assert_eq!(<f64 as Element>::DTYPE, "float64");
/// assert_eq!(<u8 as Element>::DTYPE, "uint8");
/// ```
pub trait Element: bytemuck::Pod + sealed::Sealed {
    /// numpy's dtype name (`np.dtype(DTYPE)`).
    const DTYPE: &'static str;
}

macro_rules! element {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: &'static str = $name;
        }
    )*};
}

element!(
    f32 => "float32", f64 => "float64",
    i8 => "int8", i16 => "int16", i32 => "int32", i64 => "int64",
    u8 => "uint8", u16 => "uint16", u32 => "uint32", u64 => "uint64",
);

impl SharedMapping {
    /// The `T`s from byte `offset` to the end, after checking that `offset` is aligned for
    /// `T` and inside the memory. The caller keeps the slice's contract (see callers).
    fn element_range<T: Element>(&self, offset: usize) -> Result<std::ops::Range<usize>> {
        if offset > self.len() {
            return Err(Error::InvalidArgument(format!(
                "array offset {offset} is past the end of {} bytes of shared memory",
                self.len()
            )));
        }
        if !offset.is_multiple_of(align_of::<T>()) {
            return Err(Error::InvalidArgument(format!(
                "array offset {offset} is not aligned for {} ({} bytes)",
                T::DTYPE,
                align_of::<T>()
            )));
        }
        // The base is page-aligned, so element `offset / size` starts at byte `offset`.
        let first = offset / size_of::<T>();
        let whole = self.len() / size_of::<T>();
        Ok(first..whole)
    }

    /// A read-only array of shape `shape` (row-major by default; `(rows, cols).f()` for
    /// column-major, or explicit strides) over the memory from its start: numpy's
    /// `np.ndarray(shape, dtype, buffer=shm.buf)`. [`Error::InvalidArgument`] if the shape
    /// needs more bytes than the segment has (a larger segment is fine, as in numpy).
    ///
    /// # Safety
    ///
    /// As for [`as_slice`](SharedMapping::as_slice): while the view lives, nobody may write
    /// the segment's bytes, through this or any other handle, thread or process (Python's
    /// included). A [`Lock`](crate::Lock) held by every writer, or a hand-over ("the
    /// writers have finished"), makes that true.
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let shm = SharedMemory::create(6 * 8).unwrap();
    /// shm.write_at(8, &2.5f64.to_ne_bytes()).unwrap();
    /// // SAFETY: no other handle to this segment exists, and nothing writes meanwhile.
    /// let a = unsafe { shm.as_array::<f64, _>((2, 3)) }.unwrap();
    /// assert_eq!((a.shape(), a[[0, 1]]), (&[2, 3][..], 2.5));
    /// // Too big for 48 bytes: an error, not a panic.
    /// assert!(unsafe { shm.as_array::<f64, _>((3, 3)) }.is_err());
    /// ```
    pub unsafe fn as_array<T: Element, D: Dimension>(
        &self,
        shape: impl Into<StrideShape<D>>,
    ) -> Result<ArrayView<'_, T, D>> {
        // SAFETY: forwarded to the caller (see above).
        unsafe { self.as_array_at(0, shape) }
    }

    /// As [`as_array`](SharedMapping::as_array), starting at byte `offset` (numpy's
    /// `offset=`), which must be aligned for `T`.
    ///
    /// # Safety
    ///
    /// As for [`as_array`](SharedMapping::as_array).
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let shm = SharedMemory::create(64).unwrap();
    /// shm.write_at(16, &7u32.to_ne_bytes()).unwrap();
    /// // SAFETY: nothing writes the segment while the view lives.
    /// let a = unsafe { shm.as_array_at::<u32, _>(16, 4) }.unwrap();
    /// assert_eq!(a[0], 7);
    /// assert!(unsafe { shm.as_array_at::<u32, _>(2, 4) }.is_err()); // misaligned
    /// ```
    pub unsafe fn as_array_at<T: Element, D: Dimension>(
        &self,
        offset: usize,
        shape: impl Into<StrideShape<D>>,
    ) -> Result<ArrayView<'_, T, D>> {
        let range = self.element_range::<T>(offset)?;
        // SAFETY: forwarded to the caller (see `as_array`).
        let all = unsafe { self.as_pod_slice::<T>() };
        ArrayView::from_shape(shape, &all[range]).map_err(|e| shape_error::<T>(offset, self, e))
    }

    /// A mutable array of shape `shape` over the memory from its start: numpy's
    /// `np.ndarray(shape, dtype, buffer=shm.buf)`, written to. Errors as for
    /// [`as_array`](SharedMapping::as_array); strides that make elements overlap are an
    /// error too.
    ///
    /// # Safety
    ///
    /// As for [`as_mut_slice`](SharedMapping::as_mut_slice): while the view lives, nobody
    /// else may read or write the segment's bytes, through this or any other handle,
    /// thread or process.
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// use multiproc::ndarray::ShapeBuilder;
    /// let shm = SharedMemory::create(4 * 3 * 2).unwrap();
    /// // SAFETY: no other handle to this segment exists.
    /// let mut a = unsafe { shm.as_array_mut::<i16, _>((3, 4).f()) }.unwrap(); // column-major
    /// a[[1, 0]] = -5;
    /// assert_eq!(shm.to_vec()[2..4], (-5i16).to_ne_bytes());
    /// ```
    #[allow(clippy::mut_from_ref)] // exclusivity is the caller's promise (see Safety)
    pub unsafe fn as_array_mut<T: Element, D: Dimension>(
        &self,
        shape: impl Into<StrideShape<D>>,
    ) -> Result<ArrayViewMut<'_, T, D>> {
        // SAFETY: forwarded to the caller (see above).
        unsafe { self.as_array_mut_at(0, shape) }
    }

    /// As [`as_array_mut`](SharedMapping::as_array_mut), starting at byte `offset`, which
    /// must be aligned for `T`.
    ///
    /// # Safety
    ///
    /// As for [`as_array_mut`](SharedMapping::as_array_mut).
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let shm = SharedMemory::create(64).unwrap();
    /// // SAFETY: no other handle to this segment exists.
    /// unsafe { shm.as_array_mut_at::<f32, _>(8, (2, 2)) }.unwrap().fill(1.0);
    /// assert_eq!(shm.to_vec()[8..12], 1.0f32.to_ne_bytes());
    /// assert_eq!(shm.to_vec()[..8], [0; 8]);
    /// ```
    #[allow(clippy::mut_from_ref)] // exclusivity is the caller's promise (see Safety)
    pub unsafe fn as_array_mut_at<T: Element, D: Dimension>(
        &self,
        offset: usize,
        shape: impl Into<StrideShape<D>>,
    ) -> Result<ArrayViewMut<'_, T, D>> {
        let range = self.element_range::<T>(offset)?;
        // SAFETY: forwarded to the caller (see `as_array_mut`).
        let all = unsafe { self.as_pod_slice_mut::<T>() };
        ArrayViewMut::from_shape(shape, &mut all[range])
            .map_err(|e| shape_error::<T>(offset, self, e))
    }
}

fn shape_error<T: Element>(offset: usize, m: &SharedMapping, e: ndarray::ShapeError) -> Error {
    Error::InvalidArgument(format!(
        "a {} array of that shape does not fit the {} bytes of shared memory after offset \
         {offset}: {e}",
        T::DTYPE,
        m.len()
    ))
}
