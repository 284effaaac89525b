//! The real `ferrocluster-api` binary over real HTTP: start it, call it, wait on its jobs.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{api_keys, labelled, READ_KEY};

/// A running server, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
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

/// Starts the binary on `port` with `data_dir` and extra `ROCKET_*` settings, and waits until
/// it answers `/healthz`.
pub fn start(data_dir: &Path, port: u16, env: &[(&str, String)]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_ferrocluster-api"))
        .env("ROCKET_ADDRESS", "127.0.0.1")
        .env("ROCKET_PORT", port.to_string())
        .env("ROCKET_DATA_DIR", data_dir)
        .env("ROCKET_API_KEYS", keys_env())
        .env("ROCKET_LOG_LEVEL", "off")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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

fn answer(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let text = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

pub fn post_json(server: &Server, path: &str, key: &str, body: &str) -> (u16, Value) {
    answer(
        agent()
            .post(format!("{}{path}", server.base))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap(),
    )
}

pub fn get_json(server: &Server, path: &str) -> (u16, Value) {
    answer(agent().get(format!("{}{path}", server.base)).header("X-API-Key", READ_KEY).call().unwrap())
}

pub fn delete(server: &Server, path: &str, key: &str) -> (u16, Value) {
    answer(
        agent()
            .delete(format!("{}{path}", server.base))
            .header("Authorization", format!("Bearer {key}"))
            .call()
            .unwrap(),
    )
}

pub fn job_state(server: &Server, id: &str) -> Value {
    get_json(server, &format!("/v1/jobs/{id}")).1
}

/// Polls job `id` until `done` holds of it, failing after `timeout` or when `fails` holds.
pub fn wait_job(server: &Server, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let job = job_state(server, id);
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "timed out: {job}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until job `id` succeeded; fails at once if it failed or was cancelled.
pub fn wait_succeeded(server: &Server, id: &str, timeout: Duration) -> Value {
    wait_job(server, id, timeout, |job| {
        assert!(!["failed", "cancelled"].contains(&job["state"].as_str().unwrap()), "{job}");
        job["state"] == "succeeded"
    })
}

pub fn images(n: usize, size: u32) -> Vec<(String, Vec<u8>)> {
    labelled(n, size).into_iter().map(|(name, bytes, _)| (name, bytes)).collect()
}
