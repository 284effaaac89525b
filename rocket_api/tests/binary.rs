//! The real `ferrocluster-api` binary over real HTTP: upload → train → predict, and a kill
//! mid-training followed by a restart that finishes the job and serves the model.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{api_keys, json_images, labelled, ADMIN_KEY, READ_KEY};

/// A running server, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn keys_env() -> String {
    // Rocket reads environment values as TOML: an array of inline tables.
    let keys = api_keys();
    let tables: Vec<String> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let (field, value) = if k["sha256"].is_string() { ("sha256", &k["sha256"]) } else { ("key", &k["key"]) };
            format!("{{{field}={value}, role={}}}", k["role"])
        })
        .collect();
    format!("[{}]", tables.join(", "))
}

fn start(data_dir: &Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_ferrocluster-api"))
        .env("ROCKET_ADDRESS", "127.0.0.1")
        .env("ROCKET_PORT", port.to_string())
        .env("ROCKET_DATA_DIR", data_dir)
        .env("ROCKET_API_KEYS", keys_env())
        .env("ROCKET_LOG_LEVEL", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(format!("{}/healthz", server.base)).call().is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn post_json(server: &Server, path: &str, key: &str, body: &str) -> (u16, Value) {
    let mut response = agent()
        .post(format!("{}{path}", server.base))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    (response.status().as_u16(), serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let mut response = agent().get(format!("{}{path}", server.base)).header("X-API-Key", READ_KEY).call().unwrap();
    (response.status().as_u16(), serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

fn job_state(server: &Server, id: &str) -> Value {
    get_json(server, &format!("/v1/jobs/{id}")).1
}

fn images(n: usize, size: u32) -> Vec<(String, Vec<u8>)> {
    labelled(n, size).into_iter().map(|(name, bytes, _)| (name, bytes)).collect()
}

#[test]
fn upload_train_predict_then_survive_a_kill_mid_training() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(dir.path(), port);

    // Upload → train → predict.
    let small = images(12, 32);
    let (status, dataset) = post_json(&server, "/v1/datasets", ADMIN_KEY, &json_images(&small, json!({})));
    assert_eq!(status, 201, "{dataset}");
    let features = json!({"size": [32, 32], "hog": {"cells_per_block": [2, 2]}});
    let request = json!({"dataset_id": dataset["id"], "k": 3, "features": features});
    let (status, job) = post_json(&server, "/v1/models", ADMIN_KEY, &request.to_string());
    assert_eq!(status, 202, "{job}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = job_state(&server, job["id"].as_str().unwrap());
        if job["state"] == "succeeded" {
            break job;
        }
        assert!(job["state"] == "queued" || job["state"] == "running", "{job}");
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    };
    let path = format!("/v1/models/{}/predict", job["model_id"].as_str().unwrap());
    let (status, predicted) = post_json(&server, &path, READ_KEY, &json_images(&small[..3], json!({})));
    assert_eq!(status, 200, "{predicted}");
    assert_eq!(predicted["predictions"].as_array().unwrap().len(), 3);

    // A long job: kill the server (SIGKILL, no grace) while it runs, then start it again.
    let big = images(900, 64);
    let (status, dataset) = post_json(&server, "/v1/datasets", ADMIN_KEY, &json_images(&big, json!({})));
    assert_eq!(status, 201, "{dataset}");
    let request = json!({"dataset_id": dataset["id"], "k": 3, "features": {"size": [64, 64], "hog": {"cells_per_block": [2, 2]}, "lbp": {}}});
    let (_, job) = post_json(&server, "/v1/models", ADMIN_KEY, &request.to_string());
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_state(&server, &id)["state"] != "running" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(server);
    let stored = std::fs::read_to_string(dir.path().join(format!("jobs/{id}.json"))).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["state"], "running", "the kill came after the job finished: make the job longer");

    let server = start(dir.path(), port);
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let job = job_state(&server, &id);
        if job["state"] == "succeeded" {
            break job;
        }
        assert!(!["failed", "cancelled"].contains(&job["state"].as_str().unwrap()), "{job}");
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(job["attempts"], 2);
    let path = format!("/v1/models/{}/predict", job["model_id"].as_str().unwrap());
    let (status, predicted) = post_json(&server, &path, READ_KEY, &json_images(&big[..2], json!({})));
    assert_eq!(status, 200, "{predicted}");
    let (_, first) = get_json(&server, &format!("/v1/datasets/{}", dataset["id"].as_str().unwrap()));
    assert_eq!(first["n_images"], 900);

    // SIGTERM: Rocket drains and the process exits on its own, successfully.
    let mut server = server;
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}
