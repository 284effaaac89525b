//! Test harness: private `redis-server` processes on free loopback ports, in temp dirs,
//! and `ferrocluster-worker` processes, all killed when dropped (even on panic).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrocluster_core::queue::{Queue, QueueConfig, TaskState, TaskStatus, TlsFiles};

/// A redis-server of our own, with AOF (`appendfsync everysec`) in a temp dir.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    tls: bool,
}

impl RedisServer {
    /// Starts a server with AOF and `noeviction`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `--requirepass`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on(extra.iter().map(|s| s.to_string()).collect(), false)
    }

    /// Starts a server that speaks TLS only, with `certs`' server certificate, requiring
    /// client certificates signed by their CA (Redis's default, `tls-auth-clients yes`).
    pub fn start_tls(certs: &TestCertificates) -> Self {
        let path = |name: &str| certs.path(name).to_str().expect("a UTF-8 temp path").to_owned();
        let extra = [
            "--tls-cert-file".to_owned(),
            path("server.crt"),
            "--tls-key-file".to_owned(),
            path("server.key"),
            "--tls-ca-cert-file".to_owned(),
            path("ca.crt"),
        ];
        Self::start_on(extra.to_vec(), true)
    }

    fn start_on(extra: Vec<String>, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer { port: free_port(), dir, child: None, extra, tls };
        // The port is free when chosen but another process may bind it first; then redis
        // exits, and a fresh port is tried.
        for _ in 0..5 {
            if server.spawn() {
                return server;
            }
            server.port = free_port();
        }
        panic!("redis-server found no free port in 5 tries:\n{}", server.log());
    }

    /// `rediss://127.0.0.1:port/0`, for a server started by [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }

    /// `redis://127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and dir: it reloads the AOF.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "redis-server could not listen on port {} again:\n{}", self.port, self.log());
    }

    /// A plain synchronous connection, for assertions and for poking at raw keys.
    pub fn sync(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// Starts redis-server on `self.port` and waits until it is ready; false if the port
    /// was taken. Readiness is read off this server's own log: with the port taken by
    /// someone else, a connect to it would succeed and prove nothing.
    fn spawn(&mut self) -> bool {
        let log_path = self.dir.path().join("redis.log");
        let _ = std::fs::remove_file(&log_path);
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        if self.tls {
            cmd.args(["--port", "0", "--tls-port", &port]);
        } else {
            cmd.args(["--port", &port]);
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "everysec", "--maxmemory-policy", "noeviction", "--dir"])
            .arg(self.dir.path())
            .args(&self.extra)
            .arg("--logfile")
            .arg(&log_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            self.child.insert(cmd.spawn().expect("redis-server must be installed (apt-get install redis-server)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("Ready to accept connections") {
                return true;
            }
            if child.try_wait().unwrap().is_some() {
                self.child = None;
                if log.contains("Address already in use") {
                    return false;
                }
                panic!("redis-server exited on port {}:\n{log}", self.port);
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {}:\n{log}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A throwaway CA, made with `openssl` at test time (nothing committed can expire), and the
/// server and client certificates it signs, for `127.0.0.1` and `localhost`.
pub struct TestCertificates {
    dir: tempfile::TempDir,
}

impl TestCertificates {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl command must be installed (apt-get install openssl)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let key: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca: &[&str] = &["req", "-x509", "-days", "2", "-subj", "/CN=ferrocluster test CA"];
        openssl(&[ca, key, &["-keyout", "ca.key", "-out", "ca.crt"]].concat());
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        for name in ["server", "client"] {
            let (csr, crt, pem) = (format!("{name}.csr"), format!("{name}.crt"), format!("{name}.key"));
            openssl(&[&["req", "-subj", "/CN=localhost"][..], key, &["-keyout", &pem, "-out", &csr]].concat());
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &crt,
            ]);
        }
        TestCertificates { dir }
    }

    /// A file of the set: ca.crt, server.crt, server.key, client.crt, client.key.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What a client needs: the CA, and its certificate and key.
    pub fn client_files(&self) -> TlsFiles {
        TlsFiles {
            ca: Some(self.path("ca.crt")),
            cert: Some(self.path("client.crt")),
            key: Some(self.path("client.key")),
        }
    }

    /// The same as the environment every command reads.
    pub fn client_env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("FERROCLUSTER_REDIS_CA", self.path("ca.crt")),
            ("FERROCLUSTER_REDIS_CERT", self.path("client.crt")),
            ("FERROCLUSTER_REDIS_KEY", self.path("client.key")),
        ]
    }
}

/// A queue configuration with short leases, so faults resolve in about a second.
pub fn fast_config() -> QueueConfig {
    QueueConfig {
        lease: Duration::from_millis(1000),
        block: Duration::from_millis(200),
        max_deliveries: 3,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        reconnect_timeout: Duration::from_secs(20),
        ..QueueConfig::default()
    }
}

/// A worker process, killed when dropped.
pub struct WorkerProcess {
    pub child: Child,
    pub log: PathBuf,
}

/// The two ways to run a worker (one implementation).
#[derive(Debug, Clone, Copy)]
pub enum WorkerCommand {
    /// `ferrocluster-worker`.
    Standalone,
    /// `ferrocluster worker`.
    Cli,
}

impl WorkerProcess {
    /// Starts a `ferrocluster-worker` on `queues` with the config's lease and cap, test tasks
    /// enabled.
    pub fn start(url: &str, config: &QueueConfig, queues: &str, extra: &[&str]) -> Self {
        Self::start_as(WorkerCommand::Standalone, url, config, queues, &[&["--enable-test-tasks"], extra].concat())
    }

    /// Starts a worker with `command` on `queues` with the config's lease and cap.
    pub fn start_as(command: WorkerCommand, url: &str, config: &QueueConfig, queues: &str, extra: &[&str]) -> Self {
        Self::start_env(command, url, config, queues, extra, &[])
    }

    /// Starts a worker as [`WorkerProcess::start_as`] does, with extra environment variables.
    pub fn start_env(
        command: WorkerCommand,
        url: &str,
        config: &QueueConfig,
        queues: &str,
        extra: &[&str],
        env: &[(&str, PathBuf)],
    ) -> Self {
        let log = std::env::temp_dir().join(format!("fc-worker-{}-{}.log", std::process::id(), rand_suffix()));
        let mut cmd = match command {
            WorkerCommand::Standalone => Command::new(env!("CARGO_BIN_EXE_ferrocluster-worker")),
            WorkerCommand::Cli => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrocluster"));
                cmd.arg("worker");
                cmd
            }
        };
        cmd.args(["--redis", url, "--queues", queues])
            .args(["--lease-ms", &config.lease.as_millis().to_string()])
            .args(["--block-ms", &config.block.as_millis().to_string()])
            .args(["--max-deliveries", &config.max_deliveries.to_string()])
            .args(["--retry-base-ms", &config.retry_base.as_millis().to_string()])
            .args(["--namespace", &config.namespace])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        WorkerProcess { child: cmd.spawn().expect("worker binary"), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (KILL, STOP, CONT, TERM).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().unwrap().success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Polls `status(id)` until `pred` holds, panicking after `timeout`.
pub async fn wait_for(queue: &Queue, id: &str, timeout: Duration, pred: impl Fn(&TaskStatus) -> bool) -> TaskStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status = queue.status(id).await.unwrap();
        if pred(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "timed out waiting on {id}: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every task is terminal, panicking after `timeout`.
pub async fn wait_all(queue: &Queue, ids: &[String], timeout: Duration) -> Vec<TaskStatus> {
    let statuses = queue.wait(ids, timeout).await.unwrap();
    let unfinished: Vec<_> = statuses.iter().filter(|s| !s.state.is_terminal()).collect();
    assert!(unfinished.is_empty(), "unfinished after {timeout:?}: {unfinished:?}");
    statuses
}

/// The namespace's counter `name` (succeeded, refused, dead, ...).
pub async fn counter(queue: &Queue, name: &str) -> u64 {
    queue.stats().await.unwrap().counters.get(name).copied().unwrap_or(0)
}

pub fn succeeded(statuses: &[TaskStatus]) -> usize {
    statuses.iter().filter(|s| s.state == TaskState::Succeeded).count()
}
