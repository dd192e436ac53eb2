//! SharedMemory as ndarray views (feature `ndarray`) against a real numpy: Rust writes an
//! array that numpy reads with `np.ndarray(shape, dtype, buffer=shm.buf)` and changes, and
//! numpy creates one that Rust reads and changes; for every element type both have, in
//! row- and column-major order. numpy comes from scripts/deps.sh; without it these fail.

mod common;

use std::path::Path;

use common::{deadline, python};
use multiproc::ndarray::{Array2, ShapeBuilder};
use multiproc::{Element, Error, SharedMemory};

/// Fails loudly (not a skip) when numpy is missing.
fn numpy(script: &str, args: &[&str]) -> String {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let found = python(
            "import importlib.util; print(importlib.util.find_spec('numpy') is not None)",
            &[],
        );
        assert_eq!(
            found.trim(),
            "True",
            "python3 has no numpy: run scripts/deps.sh (it pip-installs numpy)"
        );
    });
    let (script, args) = (
        script.to_owned(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    deadline(60, move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python(&script, &args)
    })
}

/// For each argument `name:rows:cols:dtype:order`, attaches to the segment as
/// np.ndarray((rows, cols), dtype, order=order), prints whether it equals
/// `(i * cols + j) % 100` everywhere and its item size, then writes `100 - that` into row 1
/// (every dtype holds 1..=100). One Python for every array: numpy takes long to import.
const NUMPY_CHECKS_AND_WRITES: &str = r#"
import sys
import numpy as np
from multiprocessing import shared_memory, resource_tracker
for spec in sys.argv[1:]:
    name, rows, cols, dtype, order = spec.split(":")
    rows, cols = int(rows), int(cols)
    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")  # CPython gh-82300
    a = np.ndarray((rows, cols), dtype=dtype, buffer=shm.buf, order=order)
    want = (np.arange(rows * cols).reshape(rows, cols) % 100).astype(dtype)
    print(bool(np.array_equal(a, want)), a.dtype.itemsize)
    a[1, :] = (100 - want[1, :]).astype(dtype)
    del a  # release the buffer export before closing
    shm.close()
"#;

const ROWS: usize = 3;
const COLS: usize = 37;

/// A segment holding the pattern for `T` (`fortran`: column-major), and its argument for
/// [`NUMPY_CHECKS_AND_WRITES`].
struct Case {
    shm: SharedMemory,
    fortran: bool,
    dtype: &'static str,
    size: usize,
    /// Checks the segment after numpy's write.
    check: Box<dyn Fn(&SharedMemory)>,
}

fn case<T: Element + PartialEq + std::fmt::Debug>(from: fn(u8) -> T, fortran: bool) -> Case {
    // One spare byte: a segment larger than the array is fine, as in numpy.
    let shm = SharedMemory::create(ROWS * COLS * size_of::<T>() + 1).unwrap();
    let want = Array2::from_shape_fn((ROWS, COLS), |(i, j)| from(((i * COLS + j) % 100) as u8));
    // SAFETY: only this test's one handle maps the segment, and the view ends before
    // Python starts.
    unsafe {
        let mut a = if fortran {
            shm.as_array_mut::<T, _>((ROWS, COLS).f()).unwrap()
        } else {
            shm.as_array_mut::<T, _>((ROWS, COLS)).unwrap()
        };
        a.assign(&want);
    }
    let check = Box::new(move |shm: &SharedMemory| {
        // SAFETY: Python has exited; nothing else writes the segment.
        let a = unsafe {
            if fortran {
                shm.as_array::<T, _>((ROWS, COLS).f()).unwrap()
            } else {
                shm.as_array::<T, _>((ROWS, COLS)).unwrap()
            }
        };
        for ((i, j), v) in a.indexed_iter() {
            let k = ((i * COLS + j) % 100) as u8;
            let expect = if i == 1 { from(100 - k) } else { from(k) };
            assert_eq!(*v, expect, "{} [{i}, {j}] fortran {fortran}", T::DTYPE);
        }
    });
    Case {
        shm,
        fortran,
        dtype: T::DTYPE,
        size: size_of::<T>(),
        check,
    }
}

#[test]
fn numpy_reads_and_writes_what_rust_wrote_for_every_element_type() {
    let mut cases = Vec::new();
    for fortran in [false, true] {
        cases.push(case::<f32>(f32::from, fortran));
        cases.push(case::<f64>(f64::from, fortran));
        cases.push(case::<i8>(|x| x as i8, fortran));
        cases.push(case::<i16>(i16::from, fortran));
        cases.push(case::<i32>(i32::from, fortran));
        cases.push(case::<i64>(i64::from, fortran));
        cases.push(case::<u8>(|x| x, fortran));
        cases.push(case::<u16>(u16::from, fortran));
        cases.push(case::<u32>(u32::from, fortran));
        cases.push(case::<u64>(u64::from, fortran));
    }
    let args: Vec<String> = cases
        .iter()
        .map(|c| {
            let order = if c.fortran { "F" } else { "C" };
            format!("{}:{ROWS}:{COLS}:{}:{order}", c.shm.name(), c.dtype)
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = numpy(NUMPY_CHECKS_AND_WRITES, &args);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{out}");
    for (c, line) in cases.iter().zip(lines) {
        assert_eq!(
            line,
            format!("True {}", c.size),
            "numpy saw another array ({}, fortran {})",
            c.dtype,
            c.fortran
        );
        (c.check)(&c.shm);
    }
}

#[test]
fn rust_reads_and_writes_what_numpy_created() {
    let name = format!("multiproc-test-ndarray-{}", std::process::id());
    let create = r#"
import sys
import numpy as np
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=4 * 5 * 8)
a = np.ndarray((4, 5), dtype=np.float64, buffer=shm.buf, order="F")
a[:] = np.arange(20).reshape(4, 5) * 0.5
print(a.sum())
del a
resource_tracker.unregister(shm._name, "shared_memory")  # the Rust side unlinks it
shm.close()
"#;
    assert_eq!(numpy(create, &[&name]).trim(), "95.0");
    let mut shm = SharedMemory::open(&name).unwrap();
    {
        // SAFETY: Python has exited; this is the only handle.
        let mut a = unsafe { shm.as_array_mut::<f64, _>((4, 5).f()) }.unwrap();
        for ((i, j), v) in a.indexed_iter() {
            assert_eq!(*v, (i * 5 + j) as f64 * 0.5, "[{i}, {j}]");
        }
        a[[3, 4]] = -1.0;
        a.column_mut(0).fill(7.0);
    }
    let check = r#"
import sys
import numpy as np
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")
a = np.ndarray((4, 5), dtype=np.float64, buffer=shm.buf, order="F")
print(a[3, 4], a[:, 0].tolist(), a[1, 2])
del a
shm.close()
"#;
    assert_eq!(
        numpy(check, &[&name]).trim(),
        "-1.0 [7.0, 7.0, 7.0, 7.0] 3.5"
    );
    shm.unlink().unwrap();
    drop(shm);
    assert!(!Path::new("/dev/shm").join(&name).exists());
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let shm = SharedMemory::create(100).unwrap();
    let invalid = |r: Result<(), Error>, what: &str| {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: {r:?}");
    };
    // SAFETY: every view is a temporary; nothing else maps the segment.
    unsafe {
        // 12 f64 are 96 bytes: fits; 13 do not.
        assert_eq!(shm.as_array::<f64, _>((3, 4)).unwrap().len(), 12);
        invalid(shm.as_array::<f64, _>(13).map(drop), "too long");
        invalid(
            shm.as_array_mut::<u8, _>((10, 11)).map(drop),
            "too long (mut)",
        );
        // At offset 8 only 11 whole f64 remain.
        assert!(shm.as_array_at::<f64, _>(8, 11).is_ok());
        invalid(
            shm.as_array_at::<f64, _>(8, 12).map(drop),
            "too long at offset",
        );
        invalid(shm.as_array_at::<u32, _>(6, 2).map(drop), "misaligned");
        invalid(
            shm.as_array_mut_at::<i64, _>(4, 2).map(drop),
            "misaligned (mut)",
        );
        invalid(
            shm.as_array_at::<u8, _>(101, 0).map(drop),
            "offset past the end",
        );
        assert_eq!(shm.as_array_at::<u8, _>(100, 0).unwrap().len(), 0);
        // Strides that make elements overlap: fine to read, an error to write.
        assert!(shm.as_array::<u8, _>((4, 4).strides((1, 1))).is_ok());
        invalid(
            shm.as_array_mut::<u8, _>((4, 4).strides((1, 1))).map(drop),
            "overlapping mutable",
        );
        // The error says what did not fit.
        let Err(Error::InvalidArgument(m)) = shm.as_array::<f32, _>((5, 6)) else {
            panic!("expected an error")
        };
        assert!(m.contains("float32") && m.contains("100 bytes"), "{m}");
    }
}
