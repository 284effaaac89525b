//! `ferrocluster-worker`: joins a Redis work queue and runs ferrocluster's tasks (the same
//! command as `ferrocluster worker`, for hosts that only run workers).
//!
//! ```text
//! ferrocluster-worker --redis redis://user:pass@host:6379/0 --queues default --concurrency 2
//! ```
//! SIGTERM or Ctrl-C: stop fetching, let running tasks finish within `--grace-ms`, hand the
//! rest back at once, leave the consumer group, exit 0.

mod tasks;
mod worker;

use std::process::ExitCode;

use clap::Parser;

/// Runs ferrocluster tasks from a Redis Streams queue.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    worker: worker::WorkerArgs,
}

fn main() -> ExitCode {
    worker::init_logging("info");
    match worker::run(Cli::parse().worker) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocluster-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
