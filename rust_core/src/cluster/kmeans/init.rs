//! Initial centres: greedy k-means++ (scikit-learn's `_kmeans_plusplus`) and random rows.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::kernel::{Kernel, Packed};
use super::lloyd::Data;
use super::rows_of;
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
    let data = Data::new(x.view(), w.as_deref());
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
        cum += data.weight(i);
        if cum >= target && data.w.is_none_or(|w| w[i] > T::zero()) {
            return i;
        }
    }
    data.n() - 1
}

/// Total weight, which must be positive for weighted sampling.
pub(crate) fn total_weight<T: Real>(data: &Data<'_, T>) -> Result<f64> {
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
    let mut pass = Pass { dists: vec![T::zero(); n * trials], active: vec![0; n], chunks: Vec::new() };
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
        let packed = kernel.pack(rows_of(data, &candidates).view());
        let step = Step {
            kernel,
            data,
            norms: &norms,
            bound: &bound,
            candidates: &candidates,
            packed,
            skip_factor: T::from_f64_lossy(4.0 * (1.0 + SKIP_MARGIN)),
        };
        pass.chunks = pass
            .dists
            .par_chunks_mut(CHUNK_ROWS * trials)
            .zip(pass.active.par_chunks_mut(CHUNK_ROWS))
            .enumerate()
            .map(|(ci, (dists, active))| step.potentials(&state, ci * CHUNK_ROWS, dists, active))
            .collect();
        let pot = |t: usize| pass.chunks.iter().map(|(p, _)| p[t]).sum::<f64>();
        let best = (0..candidates.len()).fold(0, |b, t| if pot(t) < pot(b) { t } else { b });
        chosen.push(candidates[best]);
        update(&mut state, &pass, best, c as u32);
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
    /// The candidates packed for the kernel.
    packed: Packed<T>,
    /// `4 (1 + SKIP_MARGIN)` as `T`.
    skip_factor: T,
}

impl<T: Real> Step<'_, T> {
    /// Whether no candidate can bring a row (at `closest` from its centre `owner`) closer.
    #[inline]
    fn skip(&self, closest: T, owner: u32) -> bool {
        // No owner yet (u32::MAX) means no bound.
        self.bound.get(owner as usize).is_some_and(|&b| b > self.skip_factor * closest)
    }

    /// For the chunk of rows from `start`: lists in `active` the rows that a candidate might
    /// bring closer (returning how many), writes their distance to each candidate into `dists`
    /// and returns per candidate the chunk's `Σ weight × min(closest, distance)`.
    fn potentials(&self, state: &Nearest<T>, start: usize, dists: &mut [T], active: &mut [u32]) -> (Vec<f64>, usize) {
        let (nt, rows, stride) = (self.candidates.len(), active.len(), self.packed.stride());
        let (mut pot, mut skipped, mut listed) = (vec![0.0; nt], 0.0, 0);
        let mut out = vec![T::zero(); SUB_ROWS * stride];
        for s in (start..start + rows).step_by(SUB_ROWS) {
            let m = SUB_ROWS.min(start + rows - s);
            // Branch-free compaction: the skip pattern is as random as the data's order.
            let first = listed;
            let rows_state = state.closest[s..s + m].iter().zip(&state.owner[s..s + m]);
            for (i, (&closest, &owner)) in (s..s + m).zip(rows_state) {
                let skip = self.skip(closest, owner);
                active[listed] = i as u32;
                listed += usize::from(!skip);
                skipped += if skip { self.data.weight(i) * closest.to_f64_exact() } else { 0.0 };
            }
            let (select, out) = (&active[first..listed], &mut out[..(listed - first) * stride]);
            self.kernel.partial_dists(self.data.x, select, &self.packed, out);
            for (t, pot) in pot.iter_mut().enumerate() {
                let to_t = &mut dists[t * rows..(t + 1) * rows];
                let mut sum = 0.0;
                for (&i, out) in select.iter().zip(out.chunks_exact(stride)) {
                    let i = i as usize;
                    let dt = (self.norms[i] + out[t]).max(T::zero());
                    to_t[i - start] = dt;
                    sum += self.data.weight(i) * dt.min(state.closest[i]).to_f64_exact();
                }
                *pot += sum;
            }
        }
        pot.iter_mut().for_each(|p| *p += skipped);
        (pot, listed)
    }
}

/// Moves the active rows of every chunk that candidate `best` (now centre `centre`) brings
/// closer to it; the chunk sums of `weight × closest` are the candidate's chunk potentials.
fn update<T: Real>(state: &mut Nearest<T>, pass: &Pass<T>, best: usize, centre: u32) {
    let Nearest { closest, owner, chunk_pot } = state;
    for (pot, (p, _)) in chunk_pot.iter_mut().zip(&pass.chunks) {
        *pot = p[best];
    }
    let rows = closest.len();
    let trials = pass.dists.len() / rows;
    closest
        .par_chunks_mut(CHUNK_ROWS)
        .zip(owner.par_chunks_mut(CHUNK_ROWS))
        .zip(pass.dists.par_chunks(CHUNK_ROWS * trials))
        .zip(pass.active.par_chunks(CHUNK_ROWS))
        .zip(&pass.chunks)
        .enumerate()
        .for_each(|(ci, ((((closest, owner), dists), active), (_, listed)))| {
            let start = ci * CHUNK_ROWS;
            let to_best = &dists[best * closest.len()..(best + 1) * closest.len()];
            for &i in &active[..*listed] {
                let r = i as usize - start;
                if to_best[r] < closest[r] {
                    closest[r] = to_best[r];
                    owner[r] = centre;
                }
            }
        });
}

/// What a step's pass over the rows leaves for [`update`].
struct Pass<T> {
    /// Distances of the rows to the step's candidates, per chunk trial-major (`trials × rows`).
    dists: Vec<T>,
    /// Per chunk, from the chunk's first row: the rows that were not skipped.
    active: Vec<u32>,
    /// Per chunk: the candidates' potentials and the number of active rows.
    chunks: Vec<(Vec<f64>, usize)>,
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
            cum += data.weight(i) * cl.to_f64_exact();
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
