//! The real `ferrocluster-api` binary with a real `redis-server` and real `ferrocluster-worker`
//! processes: training jobs run on the workers, are cancelled there (at once, not at the next
//! heartbeat), outlive a restart of the service and a worker killed mid-training, and leave no
//! result blobs in Redis once collected, cancelled or deleted.

mod support;

use std::time::{Duration, Instant};

use ferrocluster_core::training::task::unpack_progress;
use ferrocluster_core::training::Stage;
use serde_json::{json, Value};
use support::cluster::{RedisServer, Worker, LEASE_MS};
use support::server::{delete, free_port, get_json, images, post_json, start, wait_job, wait_succeeded, Server};
use support::{json_images, ADMIN_KEY, READ_KEY};

/// Redis, `ferrocluster-worker`s on it and the service training on its queue, over one data
/// directory. The service can be killed and started again on the same port and data.
struct Queued {
    // Dropped in this order: the service, the workers, Redis, the data.
    server: Option<Server>,
    workers: Vec<Worker>,
    redis: RedisServer,
    dir: tempfile::TempDir,
    port: u16,
}

impl Queued {
    /// Redis, workers named `names` (the tests' lease), and the service, ready with them all
    /// (with none, saying so).
    fn start(names: &[&str]) -> Self {
        Queued::with_lease(names, LEASE_MS)
    }

    /// As [`Queued::start`], the workers' lease `lease_ms`.
    fn with_lease(names: &[&str], lease_ms: u64) -> Self {
        let redis = RedisServer::start();
        let workers = names.iter().map(|name| Worker::with_lease(&redis, name, lease_ms)).collect();
        let mut queued = Queued { server: None, workers, redis, dir: tempfile::tempdir().unwrap(), port: free_port() };
        queued.start_service();
        match queued.workers.len() {
            0 => wait_no_worker(queued.server()),
            n => drop(wait_ready(queued.server(), n)),
        }
        queued
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the service runs")
    }

    /// Starts the service (again).
    fn start_service(&mut self) {
        self.server = Some(start(self.dir.path(), self.port, &[("ROCKET_REDIS_URL", self.redis.url())]));
    }

    /// SIGKILL: the service stops at once, leaving its training to the workers.
    fn kill_service(&mut self) {
        self.server = None;
    }

    /// Adds worker `name` and waits until the service counts it.
    fn add_worker(&mut self, name: &str) -> Value {
        self.workers.push(Worker::start(&self.redis, name));
        wait_ready(self.server(), self.workers.len())
    }
}

/// Waits until `/readyz` answers as `want` says; returns its body.
fn readyz_until(server: &Server, want: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get_json(server, "/readyz");
        if want(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "readyz still {status}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the service is ready with `workers` live workers.
fn wait_ready(server: &Server, workers: usize) -> Value {
    readyz_until(server, |status, body| {
        status == 200 && body["checks"]["workers"].as_str().and_then(|w| w.parse().ok()) == Some(workers)
    })
}

/// Waits until the service says no worker serves its training queue.
fn wait_no_worker(server: &Server) {
    readyz_until(server, |status, body| {
        status == 503 && body["detail"].as_str().unwrap().contains("no live ferrocluster-worker")
    });
}

/// Uploads `n` images of `size` pixels; returns the dataset id.
fn upload(server: &Server, n: usize, size: u32) -> String {
    let (status, dataset) = post_json(server, "/v1/datasets", ADMIN_KEY, &json_images(&images(n, size), json!({})));
    assert_eq!(status, 201, "{dataset}");
    dataset["id"].as_str().unwrap().to_owned()
}

/// Submits a training job; returns it.
fn train(server: &Server, request: &Value) -> Value {
    let (status, job) = post_json(server, "/v1/models", ADMIN_KEY, &request.to_string());
    assert_eq!(status, 202, "{job}");
    job
}

/// A job long enough to act on while it runs: 900 images, features at 128×128.
fn long_request(dataset_id: &str) -> Value {
    let features = json!({"size": [128, 128], "hog": {"cells_per_block": [2, 2]}, "lbp": {}});
    json!({"dataset_id": dataset_id, "k": 3, "features": features})
}

/// Waits until the job runs on a worker and has reported its stage (a stage's first report may
/// come with nothing done yet, and on a fast machine the next may already be the last).
fn wait_running(server: &Server, id: &str) -> Value {
    wait_job(server, id, Duration::from_secs(60), |job| {
        assert!(!["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap()), "ended: {job}");
        job["state"] == "running" && job["progress"]["stage"].as_str().is_some_and(|stage| !stage.is_empty())
    })
}

#[test]
fn upload_train_on_a_worker_and_predict_as_the_embedded_executor_does() {
    let mut queued = Queued::start(&[]);
    assert_eq!(queued.add_worker("w1")["checks"]["redis"], "ok");
    let (server, redis) = (queued.server(), &queued.redis);

    let features = json!({"size": [32, 32], "hog": {"cells_per_block": [2, 2]}});
    let request = |dataset_id: &str| json!({"dataset_id": dataset_id, "k": 3, "features": features, "seed": 7});
    let job = train(server, &request(&upload(server, 30, 32)));
    let job = wait_succeeded(server, job["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["attempts"], 1, "{job}");
    wait_no_blobs(redis);
    for stage in ["features", "fit", "metrics", "store"] {
        assert!(job["timings_ms"][stage].is_u64(), "{job}");
    }
    let model_id = job["model_id"].as_str().unwrap();
    let (status, predicted) =
        post_json(server, &format!("/v1/models/{model_id}/predict"), READ_KEY, &json_images(&images(3, 32), json!({})));
    assert_eq!(status, 200, "{predicted}");
    assert_eq!(predicted["predictions"].as_array().unwrap().len(), 3);

    // The oracle: the embedded executor trains the same model from the same request.
    let embedded_dir = tempfile::tempdir().unwrap();
    let embedded = start(embedded_dir.path(), free_port(), &[]);
    let local = train(&embedded, &request(&upload(&embedded, 30, 32)));
    let local = wait_succeeded(&embedded, local["id"].as_str().unwrap(), Duration::from_secs(60));
    let (_, on_worker) = get_json(server, &format!("/v1/models/{model_id}"));
    let (_, here) = get_json(&embedded, &format!("/v1/models/{}", local["model_id"].as_str().unwrap()));
    for field in ["centroids", "cluster_sizes", "metrics", "n_features"] {
        assert_eq!(on_worker[field], here[field], "{field}");
    }

    // A worker that stops (SIGTERM: it leaves its record) is no longer counted.
    queued.workers[0].signal("TERM");
    wait_no_worker(server);
}

#[test]
fn a_cancel_stops_the_training_on_its_worker() {
    let queued = Queued::start(&["w1"]);
    let (server, redis) = (queued.server(), &queued.redis);
    let dataset_id = upload(server, 900, 64);
    let job = train(server, &long_request(&dataset_id));
    let id = job["id"].as_str().unwrap();
    wait_running(server, id);

    let (status, cancelled) = delete(server, &format!("/v1/jobs/{id}"), ADMIN_KEY);
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    // The worker stops within a heartbeat and a chunk of images, well before the end.
    let asked = Instant::now();
    while redis.task_field(id, "state").as_deref() != Some("cancelled") {
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "the worker did not stop: {:?}",
            redis.task_field(id, "state")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let job = get_json(server, &format!("/v1/jobs/{id}")).1;
    assert_eq!(job["state"], "cancelled", "{job}");
    let (status, _) = get_json(server, &format!("/v1/models/{}", job["model_id"].as_str().unwrap()));
    assert_eq!(status, 404, "a cancelled job stores no model");
    let (status, _) = delete(server, &format!("/v1/jobs/{id}"), ADMIN_KEY);
    assert_eq!(status, 409);

    // The worker is free for the next job.
    let small = json!({"dataset_id": dataset_id, "k": 2, "features": {"size": [16, 16]}, "max_iter": 5});
    let next = train(server, &small);
    wait_succeeded(server, next["id"].as_str().unwrap(), Duration::from_secs(60));
}

/// Where a task stopped, from the progress its worker recorded with the outcome.
fn stopped_at(redis: &RedisServer, id: &str) -> (Stage, usize, usize) {
    let field = |name: &str| redis.task_field(id, name).and_then(|v| v.parse().ok()).unwrap_or(0);
    unpack_progress((field("progress_done"), field("progress_total"))).expect("a progress with its stage")
}

/// Waits until the task record of `id` says one of `states`.
fn wait_task(redis: &RedisServer, id: &str, states: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !redis.task_field(id, "state").is_some_and(|state| states.contains(&state.as_str())) {
        assert!(Instant::now() < deadline, "task {id} is {:?}, not {states:?}", redis.task_field(id, "state"));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until Redis holds no blob (the service deletes them just after it records the job).
fn wait_no_blobs(redis: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !redis.blob_keys().is_empty() {
        assert!(Instant::now() < deadline, "blobs left: {:?}", redis.blob_keys());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_cancel_reaches_the_worker_at_its_next_iteration_not_its_next_heartbeat() {
    // A minute's lease: a heartbeat every 20 s, longer than the whole training.
    let queued = Queued::with_lease(&["w1"], 60_000);
    let (server, redis) = (queued.server(), &queued.redis);
    // Long features (HOG and LBP at 128×128: over 8,100 values) and many clusters: the fit
    // (k-means++ choosing 60 centres, then Lloyd; it checks for a cancel between centres and
    // between iterations) lasts far longer than a cancel takes to arrive.
    let mut request = long_request(&upload(server, 900, 32));
    request["k"] = json!(60);
    request["seed"] = json!(3);
    request["max_iter"] = json!(300);

    // The oracle: the same training, not cancelled, and the iterations its fit takes.
    let whole = wait_succeeded(server, train(server, &request)["id"].as_str().unwrap(), Duration::from_secs(120));
    let model = get_json(server, &format!("/v1/models/{}", whole["model_id"].as_str().unwrap())).1;
    let n_iter = model["metrics"]["n_iter"].as_u64().unwrap() as usize;

    let id = train(server, &request)["id"].as_str().unwrap().to_owned();
    wait_task(redis, &id, &["running"], Duration::from_secs(30));
    let (status, cancelled) = delete(server, &format!("/v1/jobs/{id}"), ADMIN_KEY);
    assert_eq!(status, 200, "{cancelled}");
    wait_task(redis, &id, &["cancelled"], Duration::from_secs(120));
    let (stage, done, total) = stopped_at(redis, &id);
    match stage {
        // A first report of 0 of 0: the stage had begun, nothing counted yet.
        Stage::Features => assert!(total == 0 || done < total, "extraction went through all {total} images"),
        Stage::Fit => assert!(done < n_iter, "the fit ran {done} of its {n_iter} iterations"),
        Stage::Metrics => panic!("the fit ran to its end ({n_iter} iterations) before the cancel came"),
    }
    wait_no_blobs(redis);
}

#[test]
fn the_blobs_of_a_task_that_succeeded_after_its_job_was_cancelled_are_deleted() {
    let mut queued = Queued::start(&["w1"]);
    let server = queued.server();
    let request = json!({"dataset_id": upload(server, 30, 32), "k": 2, "features": {"size": [16, 16]}});
    let id = train(server, &request)["id"].as_str().unwrap().to_owned();
    wait_task(&queued.redis, &id, &["running", "succeeded"], Duration::from_secs(30));
    queued.kill_service(); // Nobody collects the model.
    wait_task(&queued.redis, &id, &["succeeded"], Duration::from_secs(60));
    assert_eq!(queued.redis.blob_keys().len(), 2, "the model and its features wait in Redis");

    // The job was cancelled but the service died before passing the cancel on.
    let record = queued.dir.path().join("jobs").join(format!("{id}.json"));
    let mut job: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    job["state"] = json!("cancelled");
    std::fs::write(&record, job.to_string()).unwrap();
    queued.start_service();
    wait_no_blobs(&queued.redis);
    let job = get_json(queued.server(), &format!("/v1/jobs/{id}")).1;
    assert_eq!(job["state"], "cancelled", "{job}");
    let (status, _) = get_json(queued.server(), &format!("/v1/models/{}", job["model_id"].as_str().unwrap()));
    assert_eq!(status, 404, "a cancelled job stores no model");
}

#[test]
fn a_job_outlives_a_restart_of_the_service() {
    let mut queued = Queued::start(&["w1"]);
    let server = queued.server();
    let job = train(server, &long_request(&upload(server, 900, 64)));
    let id = job["id"].as_str().unwrap().to_owned();
    wait_running(server, &id);
    queued.kill_service();
    let state = queued.redis.task_field(&id, "state");
    assert_eq!(state.as_deref(), Some("running"), "the training goes on without the service");

    queued.start_service();
    let server = queued.server();
    let job = wait_succeeded(server, &id, Duration::from_secs(180));
    assert_eq!(job["attempts"], 1, "the worker's one run is collected, not restarted: {job}");
    wait_no_blobs(&queued.redis);
    let path = format!("/v1/models/{}/predict", job["model_id"].as_str().unwrap());
    let (status, predicted) = post_json(server, &path, READ_KEY, &json_images(&images(2, 64), json!({})));
    assert_eq!(status, 200, "{predicted}");
}

#[test]
fn a_worker_killed_mid_training_hands_the_job_to_another() {
    let queued = Queued::start(&["w1", "w2"]);
    let (server, redis, workers) = (queued.server(), &queued.redis, &queued.workers);
    let job = train(server, &long_request(&upload(server, 900, 64)));
    let id = job["id"].as_str().unwrap().to_owned();
    wait_running(server, &id);

    let consumer = redis.task_field(&id, "worker").unwrap();
    // Consumer names are `<name>-<pid>-<random>`.
    let victim = workers.iter().find(|w| consumer.contains(&format!("-{}-", w.child.id()))).unwrap();
    victim.signal("KILL");

    let job = wait_succeeded(server, &id, Duration::from_secs(180));
    assert_eq!(job["attempts"], 2, "reclaimed after the lease ({LEASE_MS} ms) and run again: {job}");
    let (status, _) = get_json(server, &format!("/v1/models/{}", job["model_id"].as_str().unwrap()));
    assert_eq!(status, 200);
}
