//! procspawn's `Pool` on the same per-task work as `bench/peers/peers.py`: prints one
//! `name workers value` line per measurement (µs, median of 5).

use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    procspawn::init();
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    for workers in [1, 2] {
        let pool = procspawn::Pool::new(workers).unwrap();
        for _ in 0..100 {
            pool.spawn(1u64, |x| x).join().unwrap();
        }
        let submit = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    let hs: Vec<_> = (0..n).map(|i| pool.spawn(i, |x| x)).collect();
                    for h in hs {
                        h.join().unwrap();
                    }
                    t.elapsed().as_secs_f64() * 1e6 / n as f64
                })
                .collect(),
        );
        println!("submit_collect {workers} {submit}");
        let rt_n = n / 5;
        let rt = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for i in 0..rt_n {
                        pool.spawn(i, |x| x).join().unwrap();
                    }
                    t.elapsed().as_secs_f64() * 1e6 / rt_n as f64
                })
                .collect(),
        );
        println!("roundtrip {workers} {rt}");
        pool.shutdown();
    }
}
