//! mpire's three benchmark workloads (sybrenjansen/multiprocessing_benchmarks), scaled to
//! a small machine, on multiproc's ProcessPool; `bench/peers/workloads.py` runs the same on
//! the Python peers. Prints one `multiproc WORKLOAD WORKERS SECONDS CHECKSUM` line per
//! measurement (median of `--repeat` trials; each trial starts and stops its pool, as
//! mpire's do). The checksums are exact integers, equal in every implementation.
//!
//! ```text
//! cargo run --release --features ndarray --example peers_workloads -- [--repeat 3] [--quick] [--only stateful]
//! ```
//!
//! 1. **numerical**: full 2-D convolution of an image with small filters, every 5th row
//!    and column kept (`scipy.signal.convolve2d(image, f)[::5, ::5]`). The image lives in
//!    one SharedMemory segment that every worker views as an ndarray (numpy's
//!    `np.ndarray(shape, dtype, buffer=shm.buf)`); only the filters and the results travel.
//! 2. **stateful**: count every prefix of every word of random documents in a per-worker
//!    map; at the end each worker hands over its counts of 1- and 2-byte prefixes (every
//!    popular one: a random 3-byte prefix is seen about once in 16 M words), which the
//!    parent adds up; popular means seen more than 3 times.
//! 3. **init**: a per-worker "model" (weights and data built by a slow sequential
//!    generator, as a model is loaded) built once by the initializer, then many
//!    `relu(X W1) W2 + idx` evaluations that use it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use multiproc::ndarray::{Array2, ArrayView2, s};
use multiproc::{Barrier, Chunksize, Executor, ProcessPool, SharedMemory};
use sha2::{Digest, Sha256};

/// The sizes, shared with workloads.py (keep them equal).
struct Sizes {
    image: usize,
    filters: usize,
    docs: usize,
    words: usize,
    delta: usize,
    runs: usize,
    evals: usize,
}

const FULL: Sizes = Sizes {
    image: 1000,
    filters: 20,
    docs: 40,
    words: 1000,
    delta: 500,
    runs: 10,
    evals: 10,
};
const QUICK: Sizes = Sizes {
    image: 300,
    filters: 4,
    docs: 10,
    words: 200,
    delta: 100,
    runs: 2,
    evals: 4,
};
const WORD: usize = 20;
const STEP: usize = 5;

/// The generator both languages share: 64-bit LCG (Knuth's MMIX constants).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// An integer in `-k..=k`.
    fn small(&mut self, k: u64) -> f64 {
        (self.next() % (2 * k + 1)) as f64 - k as f64
    }
}

// ---- 1. numerical computation on a shared array ------------------------------------------

static IMAGE: OnceLock<(SharedMemory, usize)> = OnceLock::new();

fn attach_image(arg: (SharedMemory, usize)) {
    let _ = IMAGE.set(arg);
}

/// `convolve2d(image, f)[::5, ::5]` ("full" mode: (n + 3)² outputs, all computed).
fn process_image(f: Vec<f64>) -> Vec<f64> {
    let (shm, n) = IMAGE.get().expect("the initializer attached the image");
    // SAFETY: the parent wrote the image before the pool started and nobody writes it
    // until every task is done; workers only read.
    let img: ArrayView2<f64> = unsafe { shm.as_array((*n, *n)) }.expect("the image fits");
    convolve_full_strided(img, &f)
}

fn convolve_full_strided(img: ArrayView2<f64>, f: &[f64]) -> Vec<f64> {
    let n = img.nrows();
    let m = n + 3; // full output size for a 4×4 filter
    let img = img.as_slice().expect("row-major image");
    let mut full = vec![0.0f64; m * m];
    // Output row by output row, so the row being summed stays in cache.
    for (oy, row) in full.chunks_exact_mut(m).enumerate() {
        for a in 0..4 {
            let Some(y) = oy.checked_sub(a).filter(|&y| y < n) else {
                continue;
            };
            let src = &img[y * n..y * n + n];
            for b in 0..4 {
                let w = f[a * 4 + b];
                for (d, s) in row[b..b + n].iter_mut().zip(src) {
                    *d += w * s;
                }
            }
        }
    }
    let full = Array2::from_shape_vec((m, m), full).expect("m × m");
    full.slice(s![..;STEP, ..;STEP]).iter().copied().collect()
}

fn numerical(sz: &Sizes, workers: usize) -> (f64, i128) {
    let n = sz.image;
    let t = Instant::now();
    let shm = SharedMemory::create(n * n * 8).expect("segment");
    {
        // SAFETY: no worker exists yet; this is the only view.
        let mut img = unsafe { shm.as_array_mut::<f64, _>((n, n)) }.expect("fits");
        for ((y, x), v) in img.indexed_iter_mut() {
            *v = ((y * 31 + x * 17) % 256) as f64;
        }
    }
    let mut g = Lcg(42);
    let filters: Vec<Vec<f64>> = (0..sz.filters)
        .map(|_| (0..16).map(|_| g.small(8)).collect())
        .collect();
    let pool = ProcessPool::builder()
        .workers(workers)
        .initializer(attach_image, (shm.clone_handle().expect("handle"), n))
        .build()
        .expect("pool");
    let mut sum = 0i128;
    for r in pool.imap_chunked(process_image, filters, Chunksize::Fixed(1)) {
        sum += r.expect("task").iter().sum::<f64>() as i128;
    }
    drop(pool);
    (t.elapsed().as_secs_f64(), sum)
}

// ---- 2. stateful computation -------------------------------------------------------------

/// A prefix as a fixed-size key: its length, then its bytes (zero-padded), so counting
/// allocates nothing per prefix.
type Prefix = [u8; WORD];

/// FxHash's multiply-rotate over 8-byte words (the keys are random bytes, not hostile).
#[derive(Default)]
struct Fx(u64);
impl std::hash::Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
type Counts = HashMap<Prefix, u32, std::hash::BuildHasherDefault<Fx>>;

/// This worker's prefix counts (its state; workers are single-threaded, the lock is for
/// the type system).
static COUNTS: Mutex<Option<Counts>> = Mutex::new(None);

fn add_document(doc: Vec<Vec<u8>>) {
    let mut guard = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let counts = guard.get_or_insert_with(Counts::default);
    for word in &doc {
        let mut key: Prefix = [0; WORD];
        for i in 1..word.len().min(WORD) {
            key[0] = i as u8;
            key[i] = word[i - 1];
            *counts.entry(key).or_insert(0) += 1;
        }
    }
}

/// multiproc has no `worker_exit` hook: each of the `workers` collect tasks waits at a
/// barrier of `workers` parties, so no worker can take two, and each hands its state over.
fn collect_state(b: Barrier) -> Vec<(Vec<u8>, u32)> {
    b.wait().expect("barrier");
    let guard = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .iter()
        .flatten()
        .filter(|(k, _)| k[0] <= 2)
        .map(|(k, v)| (k[1..=usize::from(k[0])].to_vec(), *v))
        .collect()
}

/// Documents of `words ± delta` random 20-byte words (even documents longer, odd ones
/// shorter: unbalanced tasks); the bytes are SHA-256 of a little-endian counter.
fn documents(sz: &Sizes) -> Vec<Vec<Vec<u8>>> {
    let mut bytes = Vec::new();
    let mut counter = 0u64;
    let mut next_word = || {
        while bytes.len() < WORD {
            bytes.extend_from_slice(&Sha256::digest(counter.to_le_bytes()));
            counter += 1;
        }
        bytes.drain(..WORD).collect::<Vec<u8>>()
    };
    (0..sz.docs)
        .map(|d| {
            let n = if d % 2 == 0 {
                sz.words + sz.delta
            } else {
                sz.words - sz.delta
            };
            (0..n).map(|_| next_word()).collect()
        })
        .collect()
}

fn stateful(docs: &[Vec<Vec<u8>>], workers: usize) -> (f64, i128) {
    let t = Instant::now();
    let pool = ProcessPool::new(workers).expect("pool");
    for r in pool.imap_unordered_chunked(add_document, docs.to_vec(), Chunksize::Fixed(1)) {
        r.expect("task");
    }
    let barrier = Barrier::new(workers as u32).expect("barrier");
    // `submit`, not `map`: a `map` whose items are shared-memory handles fails to decode
    // them in the worker today (noted in BENCHMARKS.md).
    let states: Vec<_> = (0..workers)
        .map(|_| pool.submit(collect_state, barrier.clone()).expect("submit"))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|f| f.result().expect("collect"))
        .collect();
    drop(pool);
    let mut total: HashMap<Vec<u8>, u64> = HashMap::new();
    for (k, v) in states.into_iter().flatten() {
        *total.entry(k).or_default() += u64::from(v);
    }
    let popular: Vec<u64> = total.into_values().filter(|&c| c > 3).collect();
    let elapsed = t.elapsed().as_secs_f64();
    (
        elapsed,
        popular.len() as i128 * 1_000_000_000 + popular.iter().sum::<u64>() as i128,
    )
}

// ---- 3. expensive per-worker initialisation ----------------------------------------------

const SAMPLES: usize = 2000;
const INPUTS: usize = 256;
const HIDDEN: usize = 128;
const OUTPUTS: usize = 10;

struct Model {
    x: Array2<f64>,
    w1: Array2<f64>,
    w2: Array2<f64>,
}

static MODEL: OnceLock<Model> = OnceLock::new();

/// Builds the model: data `X` (0..=15) and weights (-4..=4), in this order, from one LCG.
fn load_model(seed: u64) {
    let mut g = Lcg(seed);
    let x = Array2::from_shape_simple_fn((SAMPLES, INPUTS), || (g.next() % 16) as f64);
    let w1 = Array2::from_shape_simple_fn((INPUTS, HIDDEN), || g.small(4));
    let w2 = Array2::from_shape_simple_fn((HIDDEN, OUTPUTS), || g.small(4));
    let _ = MODEL.set(Model { x, w1, w2 });
}

fn evaluate_next_batch(idx: u32) -> Vec<f64> {
    let m = MODEL.get().expect("the initializer built the model");
    let hidden = m.x.dot(&m.w1).mapv(|v| v.max(0.0));
    let out = hidden.dot(&m.w2) + f64::from(idx);
    out.into_raw_vec_and_offset().0
}

fn init(sz: &Sizes, workers: usize) -> (f64, i128) {
    let t = Instant::now();
    let pool = ProcessPool::builder()
        .workers(workers)
        .initializer(load_model, 7u64)
        .build()
        .expect("pool");
    let mut sum = 0i128;
    for _ in 0..sz.runs {
        let evals = 0..sz.evals as u32;
        for r in pool.imap_unordered_chunked(evaluate_next_batch, evals, Chunksize::Fixed(1)) {
            sum += r.expect("task").iter().sum::<f64>() as i128;
        }
    }
    drop(pool);
    (t.elapsed().as_secs_f64(), sum)
}

// ---- driver ------------------------------------------------------------------------------

/// One workload at a number of workers: (seconds, checksum).
type Workload<'a> = dyn Fn(usize) -> (f64, i128) + 'a;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sz = if args.iter().any(|a| a == "--quick") {
        &QUICK
    } else {
        &FULL
    };
    let repeat: usize = args
        .iter()
        .position(|a| a == "--repeat")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let docs = documents(sz);
    let runs: [(&str, &Workload); 3] = [
        ("numerical", &|w| numerical(sz, w)),
        ("stateful", &|w| stateful(&docs, w)),
        ("init", &|w| init(sz, w)),
    ];
    for (name, run) in runs {
        if only.as_ref().is_some_and(|o| o != name) {
            continue;
        }
        for workers in [1, 2] {
            let mut times = Vec::new();
            let mut sums = Vec::new();
            for _ in 0..repeat.max(1) {
                let (t, sum) = run(workers);
                times.push(t);
                sums.push(sum);
            }
            assert!(sums.windows(2).all(|w| w[0] == w[1]), "{name}: {sums:?}");
            println!("multiproc {name} {workers} {} {}", median(times), sums[0]);
        }
    }
}
