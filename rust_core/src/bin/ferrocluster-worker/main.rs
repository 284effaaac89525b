//! `ferrocluster-worker`: joins a Redis work queue and runs ferrocluster's tasks.
//!
//! ```text
//! ferrocluster-worker --redis redis://user:pass@host:6379/0 --queues default --concurrency 2
//! ```
//! SIGTERM or Ctrl-C: stop fetching, let running tasks finish within `--grace-ms`, hand the
//! rest back at once, leave the consumer group, exit 0.

mod tasks;

use std::time::Duration;

use clap::Parser;
use ferrocluster_core::queue::{Queue, QueueConfig, Worker, WorkerConfig};
use tracing_subscriber::EnvFilter;

/// Runs ferrocluster tasks from a Redis Streams queue.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Redis URL: redis://[user:password@]host:port/db, or rediss:// for TLS.
    #[arg(long, env = "FERROCLUSTER_REDIS", default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
    /// Queues to serve, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    queues: Vec<String>,
    /// Tasks run at once (each may use every core through rayon).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// This worker's name in logs and in its worker record (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Key prefix of the queue: every producer and worker of one queue must agree.
    #[arg(long, default_value = "fc")]
    namespace: String,
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ferrocluster-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> ferrocluster_core::queue::Result<()> {
    let config = QueueConfig {
        namespace: args.namespace,
        lease: Duration::from_millis(args.lease_ms),
        max_deliveries: args.max_deliveries,
        block: Duration::from_millis(args.block_ms),
        retry_base: Duration::from_millis(args.retry_base_ms),
        ..QueueConfig::default()
    };
    let queue = Queue::connect(&args.redis, config).await?;
    let registry = tasks::registry(&queue, args.enable_test_tasks);
    let name = args.name.unwrap_or_else(host_name);
    let worker_config = WorkerConfig {
        name,
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
