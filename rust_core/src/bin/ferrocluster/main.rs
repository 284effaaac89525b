//! The `ferrocluster` command line: make sample sets, extract features, cluster folders of
//! images (assignments, model, metrics and a contact sheet), label new images; run workers of
//! the Redis queue and look after it.

mod cluster;
mod extract;
mod predict;
mod progress;
mod queue;
mod remote;
mod sample;
mod shared_dir;
// The worker is one implementation shared with the `ferrocluster-worker` binary.
#[path = "../ferrocluster-worker/tasks.rs"]
mod tasks;
#[path = "../ferrocluster-worker/worker.rs"]
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ferrocluster_core::features::FeatureConfig;
use ferrocluster_core::Error;

#[derive(Debug, Parser)]
#[command(name = "ferrocluster", version, about = "Image features and clustering, on every core")]
struct Cli {
    /// Threads to use (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a labelled sample set of images into a folder.
    Sample(sample::SampleArgs),
    /// Extract feature vectors from a folder of images into a .npy file.
    Extract(extract::ExtractArgs),
    /// Cluster a folder of images: assignments, model, metrics and a contact sheet.
    Cluster(cluster::ClusterArgs),
    /// Label new images with a saved model.
    Predict(predict::PredictArgs),
    /// Run tasks from the Redis queue until SIGTERM (the same as `ferrocluster-worker`).
    Worker(worker::WorkerArgs),
    /// Look at the Redis queue and retry dead letters.
    Queue(queue::QueueArgs),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Core(#[from] Error),
    #[error(transparent)]
    Queue(#[from] ferrocluster_core::queue::Error),
    /// A k-means fit on the workers failed.
    #[error(transparent)]
    Fit(#[from] ferrocluster_core::distributed::kmeans::Error),
    /// A job on the queue did not complete, or a worker could not run.
    #[error("{0}")]
    Job(String),
}

/// How features are chosen on the command line: a JSON config file, or the default with a size.
#[derive(Debug, Args)]
struct FeatureArgs {
    /// Feature configuration (JSON, the core's FeatureConfig); default: HOG on 64×64 RGB.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Resize images to SIZE×SIZE before extraction (ignored with --config).
    #[arg(long, default_value_t = 64)]
    size: usize,
}

impl FeatureArgs {
    fn load(&self) -> Result<FeatureConfig, Error> {
        let config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                serde_json::from_str(&text)
                    .map_err(|e| Error::input(format!("{}: not a feature configuration: {e}", path.display())))?
            }
            None => FeatureConfig { size: [self.size, self.size], ..FeatureConfig::default() },
        };
        config.validate()?;
        Ok(config)
    }
}

fn run(command: Command, bars: &progress::Bars) -> Result<(), Failure> {
    match command {
        Command::Sample(args) => Ok(sample::run(args)?),
        Command::Extract(args) => Ok(extract::run(args, bars)?),
        Command::Cluster(args) => cluster::run(args, bars),
        Command::Predict(args) => Ok(predict::run(args, bars)?),
        Command::Queue(args) => queue::run(args),
        Command::Worker(args) => worker::run(args).map_err(Failure::Job),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            eprintln!("error: {}", Error::parameter("threads", e.to_string()));
            return ExitCode::FAILURE;
        }
    }
    // A worker's log is its output; elsewhere only warnings (e.g. a Redis without AOF) join
    // the progress bars and results.
    worker::init_logging(if matches!(cli.command, Command::Worker(_)) { "info" } else { "warn" });
    match run(cli.command, &progress::Bars::new(!cli.quiet)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
