//! The queue from the command line, as real processes against a real Redis: `cluster
//! --redis` with `ferrocluster worker` processes, `queue stats|dead-letters|retry`, the
//! worker's state and SIGTERM, its built-in tasks, and clear errors for a dead or refusing Redis.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrocluster_core::cluster::kmeans::KMeansModel;
use ferrocluster_core::image::{list_images, load, DecodeLimits};
use ferrocluster_core::queue::{DataRef, MatrixRef, Queue, QueueConfig, TaskSpec, TaskState};
use serde_json::{json, Value};
use support::cli::{ferrocluster, ok, path};
use support::redis::{counter, fast_config, wait_all, wait_for, RedisServer, WorkerCommand, WorkerProcess};

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap()
}

fn cli_worker(server: &RedisServer, config: &QueueConfig, extra: &[&str]) -> WorkerProcess {
    WorkerProcess::start_as(WorkerCommand::Cli, &server.url(), config, "default", extra)
}

fn sample(dir: &Path, n: usize) {
    let n = n.to_string();
    ok(&["sample", "synthetic", path(dir), "--n", &n, "--size", "32", "--classes", "4", "--seed", "5"]);
}

/// `ferrocluster --quiet ARGS` started in the background, its stderr kept for the end.
fn spawn_cli(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ferrocluster"))
        .arg("--quiet")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Tasks recorded succeeded so far.
fn succeeded(server: &RedisServer) -> u64 {
    let n: Option<u64> = redis::cmd("HGET").arg("fc:stats").arg("succeeded").query(&mut server.sync()).unwrap();
    n.unwrap_or(0)
}

/// Waits (a minute at most) until `n` tasks have succeeded.
fn wait_succeeded(server: &RedisServer, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while succeeded(server) < n {
        assert!(Instant::now() < deadline, "{n} tasks did not succeed within a minute");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts two runs of `cluster` wrote the same assignments, model and contact sheet.
fn assert_same_outputs(a: &Path, b: &Path) {
    for file in ["assignments.csv", "model.json", "contact_sheet.png"] {
        let same = std::fs::read(a.join(file)).unwrap() == std::fs::read(b.join(file)).unwrap();
        assert!(same, "{file} differs between {} and {}", a.display(), b.display());
    }
}

fn metrics(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn cluster_over_redis_with_two_workers_writes_what_the_local_run_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    sample(&images, 90);
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    let server = RedisServer::start();
    let config = fast_config();
    let workers = [cli_worker(&server, &config, &[]), cli_worker(&server, &config, &[])];

    let (local, remote) = (tmp.path().join("local"), tmp.path().join("remote"));
    let common = ["cluster", path(&images), "--k", "4", "--size", "32", "--seed", "2"];
    ok(&[&common[..], &["-o", path(&local)]].concat());
    let run = ferrocluster(&[&common[..], &["-o", path(&remote), "--redis", &server.url(), "--chunk", "8"]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("broken.png"), "skipped files are reported");

    assert_same_outputs(&local, &remote);
    let (m_local, m_remote) = (metrics(&local), metrics(&remote));
    for field in ["images", "skipped", "inertia", "cluster_sizes", "adjusted_rand_index", "silhouette_sampled"] {
        assert_eq!(m_local[field], m_remote[field], "{field}");
    }
    assert_eq!(m_remote["features_on"], "redis workers");

    // 91 files in tasks of 8: 12 tasks, each recorded once, by the workers (whose records
    // count them at their next heartbeat); the matrices they wrote are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = json_of(&["queue", "stats", "--json", "--redis", &server.url()]);
        assert_eq!(queue_named(&stats, "default")["counters"]["succeeded"], 12, "{stats}");
        let completed = |w: &Value| w["fields"]["completed"].as_str().unwrap().parse::<u64>().unwrap();
        if stats["workers"].as_array().unwrap().iter().map(completed).sum::<u64>() == 12 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let leftovers: Vec<String> = redis::cmd("KEYS").arg("fc:data:*").query(&mut server.sync()).unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(workers);
}

/// The keys of finished jobs still in Redis: their data (matrices, shards, leases, replies),
/// and any other key but the queue's own structures that does not expire (task records and
/// notification lists do).
fn leftovers(server: &RedisServer) -> Vec<String> {
    let mut conn = server.sync();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let infrastructure = ["fc:q:", "fc:stats", "fc:queues", "fc:workers", "fc:worker:", "fc:dead", "fc:delayed"];
    let mut left = Vec::new();
    for key in keys {
        if infrastructure.iter().any(|p| key.starts_with(p)) {
            continue;
        }
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        if key.starts_with("fc:data:") || key.starts_with("fc:kmeans:") || ttl < 0 {
            left.push(format!("{key} (ttl {ttl} ms)"));
        }
    }
    left
}

/// Waits until no key of a finished job is left (holders drop their shard leases when their
/// release task runs, just after the run ends).
fn assert_nothing_left(server: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(server);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left behind in Redis: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cluster column of assignments.csv, and the distance column.
fn assignments(dir: &Path) -> (Vec<String>, Vec<f64>) {
    let text = std::fs::read_to_string(dir.join("assignments.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.rsplitn(3, ',').collect();
            (format!("{},{}", fields[2], fields[1]), fields[0].parse::<f64>().unwrap())
        })
        .unzip()
}

#[test]
fn cluster_fits_on_the_workers_the_model_of_a_local_kmeans_parallel_fit_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    sample(&images, 90);
    let server = RedisServer::start();
    let config = fast_config();
    let workers = [cli_worker(&server, &config, &["--name", "a"]), cli_worker(&server, &config, &["--name", "b"])];

    let (local, remote) = (tmp.path().join("local"), tmp.path().join("remote"));
    let common = ["cluster", path(&images), "--k", "4", "--size", "32", "--seed", "3", "--shard-rows", "16"];
    ok(&[&common[..], &["-o", path(&local), "--init", "k-means||"]].concat());
    let remote_args = ["-o", path(&remote), "--redis", &server.url(), "--chunk", "7", "--distributed-fit", "always"];
    ok(&[&common[..], &remote_args[..]].concat());

    let model = |dir: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap()
    };
    let (m_local, m_remote) = (model(&local), model(&remote));
    let find = |v: &Value, field: &str| -> Value {
        fn walk(v: &Value, field: &str) -> Option<Value> {
            match v {
                Value::Object(map) => map.get(field).cloned().or_else(|| map.values().find_map(|v| walk(v, field))),
                _ => None,
            }
        }
        walk(v, field).unwrap_or_else(|| panic!("no {field} in {v}"))
    };
    assert_eq!(find(&m_local, "labels"), find(&m_remote, "labels"), "labels");
    let (a, b) = (find(&m_local, "inertia").as_f64().unwrap(), find(&m_remote, "inertia").as_f64().unwrap());
    assert!((a - b).abs() <= 1e-6 * a, "inertia {a} here, {b} on the workers");
    let ((files_l, dist_l), (files_r, dist_r)) = (assignments(&local), assignments(&remote));
    assert_eq!(files_l, files_r, "assignments");
    for (x, y) in dist_l.iter().zip(&dist_r) {
        assert!((x - y).abs() <= 1e-5 * x.max(1.0), "distance {x} vs {y}");
    }
    let metrics = metrics(&remote);
    assert_eq!(
        (metrics["features_on"].as_str(), metrics["fit_on"].as_str()),
        (Some("redis workers"), Some("redis workers"))
    );

    // 90 rows in shards of 16: both workers held shards.
    for w in &workers {
        assert!(w.log_text().contains("loaded a k-means shard"), "{}", w.log_text());
    }
    assert_nothing_left(&server);
}

#[test]
fn ctrl_c_during_a_fit_on_the_workers_stops_it_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    sample(&images, 40);
    let server = RedisServer::start();
    let config = fast_config();
    let _a = cli_worker(&server, &config, &["--name", "a"]);
    let b = cli_worker(&server, &config, &["--name", "b"]);
    let mut conn = server.sync();
    let out = tmp.path().join("o");
    let common = ["cluster", path(&images), "--k", "3", "--size", "32", "-o", path(&out), "--redis", &server.url()];
    let run =
        spawn_cli(&[&common[..], &["--chunk", "4", "--distributed-fit", "always", "--shard-rows", "10"]].concat());
    // Once the features are extracted, worker b stops answering: the fit waits on its shards.
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_succeeded(&server, 10);
    b.signal("STOP");
    let manifest = loop {
        let keys: Vec<String> = redis::cmd("KEYS").arg("fc:kmeans:*:parts").query(&mut conn).unwrap();
        if let Some(key) = keys.into_iter().next() {
            break key;
        }
        assert!(Instant::now() < deadline, "the fit did not start");
        std::thread::sleep(Duration::from_millis(5));
    };
    // What the run keeps in Redis expires should it be killed: its 10 matrices and the
    // listing of its files.
    let data: Vec<String> = redis::cmd("KEYS").arg("fc:data:*").query(&mut conn).unwrap();
    assert_eq!(data.len(), 11, "{data:?}");
    assert!(data.iter().any(|key| key.ends_with(":files")), "{data:?}");
    for key in data.iter().chain([&manifest]) {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = Instant::now();
    let kill = Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("interrupted"), "{stderr}");
    assert!(stopped_at.elapsed() < Duration::from_secs(5), "took {:?} to stop", stopped_at.elapsed());
    b.signal("CONT");
    assert_nothing_left(&server);
}

/// A number of Redis `INFO`: a field, or the calls of a command (`cmdstat_…`, 0 if never called).
fn redis_info(server: &RedisServer, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(&mut server.sync()).unwrap();
    let line = info.lines().find_map(|l| l.strip_prefix(&format!("{field}:")));
    line.map_or(0, |value| value.split(',').next().unwrap().trim_start_matches("calls=").parse().unwrap())
}

/// What is in a folder, by name.
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn assert_empty(dir: &Path) {
    let left = files_in(dir);
    assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
}

/// A temp dir with `n` sample images in `images/` and an empty `shared/` folder.
fn images_and_shared_dir(n: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (images, shared) = (tmp.path().join("images"), tmp.path().join("shared"));
    sample(&images, n);
    std::fs::create_dir(&shared).unwrap();
    (tmp, images, shared)
}

#[test]
fn cluster_with_a_shared_dir_writes_what_the_local_run_writes_and_sends_no_rows_through_redis() {
    let (tmp, images, shared) = images_and_shared_dir(200);
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    let server = RedisServer::start();
    let config = fast_config();
    let workers = [cli_worker(&server, &config, &["--name", "a"]), cli_worker(&server, &config, &["--name", "b"])];
    let remote = ["--redis", &server.url(), "--chunk", "16", "--shared-dir", path(&shared)];

    // Fitted here: the same files as the local run, byte for byte.
    let (local, here) = (tmp.path().join("local"), tmp.path().join("here"));
    let common = ["cluster", path(&images), "--k", "4", "--size", "32", "--seed", "2"];
    ok(&[&common[..], &["-o", path(&local)]].concat());
    let bytes_before = redis_info(&server, "stats", "total_net_input_bytes");
    ok(&[&common[..], &["-o", path(&here)], &remote[..]].concat());
    let sent = redis_info(&server, "stats", "total_net_input_bytes") - bytes_before;
    assert_same_outputs(&local, &here);
    for field in ["images", "skipped", "inertia", "cluster_sizes", "adjusted_rand_index", "silhouette_sampled"] {
        assert_eq!(metrics(&local)[field], metrics(&here)[field], "{field}");
    }
    // 200 rows of 324 float32 features are 259,200 bytes: the tasks and their results are less.
    let features_bytes = 200 * 324 * 4;
    assert!(sent < features_bytes, "{sent} bytes went to Redis: the rows went through it");

    // Fitted on the workers, which read their shards from the files (no GETRANGE on Redis).
    let (parallel, fitted) = (tmp.path().join("parallel"), tmp.path().join("fitted"));
    let shards = ["--shard-rows", "30", "--init", "k-means||"];
    ok(&[&common[..], &shards[..], &["-o", path(&parallel)]].concat());
    ok(&[&common[..], &shards[..], &["-o", path(&fitted), "--distributed-fit", "always"], &remote[..]].concat());
    let (a, b) = (assignments(&parallel), assignments(&fitted));
    assert_eq!(a.0, b.0, "assignments");
    let (i_local, i_remote) =
        (metrics(&parallel)["inertia"].as_f64().unwrap(), metrics(&fitted)["inertia"].as_f64().unwrap());
    assert!((i_local - i_remote).abs() <= 1e-6 * i_local, "inertia {i_local} here, {i_remote} on the workers");
    assert_eq!(metrics(&fitted)["fit_on"], "redis workers");
    for w in &workers {
        assert!(w.log_text().contains("loaded a k-means shard"), "{}", w.log_text());
    }
    assert_eq!(redis_info(&server, "commandstats", "cmdstat_getrange"), 0, "shards read from Redis");

    assert_nothing_left(&server);
    assert_empty(&shared);
}

#[test]
fn a_worker_killed_mid_run_with_a_shared_dir_changes_nothing_and_leaves_no_file() {
    let (tmp, images, shared) = images_and_shared_dir(300);
    let server = RedisServer::start();
    let config = fast_config();
    let doomed = cli_worker(&server, &config, &["--name", "doomed"]);
    let _survivor = cli_worker(&server, &config, &["--name", "survivor"]);
    let (local, remote) = (tmp.path().join("local"), tmp.path().join("remote"));
    let common = ["cluster", path(&images), "--k", "4", "--size", "32", "--seed", "4"];
    ok(&[&common[..], &["-o", path(&local)]].concat());
    let remote_args = ["-o", path(&remote), "--redis", &server.url(), "--chunk", "2", "--shared-dir", path(&shared)];
    let run = spawn_cli(&[&common[..], &remote_args[..]].concat());
    wait_succeeded(&server, 10);
    doomed.signal("KILL");
    assert!(succeeded(&server) < 150, "the 150 tasks were over before the worker was killed");
    let output = run.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_same_outputs(&local, &remote);
    assert_empty(&shared);
    assert_nothing_left(&server);
}

#[test]
fn ctrl_c_during_an_extraction_into_a_shared_dir_removes_its_files() {
    let (tmp, images, shared) = images_and_shared_dir(400);
    let server = RedisServer::start();
    let config = fast_config();
    let worker = cli_worker(&server, &config, &[]);
    let out = tmp.path().join("o");
    let mut run = spawn_cli(&[
        "cluster",
        path(&images),
        "--k",
        "3",
        "--size",
        "32",
        "-o",
        path(&out),
        "--redis",
        &server.url(),
        "--chunk",
        "2",
        "--shared-dir",
        path(&shared),
    ]);
    // Once some of the 200 matrices are written, the only worker stops: the run waits on the rest.
    let deadline = Instant::now() + Duration::from_secs(60);
    let written =
        || -> usize { std::fs::read_dir(&shared).unwrap().flatten().map(|run| files_in(&run.path()).len()).sum() };
    while written() < 3 {
        assert!(Instant::now() < deadline, "no matrix was written");
        std::thread::sleep(Duration::from_millis(2));
    }
    worker.signal("STOP");
    assert!(run.try_wait().unwrap().is_none(), "the run was over before the worker stopped");
    let kill = Command::new("kill").args(["-INT", &run.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("interrupted"), "{stderr}");
    assert_empty(&shared);
    // The tasks the worker held are cancelled: once resumed, it writes nothing.
    worker.signal("CONT");
    assert_nothing_left(&server);
    std::thread::sleep(Duration::from_millis(500));
    assert_empty(&shared);
}

#[test]
fn a_shared_dir_that_is_missing_or_not_writable_is_a_clear_error_before_any_task() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    sample(&images, 8);
    let server = RedisServer::start();
    let out = tmp.path().join("o");
    let missing = tmp.path().join("missing");
    // sysfs refuses new folders to every user, root included.
    for (dir, why) in [(missing.as_path(), "No such file"), (Path::new("/sys"), "give a folder")] {
        let run = ferrocluster(&[
            "cluster",
            path(&images),
            "--k",
            "2",
            "-o",
            path(&out),
            "--redis",
            &server.url(),
            "--shared-dir",
            path(dir),
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("--shared-dir {}", dir.display())) && stderr.contains(why), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let tasks: Vec<String> = redis::cmd("KEYS").arg("fc:*").query(&mut server.sync()).unwrap();
    assert!(tasks.is_empty(), "{tasks:?}");
    assert!(!out.exists() && !missing.exists());
    let without_redis = ferrocluster(&["cluster", path(&images), "--k", "2", "-o", path(&out), "--shared-dir", "/tmp"]);
    assert!(String::from_utf8_lossy(&without_redis.stderr).contains("needs --redis"), "{without_redis:?}");
}

#[test]
fn distributed_fit_options_that_cannot_work_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    sample(&images, 8);
    let out = path(&tmp.path().join("o")).to_owned();
    let without_redis =
        ferrocluster(&["cluster", path(&images), "--k", "2", "-o", &out, "--distributed-fit", "always"]);
    assert!(String::from_utf8_lossy(&without_redis.stderr).contains("needs --redis"), "{without_redis:?}");
    let minibatch = ferrocluster(&[
        "cluster",
        path(&images),
        "--k",
        "2",
        "-o",
        &out,
        "--distributed-fit",
        "always",
        "--algorithm",
        "minibatch",
        "--redis",
        "redis://127.0.0.1:1/0",
    ]);
    assert!(String::from_utf8_lossy(&minibatch.stderr).contains("--algorithm kmeans"), "{minibatch:?}");
    assert!(!tmp.path().join("o").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_over_redis_rides_over_a_redis_crash_and_restart_mid_job() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    sample(&images, 240);
    let mut server = RedisServer::start();
    let config = fast_config();
    let q = Queue::connect(&server.url(), config.clone()).await.unwrap();
    let _workers = [cli_worker(&server, &config, &[]), cli_worker(&server, &config, &[])];
    let out = tmp.path().join("out");
    let url = server.url();
    let run = spawn_cli(&[
        "cluster",
        path(&images),
        "--k",
        "4",
        "--size",
        "32",
        "-o",
        path(&out),
        "--redis",
        &url,
        "--chunk",
        "2",
    ]);
    while counter(&q, "succeeded").await < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.restart();
    let done = counter(&q, "succeeded").await;
    let output = tokio::task::spawn_blocking(move || run.wait_with_output()).await.unwrap().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(done < 120, "the job was over before Redis restarted ({done} tasks done)");
    assert_eq!(counter(&q, "succeeded").await, 120, "each of the 120 tasks recorded once");
    assert_eq!(metrics(&out)["images"], 240);
}

#[test]
fn a_dead_or_refusing_redis_is_a_prompt_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    sample(&images, 8);
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("redis://127.0.0.1:{dead_port}/0");
    let started = Instant::now();
    let out =
        ferrocluster(&["cluster", path(&images), "--k", "2", "-o", path(&tmp.path().join("o")), "--redis", &dead]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Redis unreachable") && !stderr.contains("panicked"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "gave up after {:?}", started.elapsed());

    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let wrong = format!("redis://:wrong@127.0.0.1:{}/0", server.port);
    let out = ferrocluster(&["queue", "stats", "--redis", &wrong]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused authentication"), "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocluster")).args(["worker", "--redis", &wrong]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused authentication"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_dead_letters_and_retry_without_running_a_finished_task_again() {
    let server = RedisServer::start();
    let config = fast_config();
    let url = server.url();
    let q = Queue::connect(&url, config.clone()).await.unwrap();
    // This worker runs no test tasks: `test.fail` is an unknown kind to it, dead-lettered.
    let mut plain = cli_worker(&server, &config, &[]);
    let late = TaskSpec { id: Some("late".into()), ..TaskSpec::new("default", "test.fail", json!({"failures": 0})) };
    let done = TaskSpec { id: Some("done".into()), ..TaskSpec::new("default", "sleep", json!({"ms": 1})) };
    let ids = [q.enqueue(&late).await.unwrap(), q.enqueue(&done).await.unwrap()];
    wait_all(&q, &ids, Duration::from_secs(10)).await;

    let stats = json_of(&["queue", "stats", "--json", "--redis", &url]);
    let default = queue_named(&stats, "default");
    assert_eq!((default["name"].as_str(), default["workers"].as_u64()), (Some("default"), Some(1)), "{stats}");
    assert_eq!((default["counters"]["succeeded"].as_u64(), default["counters"]["dead"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats["dead_letters"], 1);
    let worker = &stats["workers"][0];
    assert_eq!(worker["fields"]["state"], "running");
    assert!(worker["heartbeat_age_ms"].as_u64().unwrap() < 3 * config.lease.as_millis() as u64, "{worker}");
    let table = ok(&["queue", "stats", "--redis", &url]);
    assert!(table.contains("default") && table.contains(worker["consumer"].as_str().unwrap()), "{table}");

    let dead = json_of(&["queue", "dead-letters", "--json", "--redis", &url]);
    let letter = &dead[0];
    assert_eq!((letter["id"].as_str(), letter["kind"].as_str()), (Some("late"), Some("test.fail")), "{dead}");
    assert_eq!((letter["queue"].as_str(), letter["deliveries"].as_u64()), (Some("default"), Some(1)));
    assert!(letter["reason"].as_str().unwrap().contains("unknown task kind"), "{dead}");
    let table = ok(&["queue", "dead-letters", "--redis", &url]);
    assert!(table.contains("late") && table.contains("unknown task kind"), "{table}");

    // A worker that knows the kind; the finished task is refused, the dead one runs afresh.
    plain.signal("TERM");
    plain.wait_exit(Duration::from_secs(10)).unwrap();
    let _able = cli_worker(&server, &config, &["--enable-test-tasks"]);
    let refused = ferrocluster(&["queue", "retry", "done", "--redis", &url]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("not dead"), "{refused:?}");
    let retried = json_of(&["queue", "retry", "--all", "--json", "--redis", &url]);
    assert_eq!(retried, json!([{"id": "late", "retried": true, "outcome": "retried"}]));
    let status = wait_for(&q, "late", Duration::from_secs(10), |s| s.state.is_terminal()).await;
    assert_eq!((status.state, status.deliveries), (TaskState::Succeeded, 1), "a fresh delivery count");
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.counters["succeeded"], 2, "done ran once, late once");
    assert_eq!(stats.dead_letters, 0);
    assert_eq!(q.result("done").await.unwrap().unwrap()["slept_ms"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_cli_worker_shows_it_stopping_then_it_finishes_its_task_and_leaves() {
    let server = RedisServer::start();
    let config = fast_config();
    let q = Queue::connect(&server.url(), config.clone()).await.unwrap();
    let mut worker = cli_worker(&server, &config, &["--grace-ms", "10000"]);
    let id = q.enqueue(&TaskSpec::new("default", "sleep", json!({"ms": 2000}))).await.unwrap();
    wait_for(&q, &id, Duration::from_secs(10), |s| s.state == TaskState::Running).await;
    worker.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(2);
    let record = loop {
        let stats = q.stats().await.unwrap();
        if let Some(w) = stats.workers.iter().find(|w| w.fields["state"] == "stopping") {
            break w.clone();
        }
        assert!(Instant::now() < deadline, "never shown stopping: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record.fields["current"], id);
    assert!(worker.wait_exit(Duration::from_secs(10)).expect("exits after its task").success());
    let status = q.status(&id).await.unwrap();
    assert_eq!((status.state, status.deliveries), (TaskState::Succeeded, 1));
    assert!(q.stats().await.unwrap().workers.is_empty(), "its record is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decode_and_predict_tasks_match_the_local_functions() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    sample(&images, 6);
    let mut files = list_images(&images).unwrap();
    files.insert(2, images.join("missing.png"));
    let server = RedisServer::start();
    let config = fast_config();
    let q = Queue::connect(&server.url(), config.clone()).await.unwrap();
    let _worker = cli_worker(&server, &config, &[]);

    let decode =
        TaskSpec::new("default", "decode", json!({"paths": files, "size": [8, 12], "output": {"key": "test:pixels"}}));
    let decoded = wait_all(&q, &[q.enqueue(&decode).await.unwrap()], Duration::from_secs(20)).await.remove(0);
    let result = decoded.result.clone().unwrap_or_else(|| panic!("{decoded:?}"));
    assert_eq!(result["rows"], json!([0, 1, 3, 4, 5, 6]));
    assert_eq!(result["failures"][0][0], 2);
    let matrix_ref: MatrixRef = serde_json::from_value(result["features"].clone()).unwrap();
    let pixels = matrix_ref.read(&q).await.unwrap();
    for (row, i) in [0, 1, 3, 4, 5, 6].into_iter().enumerate() {
        let local = load(&files[i], Some([8, 12]), &DecodeLimits::default()).unwrap();
        assert_eq!(pixels.row(row).to_vec(), local.view().data(), "image {i}");
    }

    let centres = pixels.select(ndarray::Axis(0), &[0, 3]);
    let predict = TaskSpec::new(
        "default",
        "kmeans.predict",
        json!({"centres": centres.outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>(), "rows": matrix_ref}),
    );
    let predicted = wait_all(&q, &[q.enqueue(&predict).await.unwrap()], Duration::from_secs(20)).await.remove(0);
    let model = KMeansModel { centres, labels: Vec::new(), inertia: 0.0, n_iter: 0 };
    let (labels, distances) = model.predict_with_distances(pixels.view()).unwrap();
    let result = predicted.result.clone().unwrap_or_else(|| panic!("{predicted:?}"));
    assert_eq!(result["labels"], json!(labels));
    assert_eq!(result["distances"], json!(distances));
    DataRef::Key("test:pixels".into()).delete(&q).await.unwrap();
}

/// The entry of `queue stats --json` for one queue (workers' inboxes are listed too).
fn queue_named<'a>(stats: &'a Value, name: &str) -> &'a Value {
    let queues = stats["queues"].as_array().expect("a list of queues");
    queues.iter().find(|q| q["name"] == name).unwrap_or_else(|| panic!("no queue {name} in {stats}"))
}
