//! `ferrocluster cluster`: the main job. Features of a folder of images, k-means, then
//! assignments.csv, model.json, metrics.json and a contact sheet of the clusters.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use ferrocluster_core::cluster::kmeans::{KMeans, KMeansModel};
use ferrocluster_core::cluster::minibatch::MiniBatchKMeans;
use ferrocluster_core::cluster::{Clusterer, Progress};
use ferrocluster_core::data::read_labels;
use ferrocluster_core::distributed::kmeans::{ShardedKMeans, DISTRIBUTED_MIN_ROWS};
use ferrocluster_core::image::{load, DecodeLimits, Image};
use ferrocluster_core::metrics;
use ferrocluster_core::model::{Model, SavedModel};
use ferrocluster_core::report::{contact_sheet, ContactSheet};
use ferrocluster_core::Error;
use serde_json::json;

use crate::extract::{features_of, images_in};
use crate::progress::Bars;
use crate::remote::{DistributedFit, RemoteArgs, RemoteJob};
use crate::{Failure, FeatureArgs};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Algorithm {
    /// Lloyd's k-means with k-means++ initialisation.
    Kmeans,
    /// Mini-batch k-means (faster on large sets, slightly worse fit).
    Minibatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Init {
    /// Greedy k-means++ (sequential).
    #[value(name = "k-means++")]
    KMeansPlusPlus,
    /// k-means|| over shards of rows, as a fit on the workers runs it (the same model).
    #[value(name = "k-means||")]
    KMeansParallel,
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
    /// k-means initialisation; a fit on the workers is always k-means||.
    #[arg(long, value_enum, default_value_t = Init::KMeansPlusPlus)]
    init: Init,
    /// Rows per shard of k-means|| (part of the fit: another value gives another, equally valid, model).
    #[arg(long, default_value_t = ShardedKMeans::default().shard_rows as u64, value_parser = clap::value_parser!(u64).range(1..))]
    shard_rows: u64,
    /// Thumbnails per cluster on the contact sheet.
    #[arg(long, default_value_t = 12)]
    thumbnails: usize,
    #[command(flatten)]
    features: FeatureArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Where the features were extracted or the model fitted.
fn place(on_workers: bool) -> &'static str {
    if on_workers {
        "redis workers"
    } else {
        "this process"
    }
}

/// Whether the fit goes to the workers of `job`: `--distributed-fit always`, or `auto` and
/// at least [`DISTRIBUTED_MIN_ROWS`] rows (as the Python API's `KMeans(distributed="auto")`).
fn on_cluster(args: &ClusterArgs, rows: usize) -> bool {
    args.remote.redis.is_some()
        && matches!(args.algorithm, Algorithm::Kmeans)
        && match args.remote.distributed_fit {
            DistributedFit::Always => true,
            DistributedFit::Auto => rows >= DISTRIBUTED_MIN_ROWS,
            DistributedFit::Never => false,
        }
}

/// Options that cannot go together, refused before any work.
fn check(args: &ClusterArgs) -> Result<(), Error> {
    if args.remote.distributed_fit == DistributedFit::Always {
        if args.remote.redis.is_none() {
            return Err(Error::parameter("distributed-fit", "`always` needs --redis URL (the workers fit the model)"));
        }
        if matches!(args.algorithm, Algorithm::Minibatch) {
            return Err(Error::parameter("distributed-fit", "`always` fits k-means: use --algorithm kmeans"));
        }
    }
    if args.remote.shared_dir.is_some() && args.remote.redis.is_none() {
        return Err(Error::parameter("shared-dir", "needs --redis URL (the workers write the features there)"));
    }
    Ok(())
}

/// The one place the model is fitted: here, or on the workers of `job` where its features are.
fn fit(
    args: &ClusterArgs,
    x: ndarray::ArrayView2<'_, f32>,
    job: Option<&RemoteJob>,
    bars: &Bars,
) -> Result<(KMeansModel<f32>, bool), Failure> {
    let bar = bars.bar(1, "clustering");
    let observe = |p: Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    };
    let sharded = ShardedKMeans {
        n_clusters: args.k,
        n_init: args.n_init,
        random_state: args.seed,
        shard_rows: args.shard_rows as usize,
        ..ShardedKMeans::default()
    };
    let job = job.filter(|_| on_cluster(args, x.nrows()));
    let model = match (args.algorithm, job) {
        (Algorithm::Kmeans, Some(job)) => job.fit(&sharded, &observe)?,
        (Algorithm::Kmeans, None) if args.init == Init::KMeansParallel => sharded.fit_observed(x, None, &observe)?,
        (Algorithm::Kmeans, None) => {
            let algorithm =
                KMeans { n_clusters: args.k, n_init: Some(args.n_init), random_state: args.seed, ..KMeans::default() };
            algorithm.fit_observed(x, None, &observe)?
        }
        (Algorithm::Minibatch, _) => {
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
    Ok((model, job.is_some()))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn run(args: ClusterArgs, bars: &Bars) -> Result<(), Failure> {
    let config = args.features.load()?;
    check(&args)?;
    let started = Instant::now();
    let paths = images_in(&args.dir)?;
    // With --redis the features stay in Redis until the job is dropped: a fit on the workers
    // reads them there.
    let job = match &args.remote.redis {
        None => None,
        Some(url) => Some(RemoteJob::extract(url, &args.remote, &paths, &config, bars)?),
    };
    let extracted = match &job {
        None => features_of(&paths, &config, bars)?,
        Some(job) => job.features(&paths, config.dim())?,
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
    let (model, fitted_on_cluster) = fit(&args, extracted.features.view(), job.as_ref(), bars)?;
    let fit_s = fit_started.elapsed().as_secs_f64();
    drop(job);
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
        "features_on": place(args.remote.redis.is_some()),
        "fit_on": place(fitted_on_cluster),
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
