//! Times linfa-clustering's KMeans on a matrix written by `bench/bench_core.py`.
//!
//! `linfa-kmeans-bench X N D INIT K` reads `N × D` little-endian f32 values from the file `X`
//! and `K × D` initial centres from `INIT`, then prints one JSON line with the process CPU
//! seconds of two fits of one iteration each: from the given centres (`iteration_s`: one
//! assignment and update) and from linfa's k-means++ (`plusplus_s`: the same plus the init).

use std::time::Duration;

use linfa::prelude::*;
use linfa_clustering::{KMeans, KMeansInit};
use ndarray::Array2;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

/// CPU time of this process (all its threads).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant libc knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn read_matrix(path: &str, rows: usize, cols: usize) -> Array2<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    assert_eq!(bytes.len(), rows * cols * 4, "{path} does not hold {rows} x {cols} f32 values");
    let values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Array2::from_shape_vec((rows, cols), values).expect("rows x cols values")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, x_path, n, d, init_path, k] = args.as_slice() else {
        panic!("usage: linfa-kmeans-bench X N D INIT K");
    };
    let (n, d, k): (usize, usize, usize) = (n.parse().expect("N"), d.parse().expect("D"), k.parse().expect("K"));
    let dataset = DatasetBase::from(read_matrix(x_path, n, d));
    let init = read_matrix(init_path, k, d);
    let fit = |method: KMeansInit<f32>| {
        let params = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(0))
            .init_method(method)
            .n_runs(1)
            .max_n_iterations(1);
        let start = cpu_time();
        let model = params.fit(&dataset).expect("linfa KMeans fit");
        ((cpu_time() - start).as_secs_f64(), model.inertia())
    };
    let (iteration, _) = fit(KMeansInit::Precomputed(init));
    let (plusplus, inertia) = fit(KMeansInit::KMeansPlusPlus);
    println!("{{\"iteration_s\": {iteration}, \"plusplus_s\": {plusplus}, \"inertia\": {inertia}}}");
}
