//! The worker command, one implementation for both `ferrocluster-worker` and
//! `ferrocluster worker`: its options, and running it until SIGTERM or Ctrl-C.

use std::time::Duration;

use clap::Args;
use ferrocluster_core::queue::{Queue, QueueConfig, Worker, WorkerConfig};
use tracing_subscriber::EnvFilter;

use crate::tasks;

/// Where the queue lives: the options every command that talks to it shares.
#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[user:password@]host:port/db, or rediss:// for TLS.
    #[arg(long, global = true, env = "FERROCLUSTER_REDIS", default_value = "redis://127.0.0.1:6379/0")]
    pub redis: String,
    /// Key prefix of the queue: every producer and worker of one queue must agree.
    #[arg(long, global = true, default_value = "fc")]
    pub namespace: String,
}

/// Options of a worker.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// Queues to serve, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    queues: Vec<String>,
    /// Tasks run at once (each may use every core through rayon).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// This worker's name in logs and in its worker record (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Lease of a task in ms: a task whose worker is silent this long is given to another.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// Times a task may lose its worker before it is dead-lettered as poison.
    #[arg(long, default_value_t = 5)]
    max_deliveries: u32,
    /// Longest wait of one blocking read, in ms.
    #[arg(long, default_value_t = 2_000)]
    block_ms: u64,
    /// On SIGTERM, how long running tasks may take to finish before being handed back, in ms.
    #[arg(long, default_value_t = 10_000)]
    grace_ms: u64,
    /// First retry delay after a task error, in ms (doubled per attempt, with jitter).
    #[arg(long, default_value_t = 500)]
    retry_base_ms: u64,
    /// FOR TESTS ONLY: also run `test.crash` (exits the worker), `test.hang` (never returns)
    /// and `test.fail` (fails its first attempts). Never enable in production.
    #[arg(long, hide = true)]
    enable_test_tasks: bool,
}

/// Logs to stderr at `default` level, or as `RUST_LOG` says.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)))
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a worker until SIGTERM or Ctrl-C, and returns once it has handed everything back;
/// the error says why it could not run (it is logged too).
pub fn run(args: WorkerArgs) -> Result<(), String> {
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|e| format!("starting the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(serve(args)).map_err(|e| e.to_string()));
    if let Err(e) = &outcome {
        tracing::error!("{e}");
    }
    outcome
}

async fn serve(args: WorkerArgs) -> ferrocluster_core::queue::Result<()> {
    let config = QueueConfig {
        namespace: args.redis.namespace,
        lease: Duration::from_millis(args.lease_ms),
        max_deliveries: args.max_deliveries,
        block: Duration::from_millis(args.block_ms),
        retry_base: Duration::from_millis(args.retry_base_ms),
        ..QueueConfig::default()
    };
    let queue = Queue::connect(&args.redis.redis, config).await?;
    let registry = tasks::registry(&queue, args.enable_test_tasks);
    let worker_config = WorkerConfig {
        name: args.name.unwrap_or_else(host_name),
        queues: args.queues,
        concurrency: args.concurrency,
        grace: Duration::from_millis(args.grace_ms),
    };
    Worker::new(queue, worker_config, registry).run(shutdown_signal()).await
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}
