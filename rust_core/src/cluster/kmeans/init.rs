//! Initial centres: greedy k-means++ (scikit-learn's `_kmeans_plusplus`) and random rows.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::kernel::Kernel;
use super::lloyd::Data;
use crate::cluster::validate_data;
use crate::{Error, Real, Result};

/// Rows per parallel chunk of a k-means++ step.
const CHUNK_ROWS: usize = 4096;
/// Rows per kernel call in a k-means++ step.
const SUB_ROWS: usize = 240;
/// A point is skipped when every candidate is at least `2·√(1 + SKIP_MARGIN)` times as far from
/// its current centre as the point is: its distance then cannot drop, with a margin that
/// dwarfs rounding, so skipping changes nothing but the time taken.
const SKIP_MARGIN: f64 = 1e-3;

/// Picks `n_clusters` rows of `x` as initial centres by greedy k-means++: each new centre is
/// the best (lowest resulting weighted inertia) of `n_local_trials` rows sampled with
/// probability proportional to `weight × squared distance to the nearest centre so far`
/// (default `2 + ⌊ln k⌋` trials, as scikit-learn's `kmeans_plusplus`).
///
/// Returns the centres and the indices of the rows they were taken from.
///
/// # Errors
/// [`Error::InvalidInput`] for unusable data (fewer rows than clusters, NaN, bad weights, all
/// weights zero), [`Error::InvalidParameter`] for `n_clusters == 0` or `n_local_trials == Some(0)`.
pub fn kmeans_plusplus<T: Real>(
    x: ArrayView2<'_, T>,
    sample_weight: Option<ArrayView1<'_, T>>,
    n_clusters: usize,
    n_local_trials: Option<usize>,
    seed: u64,
) -> Result<(Array2<T>, Vec<usize>)> {
    if n_clusters == 0 {
        return Err(Error::parameter("n_clusters", "must be at least 1"));
    }
    if n_local_trials == Some(0) {
        return Err(Error::parameter("n_local_trials", "must be at least 1"));
    }
    validate_data(x, sample_weight, n_clusters)?;
    let x = x.as_standard_layout();
    let w = sample_weight.map(|w| w.to_vec());
    let data = Data { x: x.as_slice().expect("standard layout"), d: x.ncols(), w: w.as_deref() };
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let trials = n_local_trials.unwrap_or_else(|| default_trials(n_clusters));
    let indices = plusplus(Kernel::detect(), &data, n_clusters, trials, &mut rng)?;
    Ok((x.select(Axis(0), &indices), indices))
}

/// scikit-learn's `2 + ⌊ln k⌋` local trials.
pub(crate) fn default_trials(k: usize) -> usize {
    2 + (k as f64).ln() as usize
}

/// A row index drawn with probability proportional to its weight.
fn weighted_row<T: Real>(data: &Data<'_, T>, total: f64, rng: &mut Pcg64Mcg) -> usize {
    let target = rng.random::<f64>() * total;
    let mut cum = 0.0;
    for i in 0..data.n() {
        cum += data.w.map_or(1.0, |w| w[i].to_f64_exact());
        if cum >= target && data.w.is_none_or(|w| w[i] > T::zero()) {
            return i;
        }
    }
    data.n() - 1
}

/// Total weight, which must be positive for weighted sampling.
fn total_weight<T: Real>(data: &Data<'_, T>) -> Result<f64> {
    let total = data.w.map_or(data.n() as f64, |w| w.iter().map(|v| v.to_f64_exact()).sum());
    if total > 0.0 {
        Ok(total)
    } else {
        Err(Error::input("sample_weight sums to zero: give some samples a positive weight"))
    }
}

/// Greedy k-means++ over contiguous data; returns the chosen row indices.
///
/// Each step computes the candidates' distances to all rows with the fused kernel in one pass
/// (the candidates are the packed "centres"), skipping rows that no candidate can bring closer
/// (triangle inequality against the row's current nearest centre, see [`SKIP_MARGIN`]). The
/// pass is memory-bound, so it reads each row of X at most once per step.
pub(crate) fn plusplus<T: Real>(
    kernel: Kernel,
    data: &Data<'_, T>,
    k: usize,
    trials: usize,
    rng: &mut Pcg64Mcg,
) -> Result<Vec<usize>> {
    let (n, d) = (data.n(), data.d);
    let total = total_weight(data)?;
    let zeros = vec![T::zero(); d];
    let norms: Vec<T> = (0..n).into_par_iter().map(|i| kernel.sq_dist(data.rows(i, 1), &zeros)).collect();
    let mut state = Nearest {
        closest: vec![T::infinity(); n],
        owner: vec![u32::MAX; n],
        chunk_pot: vec![0.0; n.div_ceil(CHUNK_ROWS)],
    };
    // Distances of the rows to the step's candidates, per chunk trial-major (`trials × rows`).
    let mut dists = vec![T::zero(); n * trials];
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    for c in 0..k {
        let candidates: Vec<usize> = if c == 0 {
            vec![weighted_row(data, total, rng)]
        } else {
            let pot: f64 = state.chunk_pot.iter().sum();
            (0..trials).map(|_| sample_by_potential(data, &state, rng.random::<f64>() * pot)).collect()
        };
        // Per chosen centre: the smallest squared distance to a candidate.
        let bound: Vec<T> = chosen
            .iter()
            .map(|&a| {
                candidates.iter().map(|&t| kernel.sq_dist(data.rows(a, 1), data.rows(t, 1))).fold(T::infinity(), T::min)
            })
            .collect();
        let step = Step { kernel, data, norms: &norms, bound: &bound, candidates: &candidates, trials };
        let pots: Vec<Vec<f64>> = dists
            .par_chunks_mut(CHUNK_ROWS * trials)
            .enumerate()
            .map(|(ci, dists)| step.potentials(&state, ci * CHUNK_ROWS, dists))
            .collect();
        let pot = |t: usize| pots.iter().map(|p| p[t]).sum::<f64>();
        let best = (0..candidates.len()).fold(0, |b, t| if pot(t) < pot(b) { t } else { b });
        chosen.push(candidates[best]);
        step.update(&mut state, &dists, best, c as u32);
    }
    Ok(chosen)
}

/// Each row's squared distance to its nearest chosen centre and that centre's position, with
/// the chunk sums of `weight × distance` that sampling walks.
struct Nearest<T> {
    closest: Vec<T>,
    owner: Vec<u32>,
    chunk_pot: Vec<f64>,
}

/// One k-means++ step: the candidates and what the pass over the rows needs.
struct Step<'a, T> {
    kernel: Kernel,
    data: &'a Data<'a, T>,
    norms: &'a [T],
    bound: &'a [T],
    candidates: &'a [usize],
    trials: usize,
}

impl<T: Real> Step<'_, T> {
    /// Whether no candidate can bring a row (at `closest` from its centre `owner`) closer.
    #[inline]
    fn skip(&self, closest: T, owner: u32) -> bool {
        owner != u32::MAX && self.bound[owner as usize] > T::from_f64_lossy(4.0 * (1.0 + SKIP_MARGIN)) * closest
    }

    fn weight(&self, i: usize) -> f64 {
        self.data.w.map_or(1.0, |w| w[i].to_f64_exact())
    }

    /// For the chunk of rows from `start`: writes each row's distance to each candidate into
    /// `dists` (rows that are skipped keep stale values) and returns per candidate the chunk's
    /// `Σ weight × min(closest, distance)`.
    fn potentials(&self, state: &Nearest<T>, start: usize, dists: &mut [T]) -> Vec<f64> {
        let (d, nt, rows) = (self.data.d, self.candidates.len(), dists.len() / self.trials);
        let cand_rows = Array2::from_shape_fn((nt, d), |(t, q)| self.data.x[self.candidates[t] * d + q]);
        let packed = self.kernel.pack(cand_rows.view());
        let stride = packed.stride();
        let (mut pot, mut skipped) = (vec![0.0; nt], 0.0);
        let (mut idx, mut gathered) = (vec![0; SUB_ROWS], vec![T::zero(); SUB_ROWS * d]);
        let mut out = vec![T::zero(); SUB_ROWS * stride];
        for s in (start..start + rows).step_by(SUB_ROWS) {
            let m = SUB_ROWS.min(start + rows - s);
            // Branch-free compaction: the skip pattern is as random as the data's order.
            let mut count = 0;
            for i in s..s + m {
                let skip = self.skip(state.closest[i], state.owner[i]);
                idx[count] = i;
                count += usize::from(!skip);
                skipped += if skip { self.weight(i) * state.closest[i].to_f64_exact() } else { 0.0 };
            }
            if count == 0 {
                continue;
            }
            let x = if count == m {
                self.data.rows(s, m)
            } else {
                for (g, &i) in idx[..count].iter().enumerate() {
                    gathered[g * d..(g + 1) * d].copy_from_slice(self.data.rows(i, 1));
                }
                &gathered[..count * d]
            };
            let out = &mut out[..count * stride];
            self.kernel.partial_dists(x, &packed, out);
            for (g, &i) in idx[..count].iter().enumerate() {
                let (w, closest) = (self.weight(i), state.closest[i]);
                for (t, pot) in pot.iter_mut().enumerate() {
                    let dt = (self.norms[i] + out[g * stride + t]).max(T::zero());
                    dists[t * rows + i - start] = dt;
                    *pot += w * dt.min(closest).to_f64_exact();
                }
            }
        }
        pot.iter_mut().for_each(|p| *p += skipped);
        pot
    }

    /// Moves the rows that candidate `best` (now centre `centre`) brings closer to it.
    fn update(&self, state: &mut Nearest<T>, dists: &[T], best: usize, centre: u32) {
        let Nearest { closest, owner, chunk_pot } = state;
        closest
            .par_chunks_mut(CHUNK_ROWS)
            .zip(owner.par_chunks_mut(CHUNK_ROWS))
            .zip(chunk_pot.par_iter_mut())
            .zip(dists.par_chunks(CHUNK_ROWS * self.trials))
            .enumerate()
            .for_each(|(ci, (((closest, owner), chunk_pot), dists))| {
                let start = ci * CHUNK_ROWS;
                let to_best = &dists[best * closest.len()..(best + 1) * closest.len()];
                let mut sum = 0.0;
                for (r, ((cl, ow), &dt)) in closest.iter_mut().zip(owner.iter_mut()).zip(to_best).enumerate() {
                    if !self.skip(*cl, *ow) && dt < *cl {
                        *cl = dt;
                        *ow = centre;
                    }
                    sum += self.weight(start + r) * cl.to_f64_exact();
                }
                *chunk_pot = sum;
            });
    }
}

/// The first row whose cumulative `weight × closest` reaches `target` (scikit-learn's
/// `searchsorted` on the cumulative sum), found chunk by chunk.
fn sample_by_potential<T: Real>(data: &Data<'_, T>, state: &Nearest<T>, mut target: f64) -> usize {
    let closest = &state.closest;
    for (ci, &p) in state.chunk_pot.iter().enumerate() {
        if target > p && ci + 1 < state.chunk_pot.len() {
            target -= p;
            continue;
        }
        let start = ci * CHUNK_ROWS;
        let end = (start + CHUNK_ROWS).min(closest.len());
        let mut cum = 0.0;
        for (i, cl) in closest.iter().enumerate().take(end).skip(start) {
            cum += data.w.map_or(1.0, |w| w[i].to_f64_exact()) * cl.to_f64_exact();
            if cum >= target {
                return i;
            }
        }
        return end - 1;
    }
    closest.len() - 1
}

/// `k` distinct rows drawn without replacement with probability proportional to their weight
/// (scikit-learn's `init="random"`).
pub(crate) fn random<T: Real>(data: &Data<'_, T>, k: usize, rng: &mut Pcg64Mcg) -> Result<Vec<usize>> {
    let n = data.n();
    match data.w {
        None => Ok(rand::seq::index::sample(rng, n, k).into_vec()),
        Some(w) => {
            let positive = w.iter().filter(|&&v| v > T::zero()).count();
            if positive < k {
                return Err(Error::input(format!(
                    "init=\"random\" needs at least n_clusters={k} samples of positive weight, got {positive}"
                )));
            }
            // Efraimidis–Spirakis: the k largest keys ln(u)/w are a weighted sample without replacement.
            let mut keys: Vec<(f64, usize)> = w
                .iter()
                .enumerate()
                .map(|(i, &wi)| {
                    let u: f64 = rng.random();
                    let key = if wi > T::zero() { u.ln() / wi.to_f64_exact() } else { f64::NEG_INFINITY };
                    (key, i)
                })
                .collect();
            keys.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            Ok(keys[..k].iter().map(|&(_, i)| i).collect())
        }
    }
}
