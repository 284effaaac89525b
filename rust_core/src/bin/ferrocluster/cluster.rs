//! `ferrocluster cluster`: the main job. Features of a folder of images, k-means, then
//! assignments.csv, model.json, metrics.json and a contact sheet of the clusters.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use ferrocluster_core::cluster::kmeans::{KMeans, KMeansModel};
use ferrocluster_core::cluster::minibatch::MiniBatchKMeans;
use ferrocluster_core::cluster::{Clusterer, Progress};
use ferrocluster_core::data::read_labels;
use ferrocluster_core::image::{load, DecodeLimits, Image};
use ferrocluster_core::metrics;
use ferrocluster_core::model::{Model, SavedModel};
use ferrocluster_core::report::{contact_sheet, ContactSheet};
use ferrocluster_core::Error;
use serde_json::json;

use crate::extract::{features_of, images_in};
use crate::progress::Bars;
use crate::remote::{self, RemoteArgs};
use crate::{Failure, FeatureArgs};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Algorithm {
    /// Lloyd's k-means with k-means++ initialisation.
    Kmeans,
    /// Mini-batch k-means (faster on large sets, slightly worse fit).
    Minibatch,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Folder of images (searched recursively); a labels.csv there (file,label) adds ARI and NMI to the metrics.
    dir: PathBuf,
    /// Number of clusters.
    #[arg(short, long)]
    k: usize,
    /// Output folder.
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value_t = Algorithm::Kmeans)]
    algorithm: Algorithm,
    /// Random seed (initialisation).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Initialisations to try (the best is kept).
    #[arg(long, default_value_t = 1)]
    n_init: usize,
    /// Thumbnails per cluster on the contact sheet.
    #[arg(long, default_value_t = 12)]
    thumbnails: usize,
    #[command(flatten)]
    features: FeatureArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// The one place the model is fitted. With `--redis` only the features are computed on the
/// workers so far; distributed k-means will be called from here when it lands.
fn fit(args: &ClusterArgs, x: ndarray::ArrayView2<'_, f32>, bars: &Bars) -> Result<KMeansModel<f32>, Error> {
    let bar = bars.bar(1, "clustering");
    let observe = |p: Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    };
    let model = match args.algorithm {
        Algorithm::Kmeans => {
            let algorithm =
                KMeans { n_clusters: args.k, n_init: Some(args.n_init), random_state: args.seed, ..KMeans::default() };
            algorithm.fit_observed(x, None, &observe)?
        }
        Algorithm::Minibatch => {
            let algorithm = MiniBatchKMeans {
                n_clusters: args.k,
                n_init: Some(args.n_init),
                random_state: args.seed,
                ..MiniBatchKMeans::default()
            };
            algorithm.fit_observed(x, None, &observe)?
        }
    };
    bar.finish();
    Ok(model)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn run(args: ClusterArgs, bars: &Bars) -> Result<(), Failure> {
    let config = args.features.load()?;
    let started = Instant::now();
    let paths = images_in(&args.dir)?;
    let extracted = match &args.remote.redis {
        None => features_of(&paths, &config, bars)?,
        Some(url) => remote::features_of(url, &args.remote, &paths, &config, bars)?,
    };
    let features_s = started.elapsed().as_secs_f64();
    let files: Vec<&PathBuf> = extracted.rows.iter().map(|&i| &paths[i]).collect();
    if files.len() < args.k {
        return Err(Error::input(format!(
            "{} images could be read but --k is {}: use a smaller k",
            files.len(),
            args.k
        ))
        .into());
    }

    let fit_started = Instant::now();
    let model = fit(&args, extracted.features.view(), bars)?;
    let fit_s = fit_started.elapsed().as_secs_f64();
    let (labels, sq_distances) = model.predict_with_distances(extracted.features.view())?;

    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    write_assignments(&args.output.join("assignments.csv"), &files, &labels, &sq_distances)?;
    SavedModel::new(Model::KMeans(model.clone()), Some(config)).save(&args.output.join("model.json"))?;

    let mut sizes = vec![0usize; args.k];
    for &l in &labels {
        sizes[l as usize] += 1;
    }
    let truth = read_labels(&args.dir)?.map(|known| {
        files
            .iter()
            .zip(&labels)
            .filter_map(|(f, &l)| known.get(&file_name(f)).map(|&t| (t, l)))
            .unzip::<_, _, Vec<i64>, Vec<i64>>()
    });
    let (ari, nmi) = match &truth {
        Some((t, p)) if !t.is_empty() => {
            (Some(metrics::adjusted_rand_score(t, p)?), Some(metrics::normalized_mutual_info_score(t, p)?))
        }
        _ => (None, None),
    };
    let silhouette = if args.k > 1 {
        Some(metrics::silhouette_score(extracted.features.view(), &labels, Some(2000), args.seed)?)
    } else {
        None
    };
    let report = json!({
        "images": files.len(),
        "skipped": extracted.skipped.iter().map(|(i, e)| json!({"file": paths[*i].display().to_string(), "error": e})).collect::<Vec<_>>(),
        "features": extracted.features.ncols(),
        "k": args.k,
        "algorithm": format!("{:?}", args.algorithm).to_lowercase(),
        "features_on": if args.remote.redis.is_some() { "redis workers" } else { "this process" },
        "inertia": model.inertia,
        "n_iter": model.n_iter,
        "cluster_sizes": sizes,
        "silhouette_sampled": silhouette,
        "adjusted_rand_index": ari,
        "normalized_mutual_info": nmi,
        "seconds": {"features": features_s, "fit": fit_s, "total": started.elapsed().as_secs_f64()},
    });
    let metrics_path = args.output.join("metrics.json");
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&report).unwrap_or_default())
        .map_err(|e| Error::io(&metrics_path, e))?;

    let sheet_path = args.output.join("contact_sheet.png");
    draw_sheet(&sheet_path, &files, &labels, &sq_distances, &sizes, args.thumbnails)?;

    println!(
        "clustered {} images into {} clusters in {:.2} s ({:.2} s features, {:.2} s fit)",
        files.len(),
        args.k,
        started.elapsed().as_secs_f64(),
        features_s,
        fit_s
    );
    println!("cluster sizes: {sizes:?}");
    if let (Some(ari), Some(nmi)) = (ari, nmi) {
        println!("against labels.csv: adjusted Rand index {ari:.3}, normalised mutual information {nmi:.3}");
    }
    if let Some(s) = silhouette {
        println!("silhouette (sampled): {s:.3}");
    }
    for name in ["assignments.csv", "model.json", "metrics.json", "contact_sheet.png"] {
        println!("wrote {}", args.output.join(name).display());
    }
    Ok(())
}

fn write_assignments(path: &Path, files: &[&PathBuf], labels: &[i64], sq: &[f32]) -> Result<(), Error> {
    let mut text = String::from("file,cluster,distance\n");
    for ((file, label), d) in files.iter().zip(labels).zip(sq) {
        text.push_str(&format!("{},{label},{}\n", file.display(), d.max(0.0).sqrt()));
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// One row per cluster: the members closest to the centre first.
fn draw_sheet(
    path: &Path,
    files: &[&PathBuf],
    labels: &[i64],
    sq: &[f32],
    sizes: &[usize],
    per: usize,
) -> Result<(), Error> {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| labels[a].cmp(&labels[b]).then(sq[a].total_cmp(&sq[b])));
    let mut chosen: Vec<Vec<usize>> = vec![Vec::new(); sizes.len()];
    for i in order {
        let row = &mut chosen[labels[i] as usize];
        if row.len() < per {
            row.push(i);
        }
    }
    let images: Vec<Vec<Image<f32>>> = chosen
        .iter()
        .map(|row| row.iter().map(|&i| load(files[i], None, &DecodeLimits::default())).collect())
        .collect::<Result<_, _>>()?;
    let members: Vec<Vec<&Image<f32>>> = images.iter().map(|row| row.iter().collect()).collect();
    let layout = ContactSheet { per_cluster: per.max(1), ..ContactSheet::default() };
    let sheet = contact_sheet(&layout, &members, sizes)?;
    sheet.save(path).map_err(|e| Error::Image { source_name: path.display().to_string(), reason: e.to_string() })
}
