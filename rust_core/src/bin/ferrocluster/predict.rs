//! `ferrocluster predict`: label new images with a saved model.

use std::path::PathBuf;

use clap::Args;
use ferrocluster_core::model::{Model, SavedModel};
use ferrocluster_core::Error;
use serde_json::json;

use crate::extract::features_of;
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model.json written by `ferrocluster cluster`.
    model: PathBuf,
    /// Image files to label.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Print JSON lines instead of CSV.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PredictArgs, bars: &Bars) -> Result<(), Error> {
    let saved = SavedModel::load(&args.model)?;
    let config = saved.features.clone().ok_or_else(|| {
        Error::input(format!("{} was not trained on images (it has no feature configuration)", args.model.display()))
    })?;
    let extracted = features_of(&args.images, &config, bars)?;
    let Model::KMeans(model) = &saved.model;
    let (labels, sq) = model.predict_with_distances(extracted.features.view())?;
    if !args.json {
        println!("file,cluster,distance");
    }
    for ((&i, label), d) in extracted.rows.iter().zip(&labels).zip(&sq) {
        let file = args.images[i].display().to_string();
        let distance = d.max(0.0).sqrt();
        if args.json {
            println!("{}", json!({"file": file, "cluster": label, "distance": distance}));
        } else {
            println!("{file},{label},{distance}");
        }
    }
    if extracted.skipped.is_empty() {
        Ok(())
    } else {
        Err(Error::input(format!("{} of the images could not be read", extracted.skipped.len())))
    }
}
