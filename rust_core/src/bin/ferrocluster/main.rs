//! The `ferrocluster` command line: make sample sets, extract features, cluster folders of
//! images (assignments, model, metrics and a contact sheet), and label new images.

mod cluster;
mod extract;
mod npy;
mod predict;
mod progress;
mod sample;

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

fn run(cli: Cli) -> Result<(), Error> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::parameter("threads", e.to_string()))?;
    }
    let bars = progress::Bars::new(!cli.quiet);
    match cli.command {
        Command::Sample(args) => sample::run(args),
        Command::Extract(args) => extract::run(args, &bars),
        Command::Cluster(args) => cluster::run(args, &bars),
        Command::Predict(args) => predict::run(args, &bars),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
