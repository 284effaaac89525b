//! A private `redis-server` and `ferrocluster-worker` processes, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::server::free_port;

/// A redis-server on a free loopback port, in a temp dir.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A port free when chosen may be bound by another process first: redis then exits
        // and a fresh port is tried. Readiness is read off this server's own log, since a
        // connect to a port someone else holds would prove nothing.
        for _ in 0..5 {
            let port = free_port();
            let log_path = dir.path().join(format!("redis-{port}.log"));
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
                .args(["--maxmemory-policy", "noeviction", "--dir"])
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/install-system-deps.sh)");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                if log.contains("Ready to accept connections") {
                    return RedisServer { port, child, _dir: dir };
                }
                if child.try_wait().unwrap().is_some() {
                    assert!(log.contains("Address already in use"), "redis-server exited on port {port}:\n{log}");
                    break;
                }
                assert!(Instant::now() < deadline, "redis-server did not start on port {port}:\n{log}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server found no free port in 5 tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A field of a task's record (namespace `fc`), read straight from Redis.
    pub fn task_field(&self, id: &str, field: &str) -> Option<String> {
        let mut conn = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        redis::cmd("HGET").arg(format!("fc:task:{id}")).arg(field).query(&mut conn).unwrap()
    }

    /// The keys of blob chunks (namespace `fc`), read straight from Redis.
    pub fn blob_keys(&self) -> Vec<String> {
        let mut conn = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        redis::cmd("KEYS").arg("fc:blob:*").query(&mut conn).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `ferrocluster-worker` process, killed when dropped.
pub struct Worker {
    pub child: Child,
}

/// Lease of the test workers: a silent worker's task is reclaimed after this, and cancels
/// reach a running task within a third of it.
pub const LEASE_MS: u64 = 1500;

impl Worker {
    /// A worker named `name` serving the default queue of `redis`.
    pub fn start(redis: &RedisServer, name: &str) -> Self {
        Worker::with_lease(redis, name, LEASE_MS)
    }

    /// A worker whose lease is `lease_ms` (it heartbeats every third of it).
    pub fn with_lease(redis: &RedisServer, name: &str, lease_ms: u64) -> Self {
        let child = Command::new(worker_binary())
            .args(["--redis", &redis.url(), "--name", name, "--lease-ms", &lease_ms.to_string()])
            .args(["--block-ms", "200"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Worker { child }
    }

    /// Sends a signal by name (KILL, TERM).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success(), "kill -{name} failed");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferrocluster-worker` of the same build as this test (another package's binary): next to
/// the test's own directory, built first when a `cargo test -p ferrocluster-api` did not.
pub fn worker_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
            let binary = profile_dir.join("ferrocluster-worker");
            if !binary.exists() {
                let profile = match profile_dir.file_name().and_then(|p| p.to_str()) {
                    Some("debug") => "dev".to_owned(),
                    Some(other) => other.to_owned(),
                    None => "release".to_owned(),
                };
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
                let built = Command::new(cargo)
                    .args(["build", "--quiet", "--profile", &profile, "-p", "ferrocluster-core", "--bin"])
                    .arg("ferrocluster-worker")
                    .status()
                    .unwrap();
                assert!(built.success(), "building ferrocluster-worker failed");
            }
            binary
        })
        .clone()
}
