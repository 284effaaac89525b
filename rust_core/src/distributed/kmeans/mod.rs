//! Distributed k-means: k-means|| initialisation and Lloyd iterations over shards of rows.
//!
//! The rows are cut into shards of `shard_rows` consecutive rows. A coordinator drives the
//! fit as a sequence of steps ([`ShardOp`]) that every shard runs on its own rows and whose
//! replies ([`ShardReply`]) it reduces **in shard order**, in f64:
//!
//! 1. the column mean (the data is centred, as scikit-learn does) and the mean variance that
//!    scales `tol`;
//! 2. **k-means||** (Bahmani et al., 2012): one uniform row, then `init_rounds` rounds in which
//!    each shard keeps every row with probability `min(1, ℓ·d²/φ)` (ℓ = `oversampling × k`,
//!    φ the total cost), drawing from a generator seeded by (seed, shard, round); the
//!    candidates, weighted by the rows nearest to each, are reduced to `k` centres by greedy
//!    weighted k-means++;
//! 3. Lloyd iterations with scikit-learn's rules (stop when labels are unchanged or the
//!    squared centre shift is at most `tol ×` mean variance; empty clusters take the
//!    farthest rows; a last E-step when not strictly converged).
//!
//! The shards run in a [`ShardExecutor`]: [`LocalShards`] in this process, or
//! [`ClusterShards`] on `ferrocluster-worker` processes that keep their shards resident.
//! Both run the same shard code on the same shard plan, so a fit on a cluster gives the same
//! model as the local one for the same seed.
//!
//! ```
//! use ferrocluster_core::cluster::{Clusterer, Fitted};
//! use ferrocluster_core::distributed::kmeans::ShardedKMeans;
//! use ndarray::array;
//!
//! let x = array![[0.0f32, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]];
//! let km = ShardedKMeans { n_clusters: 2, shard_rows: 3, ..ShardedKMeans::default() };
//! let model = km.fit(x.view(), None).unwrap();
//! assert_eq!(model.labels()[0], model.labels()[1]);
//! assert_ne!(model.labels()[0], model.labels()[2]);
//! ```

mod host;
mod local;
mod op;
mod remote;
mod shard;
mod source;

use std::collections::HashMap;

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

pub use host::register;
pub use local::LocalShards;
pub use op::{FarPoint, ShardOp, ShardReply, Versioned};
pub use remote::{ClusterData, ClusterFit, ClusterShards, Error};
pub use source::ShardSource;

use crate::cluster::kmeans::{average, check_common, default_trials, given_centres, move_point, plusplus};
use crate::cluster::kmeans::{Data, KMeansInit, KMeansModel, Kernel};
use crate::cluster::Progress;
use crate::{CancelToken, Real, Result};

/// How the rows are cut into shards: `shard_rows` consecutive rows each, the last one shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// Rows.
    pub n: usize,
    /// Columns.
    pub d: usize,
    /// Rows per shard.
    pub shard_rows: usize,
}

impl ShardPlan {
    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.n.div_ceil(self.shard_rows)
    }

    /// The global rows of shard `s`.
    pub fn range(&self, s: usize) -> std::ops::Range<usize> {
        s * self.shard_rows..((s + 1) * self.shard_rows).min(self.n)
    }
}

/// With `distributed = auto`, a fit goes to the cluster from this many rows on (the Python
/// API's `ferrocluster.cluster.DISTRIBUTED_MIN_ROWS`).
pub const DISTRIBUTED_MIN_ROWS: usize = 500_000;

/// Runs a step on shards and returns their replies in the order asked.
pub trait ShardExecutor<T: Real> {
    /// What can go wrong besides bad data.
    type Error: From<crate::Error>;

    /// Runs `op` on each of `shards` and returns the replies in that order.
    ///
    /// # Errors
    /// Bad data in a shard; for remote executors, the queue's failures.
    fn run(&mut self, op: &ShardOp<Array2<T>>, shards: &[usize]) -> std::result::Result<Vec<ShardReply>, Self::Error>;
}

/// k-means over shards (k-means|| initialisation, then Lloyd), on this process or a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardedKMeans {
    /// Number of clusters (k).
    pub n_clusters: usize,
    /// Initial centres (`k × d`, in the data's space) instead of k-means||.
    pub init: Option<Array2<f64>>,
    /// Runs from different seeds, the lowest inertia kept.
    pub n_init: usize,
    /// Most Lloyd iterations per run.
    pub max_iter: usize,
    /// Convergence when the squared centre shift is at most `tol` times the mean variance.
    pub tol: f64,
    /// Seed: fits are deterministic for a seed, whoever runs the shards.
    pub random_state: u64,
    /// k-means|| oversampling: each round keeps about `oversampling × k` rows.
    pub oversampling: f64,
    /// k-means|| rounds.
    pub init_rounds: usize,
    /// Rows per shard (part of the plan: a different value gives a different, equally valid fit).
    pub shard_rows: usize,
}

impl Default for ShardedKMeans {
    fn default() -> Self {
        ShardedKMeans {
            n_clusters: 8,
            init: None,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            random_state: 0,
            oversampling: 2.0,
            init_rounds: 5,
            shard_rows: 65_536,
        }
    }
}

/// One Lloyd run's outcome in the centred space.
struct Run<T> {
    centres: Array2<T>,
    labels: Vec<u32>,
    inertia: f64,
    n_iter: usize,
}

/// A reply that is not the one its step gives: a worker of another version.
fn unexpected(reply: &ShardReply, step: &str) -> crate::Error {
    crate::Error::input(format!("a shard answered the {step} step with {reply:?}: mixed worker versions?"))
}

impl ShardedKMeans {
    /// k-means over shards with `n_clusters` clusters and the defaults otherwise.
    pub fn new(n_clusters: usize) -> Self {
        ShardedKMeans { n_clusters, ..Self::default() }
    }

    /// Checks the parameters on their own.
    ///
    /// # Errors
    /// [`crate::Error::InvalidParameter`] naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let init = self.init.clone().map_or(KMeansInit::KMeansPlusPlus, KMeansInit::Centres);
        check_common(self.n_clusters, &init, Some(self.n_init), self.max_iter, self.tol)?;
        if !(self.oversampling > 0.0 && self.oversampling.is_finite()) {
            return Err(crate::Error::parameter("oversampling", format!("must be > 0, got {}", self.oversampling)));
        }
        if self.shard_rows == 0 {
            return Err(crate::Error::parameter("shard_rows", "must be at least 1"));
        }
        Ok(())
    }

    /// The plan for `n × d` data.
    ///
    /// # Errors
    /// Bad parameters, or fewer rows than clusters.
    pub fn plan(&self, n: usize, d: usize) -> Result<ShardPlan> {
        self.validate()?;
        if n < self.n_clusters {
            return Err(crate::Error::input(format!(
                "X has {n} samples but n_clusters={} needs at least as many",
                self.n_clusters
            )));
        }
        if d == 0 {
            return Err(crate::Error::input("X has no features"));
        }
        Ok(ShardPlan { n, d, shard_rows: self.shard_rows })
    }

    /// Fits by running the plan's steps on `exec`; `progress` sees stage `"iteration"` after
    /// each Lloyd iteration, with `total = max_iter × n_init`.
    ///
    /// # Errors
    /// Bad parameters or data; the executor's failures.
    pub fn fit_with<T: Real, E: ShardExecutor<T>>(
        &self,
        plan: ShardPlan,
        exec: &mut E,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> std::result::Result<KMeansModel<T>, E::Error> {
        let ShardPlan { n, d, .. } = plan;
        let given = self.init.as_ref().map(|c| given_centres::<T>(c, d)).transpose()?;
        let all: Vec<usize> = (0..plan.shards()).collect();
        let mut sums = vec![0.0; d];
        for reply in exec.run(&ShardOp::Load, &all)? {
            let ShardReply::Load { sums: s } = &reply else { return Err(unexpected(&reply, "load").into()) };
            sums.iter_mut().zip(s).for_each(|(t, v)| *t += v);
        }
        let mean: Array1<T> = sums.iter().map(|s| T::from_f64_lossy(s / n as f64)).collect();
        let (mut s1, mut s2) = (vec![0.0; d], vec![0.0; d]);
        for reply in exec.run(&ShardOp::Centre { mean: mean.iter().map(|m| m.to_f64_exact()).collect() }, &all)? {
            let ShardReply::Centre { s1: a, s2: b } = &reply else { return Err(unexpected(&reply, "centre").into()) };
            s1.iter_mut().zip(a).for_each(|(t, v)| *t += v);
            s2.iter_mut().zip(b).for_each(|(t, v)| *t += v);
        }
        let var = (0..d).map(|q| s2[q] / n as f64 - (s1[q] / n as f64).powi(2)).sum::<f64>() / d as f64;
        let tol = if self.tol == 0.0 { 0.0 } else { self.tol * var };
        let mut rng = Pcg64Mcg::seed_from_u64(self.random_state);
        let mut fit = Fit { exec, plan, all, version: 0 };
        let mut best: Option<Run<T>> = None;
        let total = self.max_iter * self.n_init;
        for run in 0..self.n_init {
            let seed = rng.random::<u64>();
            let centres = match &given {
                Some(c) => c - &mean,
                None => fit.kmeans_parallel(self, seed)?,
            };
            let report = |i: usize| progress(Progress { done: run * self.max_iter + i, total, stage: "iteration" });
            let run = fit.lloyd(centres, self.max_iter, tol, &report)?;
            if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
                best = Some(run);
            }
        }
        let best = best.expect("n_init >= 1 was checked");
        Ok(KMeansModel {
            centres: best.centres + &mean,
            labels: best.labels.iter().map(|&l| i64::from(l)).collect(),
            inertia: best.inertia,
            n_iter: best.n_iter,
        })
    }
}

/// A fit in progress: the executor, the plan and the version counter of centre matrices.
struct Fit<'e, E> {
    exec: &'e mut E,
    plan: ShardPlan,
    all: Vec<usize>,
    version: u64,
}

impl<E> Fit<'_, E> {
    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }
}

/// Appends rows (f64 values of `T`) to a matrix of width `d`.
fn append<T: Real>(m: &mut Array2<T>, rows: &[f64]) {
    let d = m.ncols();
    let values: Vec<T> = rows.iter().map(|&v| T::from_f64_lossy(v)).collect();
    let extra = Array2::from_shape_vec((values.len() / d, d), values).expect("whole rows");
    m.append(ndarray::Axis(0), extra.view()).expect("same width");
}

impl<E> Fit<'_, E> {
    /// The centred rows with global `indices`, in that order.
    fn rows<T: Real>(&mut self, indices: &[usize]) -> std::result::Result<Array2<T>, E::Error>
    where
        E: ShardExecutor<T>,
    {
        let mut shards: Vec<usize> = indices.iter().map(|&i| i / self.plan.shard_rows).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut found: HashMap<usize, Vec<f64>> = HashMap::new();
        for reply in self.exec.run(&ShardOp::Rows { indices: indices.to_vec() }, &shards)? {
            let ShardReply::Rows { indices, rows } = &reply else { return Err(unexpected(&reply, "rows").into()) };
            let d = self.plan.d;
            found.extend(indices.iter().enumerate().map(|(j, &i)| (i, rows[j * d..(j + 1) * d].to_vec())));
        }
        let mut out = Array2::zeros((0, self.plan.d));
        for i in indices {
            let row = found.get(i).ok_or_else(|| crate::Error::input(format!("no shard returned row {i}")))?;
            append(&mut out, row);
        }
        Ok(out)
    }

    /// The total cost of the candidates, and with `counts` the rows nearest to each.
    fn cost<T: Real>(
        &mut self,
        candidates: &Versioned<Array2<T>>,
        batches: &[usize],
        counts: bool,
    ) -> std::result::Result<(f64, Vec<f64>), E::Error>
    where
        E: ShardExecutor<T>,
    {
        let op = ShardOp::InitCost { candidates: candidates.clone(), batches: batches.to_vec(), counts };
        let (mut cost, mut total) = (0.0, vec![0.0; if counts { candidates.centres.nrows() } else { 0 }]);
        for reply in self.exec.run(&op, &self.all.clone())? {
            let ShardReply::InitCost { cost: c, counts } = &reply else {
                return Err(unexpected(&reply, "init_cost").into());
            };
            cost += c;
            total.iter_mut().zip(counts).for_each(|(t, v)| *t += v);
        }
        Ok((cost, total))
    }

    /// k-means||: candidates by oversampling, reduced to k centres by weighted k-means++.
    fn kmeans_parallel<T: Real>(
        &mut self,
        params: &ShardedKMeans,
        seed: u64,
    ) -> std::result::Result<Array2<T>, E::Error>
    where
        E: ShardExecutor<T>,
    {
        let (n, k) = (self.plan.n, params.n_clusters);
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let first = rng.random_range(0..n);
        let mut candidates = Versioned { version: self.next_version(), centres: self.rows(&[first])? };
        let mut batches = vec![1];
        let (mut phi, _) = self.cost(&candidates, &batches, false)?;
        for round in 0..params.init_rounds as u64 {
            if phi <= 0.0 {
                break;
            }
            let op = ShardOp::InitSample {
                candidates: candidates.clone(),
                batches: batches.clone(),
                phi,
                factor: params.oversampling * k as f64,
                seed,
                round,
            };
            let mut picked = Vec::new();
            for reply in self.exec.run(&op, &self.all.clone())? {
                let ShardReply::InitSample { rows } = &reply else {
                    return Err(unexpected(&reply, "init_sample").into());
                };
                picked.extend_from_slice(rows);
            }
            if picked.is_empty() {
                continue;
            }
            append(&mut candidates.centres, &picked);
            batches.push(candidates.centres.nrows());
            phi = self.cost(&candidates, &batches, false)?.0;
        }
        if candidates.centres.nrows() < k {
            // Too few distinct rows were drawn (duplicates have no cost): top up uniformly.
            let extra: Vec<usize> = (candidates.centres.nrows()..k).map(|_| rng.random_range(0..n)).collect();
            let rows = self.rows(&extra)?;
            candidates.centres.append(ndarray::Axis(0), rows.view()).expect("same width");
            batches.push(candidates.centres.nrows());
        }
        let (_, counts) = self.cost(&candidates, &batches, true)?;
        let weights: Vec<T> = counts.iter().map(|&c| T::from_f64_lossy(c)).collect();
        let data = Data::new(candidates.centres.view(), Some(&weights));
        let chosen = plusplus(Kernel::detect(), &data, k, default_trials(k), &mut rng, &CancelToken::new())?;
        Ok(candidates.centres.select(ndarray::Axis(0), &chosen))
    }

    /// Lloyd's algorithm over the shards with scikit-learn's rules.
    fn lloyd<T: Real>(
        &mut self,
        mut centres: Array2<T>,
        max_iter: usize,
        tol: f64,
        report: &dyn Fn(usize),
    ) -> std::result::Result<Run<T>, E::Error>
    where
        E: ShardExecutor<T>,
    {
        let (k, d) = centres.dim();
        let all = self.all.clone();
        let mut previous: Option<Versioned<Array2<T>>> = None;
        let (mut strict, mut n_iter) = (false, 0);
        for i in 0..max_iter {
            n_iter = i + 1;
            let current = Versioned { version: self.next_version(), centres: centres.clone() };
            let op = ShardOp::Step { centres: current.clone(), labels_from: previous.take() };
            let (mut sums, mut weights, mut changed) = (vec![0.0; k * d], vec![0.0; k], 0);
            for reply in self.exec.run(&op, &all)? {
                let ShardReply::Step { sums: s, weights: w, changed: c } = &reply else {
                    return Err(unexpected(&reply, "step").into());
                };
                sums.iter_mut().zip(s).for_each(|(t, v)| *t += v);
                weights.iter_mut().zip(w).for_each(|(t, v)| *t += v);
                changed += c;
            }
            self.relocate_empty(&current, &mut sums, &mut weights)?;
            let new = average::<T>(&sums, &weights, d);
            let shift: f64 = new.iter().zip(&centres).map(|(a, b)| (a.to_f64_exact() - b.to_f64_exact()).powi(2)).sum();
            centres = new;
            previous = Some(current);
            report(n_iter);
            if changed == 0 {
                strict = true;
                break;
            }
            if shift <= tol {
                break;
            }
        }
        let labels_from = match previous {
            Some(p) if strict => p,
            _ => Versioned { version: self.next_version(), centres: centres.clone() },
        };
        let (mut inertia, mut labels) = (0.0, Vec::with_capacity(self.plan.n));
        for reply in self.exec.run(&ShardOp::Finish { centres: centres.clone(), labels_from }, &all)? {
            let ShardReply::Finish { inertia: i, labels: l } = &reply else {
                return Err(unexpected(&reply, "finish").into());
            };
            inertia += i;
            labels.extend_from_slice(l);
        }
        Ok(Run { centres, labels, inertia, n_iter })
    }

    /// Gives each empty cluster one of the rows farthest from their centre (scikit-learn's
    /// rule: farthest first, lower index first among equals), from every shard's farthest.
    fn relocate_empty<T: Real>(
        &mut self,
        current: &Versioned<Array2<T>>,
        sums: &mut [f64],
        weights: &mut [f64],
    ) -> std::result::Result<(), E::Error>
    where
        E: ShardExecutor<T>,
    {
        let empty: Vec<usize> = (0..weights.len()).filter(|&j| weights[j] == 0.0).collect();
        if empty.is_empty() {
            return Ok(());
        }
        let op = ShardOp::Farthest { labels_from: current.clone(), count: empty.len() };
        let mut points = Vec::new();
        for reply in self.exec.run(&op, &self.all.clone())? {
            let ShardReply::Farthest { points: p } = reply else { return Err(unexpected(&reply, "farthest").into()) };
            points.extend(p);
        }
        points.sort_by(|a, b| b.dist.total_cmp(&a.dist).then(a.index.cmp(&b.index)));
        if points.first().is_none_or(|p| p.dist == 0.0) {
            // More clusters than distinct points: relocating is pointless.
            return Ok(());
        }
        for (&new, p) in empty.iter().zip(&points) {
            move_point(sums, weights, p.row.iter().copied(), p.label as usize, new, 1.0);
        }
        Ok(())
    }
}
