//! Distributed k-means over a real redis-server and real `ferrocluster-worker` processes:
//! the same model as the local fit, a worker SIGKILLed mid-fit changing nothing, clear errors.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrocluster_core::cluster::kmeans::KMeansModel;
use ferrocluster_core::cluster::{Clusterer, Progress};
use ferrocluster_core::distributed::kmeans::{ClusterData, ClusterFit, Error, ShardedKMeans};
use ferrocluster_core::queue::{DataRef, MatrixRef, Queue, QueueConfig};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use support::redis::{fast_config, RedisServer, WorkerProcess};

const TIMEOUT: Duration = Duration::from_secs(120);

/// `k` blobs of `n` rows in `d` dimensions, close enough to overlap a little.
fn blobs(n: usize, d: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..k).map(|_| (0..d).map(|_| rng.random_range(-6.0..6.0)).collect()).collect();
    Array2::from_shape_fn((n, d), |(i, q)| centres[i % k][q] + rng.random_range(-2.0f32..2.0))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A server, `workers` workers named w0, w1, ..., and a queue connected once they are live.
fn cluster(rt: &tokio::runtime::Runtime, workers: usize) -> (RedisServer, Vec<WorkerProcess>, Queue, QueueConfig) {
    let server = RedisServer::start();
    let config = fast_config();
    let procs: Vec<WorkerProcess> = (0..workers)
        .map(|i| {
            WorkerProcess::start(&server.url(), &config, "default", &["--name", &format!("w{i}"), "--concurrency", "2"])
        })
        .collect();
    let queue = rt.block_on(Queue::connect(&server.url(), config.clone())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.block_on(queue.workers()).unwrap().len() < workers {
        assert!(Instant::now() < deadline, "workers did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, procs, queue, config)
}

fn assert_same(cluster: &KMeansModel<f32>, local: &KMeansModel<f32>, what: &str) {
    assert_eq!(cluster.labels, local.labels, "{what}: labels");
    let rel = (cluster.inertia - local.inertia).abs() / local.inertia;
    assert!(rel <= 1e-6, "{what}: inertia {} vs {}", cluster.inertia, local.inertia);
    assert_eq!(cluster.centres, local.centres, "{what}: centres");
    assert_eq!(cluster.n_iter, local.n_iter, "{what}: iterations");
}

#[test]
fn distributed_equals_local_for_several_seeds_and_k() {
    let rt = runtime();
    let (server, _workers, queue, _) = cluster(&rt, 2);
    let x = blobs(5000, 6, 6, 11);
    for (seed, k) in [(0, 3), (1, 6), (7, 10)] {
        let km = ShardedKMeans { n_clusters: k, random_state: seed, shard_rows: 800, ..ShardedKMeans::default() };
        let local = km.fit(x.view(), None).unwrap();
        let remote = km.fit_on_cluster(&queue, rt.handle(), ClusterData::Matrix(x.view()), TIMEOUT).unwrap();
        assert_same(&remote, &local, &format!("seed {seed}, k {k}"));
    }
    // The jobs' keys are gone once they are done (replies, broadcast matrices, shard blobs,
    // notifications, and the leases once every holder ran its release).
    assert_no_job_keys(&server);
}

#[test]
fn replies_too_large_for_a_result_go_by_reference_and_leave_no_key() {
    let rt = runtime();
    let (server, _workers, queue, _) = cluster(&rt, 2);
    // Each step's partial sums (k × d values a shard, 5 shards a worker) are well over the
    // inline limit of a task's result (a quarter of the envelope cap): they go through keys.
    let x = blobs(4000, 160, 40, 5);
    let km = ShardedKMeans { n_clusters: 40, random_state: 3, shard_rows: 400, ..ShardedKMeans::default() };
    let local = km.fit(x.view(), None).unwrap();
    let remote = km.fit_on_cluster(&queue, rt.handle(), ClusterData::Matrix(x.view()), TIMEOUT).unwrap();
    assert_same(&remote, &local, "replies by reference");
    let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut server.sync()).unwrap();
    assert!(stats.contains("cmdstat_getdel:"), "no reply went by reference: {stats}");
    assert_no_job_keys(&server);
}

/// Waits until no key of a k-means job is left in Redis.
fn assert_no_job_keys(server: &RedisServer) {
    let mut conn = server.sync();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("fc:kmeans:*").query(&mut conn).unwrap();
        let notifications: Vec<String> = redis::cmd("KEYS").arg("fc:notify:kmeans-*").query(&mut conn).unwrap();
        keys.extend(notifications);
        if keys.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left behind: {keys:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn matrices_already_in_redis_are_read_in_place_with_progress_per_iteration() {
    let rt = runtime();
    let (server, _workers, queue, _) = cluster(&rt, 2);
    let x = blobs(2000, 5, 4, 8);
    // Parts of uneven sizes (one empty), crossed by shards of another size.
    let bounds = [0, 130, 130, 777, 1500, 1501, 2000];
    let parts: Vec<MatrixRef> = bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let rows = x.slice(ndarray::s![w[0]..w[1], ..]).to_owned();
            let at = DataRef::Key(format!("test:part:{i}"));
            rt.block_on(MatrixRef::write(&queue, at, &rows)).unwrap()
        })
        .collect();
    let km = ShardedKMeans { n_clusters: 4, random_state: 9, shard_rows: 300, ..ShardedKMeans::default() };
    let local = km.fit(x.view(), None).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: Progress| seen.lock().unwrap().push((p.done, p.total));
    let fit = ClusterFit { timeout: TIMEOUT, progress: &progress, stop: None };
    let remote = km.fit_on_cluster_with(&queue, rt.handle(), ClusterData::Parts(parts.clone()), fit).unwrap();
    assert_same(&remote, &local, "parts");
    let seen = seen.into_inner().unwrap();
    let expected: Vec<(usize, usize)> = (1..=remote.n_iter).map(|i| (i, km.max_iter)).collect();
    assert_eq!(seen, expected, "one report per Lloyd iteration");
    // The parts are the caller's: still there; the fit's own keys are gone.
    for part in &parts {
        assert!(rt.block_on(part.read(&queue)).is_ok());
    }
    assert_no_job_keys(&server);

    // A part gone before the fit: a clear error naming it.
    rt.block_on(DataRef::Key("test:part:3".into()).delete(&queue)).unwrap();
    let e = km.fit_on_cluster(&queue, rt.handle(), ClusterData::Parts(parts), TIMEOUT).unwrap_err();
    assert!(e.to_string().contains("test:part:3"), "{e}");
}

#[test]
fn a_stop_request_ends_a_fit_waiting_on_a_silent_worker() {
    let rt = runtime();
    let (_server, workers, queue, _) = cluster(&rt, 2);
    let x = blobs(4000, 4, 4, 1);
    workers[1].signal("STOP");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let km = ShardedKMeans { n_clusters: 4, shard_rows: 500, ..ShardedKMeans::default() };
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        let fit = scope.spawn(|| {
            let fit = ClusterFit { timeout: TIMEOUT, progress: &|_| {}, stop: Some(&rx) };
            km.fit_on_cluster_with(&queue, rt.handle(), ClusterData::Matrix(x.view()), fit)
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!fit.is_finished(), "the fit did not wait for the stopped worker");
        tx.send_replace(true);
        fit.join().unwrap()
    });
    workers[1].signal("CONT");
    assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// Writes a float32 .npy file (format 1.0).
fn write_npy(path: &Path, x: &Array2<f32>) {
    let (n, d) = x.dim();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
    header.push('\n');
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(b"\x93NUMPY\x01\x00").unwrap();
    file.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    file.write_all(header.as_bytes()).unwrap();
    for v in x {
        file.write_all(&v.to_le_bytes()).unwrap();
    }
}

#[test]
fn a_npy_file_read_by_the_workers_gives_the_local_model() {
    let rt = runtime();
    let (_server, _workers, queue, _) = cluster(&rt, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let x = blobs(3000, 4, 5, 3);
    write_npy(&path, &x);
    let km = ShardedKMeans { n_clusters: 5, random_state: 4, shard_rows: 700, ..ShardedKMeans::default() };
    let local = km.fit(x.view(), None).unwrap();
    let remote = km.fit_on_cluster(&queue, rt.handle(), ClusterData::Npy(vec![path]), TIMEOUT).unwrap();
    assert_same(&remote, &local, "npy");
    // The same rows in files of uneven sizes that shards straddle.
    let parts: Vec<PathBuf> = [(0, 1000), (1000, 2300), (2300, 3000)]
        .into_iter()
        .map(|(lo, hi)| {
            let part = dir.path().join(format!("x-{lo}.npy"));
            write_npy(&part, &x.slice(ndarray::s![lo..hi, ..]).to_owned());
            part
        })
        .collect();
    let remote = km.fit_on_cluster(&queue, rt.handle(), ClusterData::Npy(parts), TIMEOUT).unwrap();
    assert_same(&remote, &local, "npy parts");
}

#[test]
fn a_worker_sigkilled_mid_fit_does_not_change_the_result() {
    let rt = runtime();
    let (server, mut workers, queue, _) = cluster(&rt, 3);
    let x = blobs(60_000, 8, 12, 5);
    let km = ShardedKMeans { n_clusters: 12, random_state: 2, shard_rows: 5000, tol: 0.0, ..ShardedKMeans::default() };
    let local = km.fit(x.view(), None).unwrap();
    let killed = std::thread::scope(|scope| {
        let fit = scope.spawn(|| km.fit_on_cluster(&queue, rt.handle(), ClusterData::Matrix(x.view()), TIMEOUT));
        // Once shards are resident, kill the worker holding shard 0.
        let mut conn = server.sync();
        let deadline = Instant::now() + Duration::from_secs(60);
        let holder = loop {
            let keys: Vec<String> = redis::cmd("KEYS").arg("fc:kmeans:*:lease:0").query(&mut conn).unwrap();
            if let Some(key) = keys.first() {
                let holder: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
                if let Some(holder) = holder {
                    break holder;
                }
            }
            assert!(Instant::now() < deadline, "no shard was loaded");
            std::thread::sleep(Duration::from_millis(5));
        };
        let victim =
            workers.iter_mut().find(|w| holder.contains(&format!("-{}-", w.pid()))).expect("holder is a worker");
        assert!(!fit.is_finished(), "the fit ended before the kill");
        victim.signal("KILL");
        victim.wait_exit(Duration::from_secs(5));
        let remote = fit.join().unwrap().unwrap();
        assert_same(&remote, &local, "after SIGKILL");
        holder
    });
    // Shard 0 was loaded again by a surviving worker.
    let logs: String =
        workers.iter().filter(|w| !killed.contains(&format!("-{}-", w.pid()))).map(|w| w.log_text()).collect();
    let plain = strip_colours(&logs);
    assert!(plain.lines().any(|l| l.contains("loaded a k-means shard") && l.contains("shard=0 ")), "{plain}");
}

/// The log text without its ANSI colour codes.
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn bad_input_gives_clear_errors_and_no_workers_is_said() {
    let rt = runtime();
    let (server, _workers, queue, _) = cluster(&rt, 1);
    let km = ShardedKMeans { n_clusters: 8, shard_rows: 100, ..ShardedKMeans::default() };
    let small = blobs(5, 2, 2, 0);
    let e = km.fit_on_cluster(&queue, rt.handle(), ClusterData::Matrix(small.view()), TIMEOUT).unwrap_err();
    assert!(matches!(e, Error::Engine(ferrocluster_core::Error::InvalidInput(_))), "{e}");
    let mut nan = blobs(500, 2, 2, 0);
    nan[[321, 1]] = f32::NAN;
    let e = km.fit_on_cluster(&queue, rt.handle(), ClusterData::Matrix(nan.view()), TIMEOUT).unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
    // The same NaN found by the worker that loads it from a file, named by its row.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.npy");
    write_npy(&path, &nan);
    let e = km.fit_on_cluster(&queue, rt.handle(), ClusterData::Npy(vec![path]), TIMEOUT).unwrap_err();
    assert!(matches!(&e, Error::Engine(ferrocluster_core::Error::InvalidInput(m)) if m.contains("row 321")), "{e}");
    let e = km
        .fit_on_cluster(&queue, rt.handle(), ClusterData::Npy(vec![dir.path().join("missing.npy")]), TIMEOUT)
        .unwrap_err();
    assert!(e.to_string().contains("missing.npy"), "{e}");
    // A namespace without workers.
    let lonely =
        rt.block_on(Queue::connect(&server.url(), QueueConfig { namespace: "empty".into(), ..fast_config() })).unwrap();
    let x = blobs(500, 2, 2, 0);
    let e = km.fit_on_cluster(&lonely, rt.handle(), ClusterData::Matrix(x.view()), TIMEOUT).unwrap_err();
    assert!(matches!(e, Error::NoWorkers), "{e}");
}
