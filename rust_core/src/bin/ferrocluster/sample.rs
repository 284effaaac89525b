//! `ferrocluster sample`: write a labelled sample set (digits or synthetic) into a folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, Subcommand};
use ferrocluster_core::data::{read_digits_csv, synthetic, write_labelled, SyntheticSpec};
use ferrocluster_core::Error;

#[derive(Debug, Args)]
pub struct SampleArgs {
    #[command(subcommand)]
    set: SampleSet,
}

#[derive(Debug, Subcommand)]
enum SampleSet {
    /// scikit-learn's handwritten digits (1797 images, 10 classes), read from an installed scikit-learn.
    Digits {
        /// Folder to write the PNGs and labels.csv into.
        dir: PathBuf,
        /// Upscale factor for the 8×8 images.
        #[arg(long, default_value_t = 4)]
        scale: usize,
        /// digits.csv.gz to read (default: found through `python3 -c "import sklearn"`).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Python interpreter that has scikit-learn.
        #[arg(long, env = "FERROCLUSTER_PYTHON", default_value = "python3")]
        python: String,
    },
    /// Seeded synthetic striped textures, any count and size.
    Synthetic {
        /// Folder to write the PNGs and labels.csv into.
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Side of the square images.
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 8)]
        classes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn sklearn_digits_csv(python: &str) -> Result<PathBuf, Error> {
    let script = "import os, sklearn; print(os.path.join(os.path.dirname(sklearn.__file__), 'datasets', 'data', 'digits.csv.gz'))";
    let output = Command::new(python)
        .args(["-c", script])
        .output()
        .map_err(|e| Error::input(format!("could not run `{python}` to find scikit-learn: {e}")))?;
    if !output.status.success() {
        return Err(Error::input(format!(
            "`{python}` has no scikit-learn (pip install scikit-learn, or pass --csv PATH/digits.csv.gz): {}",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default()
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

pub fn run(args: SampleArgs) -> Result<(), Error> {
    let (set, dir, prefix, scale): (_, &Path, _, _) = match &args.set {
        SampleSet::Digits { dir, scale, csv, python } => {
            let csv = match csv {
                Some(path) => path.clone(),
                None => sklearn_digits_csv(python)?,
            };
            (read_digits_csv(&csv)?, dir, "digit", *scale)
        }
        SampleSet::Synthetic { dir, n, size, classes, seed } => {
            let spec =
                SyntheticSpec { n: *n, size: [*size, *size], classes: *classes, seed: *seed, ..Default::default() };
            (synthetic(&spec)?, dir, "texture", 1)
        }
    };
    write_labelled(&set, dir, prefix, scale)?;
    println!("wrote {} images and {} to {}", set.images.len(), ferrocluster_core::data::LABELS_FILE, dir.display());
    Ok(())
}
