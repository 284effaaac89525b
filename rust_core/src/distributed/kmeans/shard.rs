//! One shard's resident state and the steps run on it. The same code runs in a worker and in
//! the local executor, so both give bit-identical replies.

use ndarray::{s, Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::op::{FarPoint, ShardOp, ShardReply, Versioned};
use crate::cluster::kmeans::{assign, inertia, label_sq_dists, pass, Data, Kernel, Then};
use crate::{Error, Real, Result};

/// Rows per parallel chunk of the column sums (fixed, so the sums do not depend on threads).
const SUM_CHUNK_ROWS: usize = 4096;

/// A shard of rows and what earlier steps left on it.
#[derive(Debug)]
pub(crate) struct ShardState<T> {
    shard: usize,
    start: usize,
    d: usize,
    x: Vec<T>,
    centred: bool,
    kernel: Kernel,
    /// k-means||: squared distance of each row to its nearest candidate, and that candidate.
    closest: Vec<T>,
    owner: Vec<u32>,
    /// The candidate version and the number of its batches `closest` reflects.
    applied: Option<(u64, usize)>,
    labels: Vec<u32>,
    /// The centre version `labels` were assigned from (`None`: not assigned).
    labels_of: Option<u64>,
}

impl<T: Real> ShardState<T> {
    /// Shard `shard`, whose first row is global row `start`: `x` holds its rows, `d` wide.
    pub(crate) fn new(shard: usize, start: usize, d: usize, x: Vec<T>) -> Self {
        let rows = x.len() / d;
        ShardState {
            shard,
            start,
            d,
            x,
            centred: false,
            kernel: Kernel::detect(),
            closest: Vec::new(),
            owner: Vec::new(),
            applied: None,
            labels: vec![u32::MAX; rows],
            labels_of: None,
        }
    }

    fn rows(&self) -> usize {
        self.x.len() / self.d
    }

    /// Subtracts the global mean (values of `T`, widened exactly) once.
    pub(crate) fn centre(&mut self, mean: &[f64]) -> Result<()> {
        if mean.len() != self.d {
            return Err(Error::input(format!("the mean has {} values, the shard {} columns", mean.len(), self.d)));
        }
        if !self.centred {
            let mean: Vec<T> = mean.iter().map(|&m| T::from_f64_lossy(m)).collect();
            let d = self.d;
            self.x.par_chunks_mut(d).for_each(|row| row.iter_mut().zip(&mean).for_each(|(v, &m)| *v -= m));
            self.centred = true;
        }
        Ok(())
    }

    /// Runs one step.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for non-finite data or a request that does not fit the shard.
    pub(crate) fn apply(&mut self, op: &ShardOp<Array2<T>>) -> Result<ShardReply> {
        Ok(match op {
            ShardOp::Load => {
                if let Some(i) = crate::cluster::first_non_finite_row(&self.x, self.d) {
                    return Err(crate::cluster::non_finite(self.start + i));
                }
                ShardReply::Load { sums: self.column_sums(|v| v) }
            }
            ShardOp::Centre { mean } => {
                self.centre(mean)?;
                ShardReply::Centre { s1: self.column_sums(|v| v), s2: self.column_sums(|v| v * v) }
            }
            ShardOp::Rows { indices } => {
                let range = self.start..self.start + self.rows();
                let mine: Vec<usize> = indices.iter().copied().filter(|i| range.contains(i)).collect();
                let rows = mine.iter().flat_map(|&i| self.row(i - self.start)).collect();
                ShardReply::Rows { indices: mine, rows }
            }
            ShardOp::InitCost { candidates, batches, counts } => {
                self.apply_candidates(candidates, batches)?;
                let cost = self.closest.iter().map(|v| v.to_f64_exact()).sum();
                let mut per = vec![0.0; if *counts { candidates.centres.nrows() } else { 0 }];
                if *counts {
                    self.owner.iter().for_each(|&o| per[o as usize] += 1.0);
                }
                ShardReply::InitCost { cost, counts: per }
            }
            ShardOp::InitSample { candidates, batches, phi, factor, seed, round } => {
                self.apply_candidates(candidates, batches)?;
                let mut rng = Pcg64Mcg::seed_from_u64(stream_seed(*seed, self.shard, *round));
                let mut rows = Vec::new();
                for (i, &c) in self.closest.iter().enumerate() {
                    // u < ℓ d² / φ without the division (φ > 0 here).
                    if rng.random::<f64>() * phi < factor * c.to_f64_exact() {
                        rows.extend(self.row(i));
                    }
                }
                ShardReply::InitSample { rows }
            }
            ShardOp::Step { centres, labels_from } => {
                self.check(&centres.centres)?;
                self.assign_from(labels_from.as_ref())?;
                let data = Data { x: &self.x, d: self.d, w: None };
                let p = pass(self.kernel, &data, centres.centres.view(), &mut self.labels, Then::Update);
                self.labels_of = Some(centres.version);
                ShardReply::Step { sums: p.sums, weights: p.weights, changed: p.changed }
            }
            ShardOp::Farthest { labels_from, count } => {
                self.assign_from(Some(labels_from))?;
                let data = Data { x: &self.x, d: self.d, w: None };
                let dists = label_sq_dists(self.kernel, &data, &labels_from.centres, &self.labels);
                let farther = |a: &usize, b: &usize| {
                    dists[*b].partial_cmp(&dists[*a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(b))
                };
                let mut order: Vec<usize> = (0..dists.len()).collect();
                order.sort_unstable_by(farther);
                order.truncate(*count);
                let points = order
                    .into_iter()
                    .map(|i| FarPoint {
                        dist: dists[i].to_f64_exact(),
                        index: self.start + i,
                        label: self.labels[i],
                        row: self.row(i).collect(),
                    })
                    .collect();
                ShardReply::Farthest { points }
            }
            ShardOp::Finish { centres, labels_from } => {
                self.check(centres)?;
                self.assign_from(Some(labels_from))?;
                let data = Data { x: &self.x, d: self.d, w: None };
                let inertia = inertia(self.kernel, &data, &centres.as_standard_layout().into_owned(), &self.labels);
                ShardReply::Finish { inertia, labels: self.labels.clone() }
            }
        })
    }

    fn row(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        self.x[i * self.d..(i + 1) * self.d].iter().map(|v| v.to_f64_exact())
    }

    /// `Σ f(x)` per column in f64, in a fixed order.
    fn column_sums(&self, f: impl Fn(f64) -> f64 + Sync) -> Vec<f64> {
        let d = self.d;
        let partials: Vec<Vec<f64>> = self
            .x
            .par_chunks(SUM_CHUNK_ROWS * d)
            .map(|chunk| {
                let mut s = vec![0.0; d];
                for row in chunk.chunks(d) {
                    s.iter_mut().zip(row).for_each(|(s, v)| *s += f(v.to_f64_exact()));
                }
                s
            })
            .collect();
        (0..d).map(|q| partials.iter().map(|p| p[q]).sum()).collect()
    }

    /// Refuses centres of another width (a malformed request must not panic a worker).
    fn check(&self, centres: &Array2<T>) -> Result<()> {
        if centres.ncols() != self.d || centres.nrows() == 0 {
            return Err(Error::input(format!(
                "centres of shape {:?} do not fit a shard with {} columns",
                centres.dim(),
                self.d
            )));
        }
        Ok(())
    }

    /// Makes `labels` those assigned from `from` (reset when `None`), unless they already are.
    fn assign_from(&mut self, from: Option<&Versioned<Array2<T>>>) -> Result<()> {
        match from {
            None => {
                self.labels.fill(u32::MAX);
                self.labels_of = None;
            }
            Some(v) if self.labels_of != Some(v.version) => {
                self.check(&v.centres)?;
                let data = Data { x: &self.x, d: self.d, w: None };
                self.labels = assign(self.kernel, &data, &v.centres.as_standard_layout().into_owned());
                self.labels_of = Some(v.version);
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Brings `closest` and `owner` up to date with every batch of candidates, in batch order,
    /// so a shard rebuilt by another worker computes exactly what the lost one had.
    fn apply_candidates(&mut self, candidates: &Versioned<Array2<T>>, batches: &[usize]) -> Result<()> {
        let m = candidates.centres.nrows();
        if batches.windows(2).any(|w| w[0] > w[1]) || batches.last() != Some(&m) {
            return Err(Error::input(format!("candidate batches {batches:?} do not end at the {m} candidates")));
        }
        self.check(&candidates.centres)?;
        let done = match self.applied {
            Some((version, done)) if version == candidates.version && done <= batches.len() => done,
            _ => {
                self.closest = vec![T::infinity(); self.rows()];
                self.owner = vec![u32::MAX; self.rows()];
                0
            }
        };
        let data = Data { x: &self.x, d: self.d, w: None };
        for b in done..batches.len() {
            let lo = if b == 0 { 0 } else { batches[b - 1] };
            let block: Array2<T> = candidates.centres.slice(s![lo..batches[b], ..]).as_standard_layout().into_owned();
            if block.nrows() == 0 {
                continue;
            }
            let nearest = assign(self.kernel, &data, &block);
            let dists = label_sq_dists(self.kernel, &data, &block, &nearest);
            for (i, (&dist, &j)) in dists.iter().zip(&nearest).enumerate() {
                if dist < self.closest[i] {
                    self.closest[i] = dist;
                    self.owner[i] = (lo + j as usize) as u32;
                }
            }
        }
        self.applied = Some((candidates.version, batches.len()));
        Ok(())
    }
}

/// The seed of shard `shard`'s generator in k-means|| round `round` (SplitMix64's finaliser
/// over the three), so every shard draws its own stream whoever runs it.
fn stream_seed(seed: u64, shard: usize, round: u64) -> u64 {
    let mut z = seed ^ (shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The rows of a view as a shard's owned values.
pub(crate) fn owned_rows<T: Real>(x: ArrayView2<'_, T>, range: std::ops::Range<usize>) -> Vec<T> {
    x.slice(s![range, ..]).iter().copied().collect()
}
