//! Criterion micro-benchmarks of the pools. `multiproc bench` runs the side-by-side
//! comparison with Python; these track our own numbers over time.

use criterion::{Criterion, criterion_group, criterion_main};
use multiproc::{Chunksize, Executor, ProcessPool, ThreadPool};
use std::hint::black_box;

multiproc::test_support!();

fn ident(x: u64) -> u64 {
    x
}

fn pools(c: &mut Criterion) {
    let pp = ProcessPool::new(2).unwrap();
    let tp = ThreadPool::new(2).unwrap();
    let mut g = c.benchmark_group("pool");
    g.bench_function("process round trip", |b| {
        b.iter(|| pp.submit(ident, black_box(1)).unwrap().result().unwrap())
    });
    g.bench_function("process submit+collect x1000", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..1000).map(|i| pp.submit(ident, i).unwrap()).collect();
            futs.into_iter().map(|f| f.result().unwrap()).sum::<u64>()
        })
    });
    g.bench_function("process map chunksize 1 x1000", |b| {
        b.iter(|| {
            pp.map_chunked(ident, 0..1000u64, Chunksize::Fixed(1))
                .unwrap()
        })
    });
    g.bench_function("process map auto x100000", |b| {
        b.iter(|| pp.map(ident, 0..100_000u64).unwrap())
    });
    g.bench_function("thread submit+collect x1000", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..1000).map(|i| tp.submit(ident, i).unwrap()).collect();
            futs.into_iter().map(|f| f.result().unwrap()).sum::<u64>()
        })
    });
    g.bench_function("process pool start to first result", |b| {
        b.iter(|| {
            let p = ProcessPool::new(2).unwrap();
            p.submit(ident, 1).unwrap().result().unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = pools
}
criterion_main!(benches);
