//! Initial centres: greedy k-means++ (scikit-learn's `_kmeans_plusplus`) and random rows.

use std::sync::Mutex;

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::compact::{Compact, MARGIN};
use super::kernel::{Kernel, Listed, Packed, Probe, SCREEN_ROWS};
use super::lloyd::{Data, DataView};
use super::rows_of;
use crate::cluster::validate_data;
use crate::{CancelToken, Error, Real, Result};

/// Listed rows per kernel call in a k-means++ step: a multiple of every micro-kernel height.
/// Small, so that the rows the gather prefetches arrive while the kernel computes a block.
const SUB_ROWS: usize = 48;
/// Rows per parallel chunk of a k-means++ step (and per chunk potential that sampling walks):
/// whole blocks of the 8-bit copy.
const CHUNK_ROWS: usize = 4032;
const _: () = assert!(CHUNK_ROWS.is_multiple_of(SCREEN_ROWS));
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
    let indices = plusplus(Kernel::detect(), &data, n_clusters, trials, &mut rng, &CancelToken::new())?;
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
/// The state is, per row, its squared norm, its squared distance to the nearest centre so far
/// (with that centre's position), and its distances to the last step's candidates. Each step is
/// one parallel pass that first applies the last step's winner to each row from the stored
/// distances, then reads each row it must compute once (gathered, shifted if the data is) and
/// computes its distances to all candidates and the candidates' potentials with the kernel. Rows
/// that no candidate can bring closer are skipped (triangle inequality against the row's
/// nearest centre, see [`SKIP_MARGIN`]), which changes nothing but the time taken. Sampling walks
/// the chunk potentials, then the rows of one chunk. `cancel` is checked before each new centre.
pub(crate) fn plusplus<'a, T: Real>(
    kernel: Kernel,
    data: impl Into<DataView<'a, T>>,
    k: usize,
    trials: usize,
    rng: &mut Pcg64Mcg,
    cancel: &CancelToken,
) -> Result<Vec<usize>> {
    // The 8-bit copy pays where its screen runs on vector integer dot products (docs/kmeans.md);
    // `plusplus_with` takes either way, and the tests check both.
    plusplus_with(kernel, data.into(), k, trials, rng, cancel, kernel.screens_fast())
}

/// [`plusplus`], with or without the 8-bit copy of the data (the same rows either way).
fn plusplus_with<T: Real>(
    kernel: Kernel,
    data: DataView<'_, T>,
    k: usize,
    trials: usize,
    rng: &mut Pcg64Mcg,
    cancel: &CancelToken,
    use_compact: bool,
) -> Result<Vec<usize>> {
    let total = total_weight(&data)?;
    let mut chosen = vec![weighted_row(&data, total, rng)];
    if k == 1 {
        return Ok(chosen);
    }
    // One read of X serves the copy and the row norms.
    let (compact, norms) = match use_compact {
        true => {
            let (compact, norms) = Compact::new(kernel, &data);
            (Some(compact), norms)
        }
        false => (None, row_norms(kernel, &data)),
    };
    let mut state = Nearest::new(kernel, &data, trials, norms);
    let mut centres = rows_of(data, &chosen);
    // The first centre is a pass's only candidate, applied to every row (no row has a centre
    // to compare with yet, so the copy cannot exclude any).
    Step::new(kernel, data, None, centres.view(), centres.view()).run(&mut state);
    state.won(0, 0);
    while chosen.len() < k {
        cancel.check()?;
        let pot: f64 = state.chunk_pot.iter().sum();
        let candidates: Vec<usize> = (0..trials).map(|_| state.sample(&data, rng.random::<f64>() * pot)).collect();
        let rows = rows_of(data, &candidates);
        Step::new(kernel, data, compact.as_ref(), centres.view(), rows.view()).run(&mut state);
        let pot = |t: usize| state.pots.chunks_exact(state.stride).map(|p| p[t]).sum::<f64>();
        let best = (0..candidates.len()).fold(0, |b, t| if pot(t) < pot(b) { t } else { b });
        state.won(best, chosen.len() as u32);
        chosen.push(candidates[best]);
        centres.push_row(rows.row(best)).expect("same width");
    }
    Ok(chosen)
}

/// `‖x_i‖²` of every row (as the data reads it), by the kernel's `sq_dist` to zero.
pub(super) fn row_norms<T: Real>(kernel: Kernel, data: &DataView<'_, T>) -> Vec<T> {
    let d = data.d;
    let mut norms = vec![T::zero(); data.n()];
    norms.par_chunks_mut(SUB_ROWS).enumerate().for_each_init(
        || (vec![T::zero(); SUB_ROWS * d], vec![T::zero(); d]),
        |(buf, zeros), (bi, norms)| {
            let rows = data.block(kernel, bi * SUB_ROWS, norms.len(), buf);
            for (norm, row) in norms.iter_mut().zip(rows.chunks_exact(d)) {
                *norm = kernel.sq_dist(row, zeros);
            }
        },
    );
    norms
}

/// The state of k-means++ between passes. Per row: squared norm, squared distance to the
/// nearest chosen centre and that centre's position. Per chunk: the rows the last pass computed
/// (in order, positions in the chunk) and their distances to that pass's candidates (`stride`
/// slots a row), each candidate's potential in the last pass (`stride` slots) and the potential
/// after its winner. Buffers of the passes, one per thread, are made once.
struct Nearest<T> {
    norms: Vec<T>,
    closest: Vec<T>,
    owner: Vec<u32>,
    listed: Vec<u32>,
    listed_len: Vec<usize>,
    dists: Vec<T>,
    stride: usize,
    pots: Vec<f64>,
    chunk_pot: Vec<f64>,
    /// The last pass's winner (candidate, centre position), not yet applied to `closest`.
    pending: Option<(usize, u32)>,
    scratch: Vec<Mutex<Buffers<T>>>,
}

/// The buffers of one thread in a pass.
struct Buffers<T> {
    /// Gathered rows.
    rows: Vec<T>,
    /// Per row of a chunk: the bias of the screen.
    bias: Vec<f32>,
    /// Per block of a chunk: the rows the screen keeps.
    keep: Vec<u16>,
}

impl<T: Real> Nearest<T> {
    /// The state before the first pass, given the squared norms of the rows (see [`row_norms`]).
    fn new(kernel: Kernel, data: &DataView<'_, T>, trials: usize, norms: Vec<T>) -> Self {
        let (n, d) = (data.n(), data.d);
        let stride = kernel.trials_stride::<T>(trials);
        let chunks = n.div_ceil(CHUNK_ROWS);
        let threads = rayon::current_num_threads();
        Nearest {
            norms,
            closest: vec![T::infinity(); n],
            owner: vec![u32::MAX; n],
            listed: vec![0; n],
            listed_len: vec![0; chunks],
            dists: vec![T::zero(); n * stride],
            stride,
            pots: vec![0.0; chunks * stride],
            chunk_pot: vec![0.0; chunks],
            pending: None,
            scratch: (0..threads)
                .map(|_| {
                    Mutex::new(Buffers {
                        rows: vec![T::zero(); SUB_ROWS * d],
                        bias: vec![0.0; CHUNK_ROWS],
                        keep: vec![0; CHUNK_ROWS / SCREEN_ROWS],
                    })
                })
                .collect(),
        }
    }

    /// Makes candidate `best` of the last pass the centre at position `centre`; the rows take
    /// their stored distance to it in the next pass (or when sampled).
    fn won(&mut self, best: usize, centre: u32) {
        self.pending = Some((best, centre));
        let stride = self.stride;
        self.chunk_pot.iter_mut().zip(self.pots.chunks_exact(stride)).for_each(|(c, p)| *c = p[best]);
    }

    /// The first row whose cumulative `weight × closest` reaches `target` (scikit-learn's
    /// `searchsorted` on the cumulative sum), the pending winner included.
    fn sample(&self, data: &DataView<'_, T>, mut target: f64) -> usize {
        let last = self.chunk_pot.len() - 1;
        let mut ci = 0;
        while ci < last && target > self.chunk_pot[ci] {
            target -= self.chunk_pot[ci];
            ci += 1;
        }
        let (start, end) = (ci * CHUNK_ROWS, (ci * CHUNK_ROWS + CHUNK_ROWS).min(self.closest.len()));
        let listed = &self.listed[start..start + self.listed_len[ci]];
        let dists = &self.dists[start * self.stride..];
        let (mut cum, mut j) = (0.0, 0);
        for i in start..end {
            let mut closest = self.closest[i];
            if let Some((best, _)) = self.pending.filter(|_| listed.get(j) == Some(&((i - start) as u32))) {
                closest = closer(closest, dists[j * self.stride + best]);
                j += 1;
            }
            cum += data.weight(i) * closest.to_f64_exact();
            if cum >= target {
                return i;
            }
        }
        end - 1
    }
}

/// `d` if it is below `closest`, else `closest`.
#[inline]
fn closer<T: Real>(closest: T, d: T) -> T {
    if d < closest {
        d
    } else {
        closest
    }
}

/// One pass of k-means++ over the candidates.
struct Step<'a, T> {
    kernel: Kernel,
    data: DataView<'a, T>,
    /// The 8-bit copy of the data, if the fit keeps one, and the candidates for its screen.
    screen: Option<(&'a Compact, Probe)>,
    packed: Packed<T>,
    /// The largest squared norm of a candidate.
    cand_norm: f32,
    /// The relative rounding of the kernel's distances, with a wide margin: `16 (d + 8) ε`.
    rounding: f32,
    /// Per chosen centre: the smallest squared distance to a candidate.
    bound: Vec<T>,
    /// `4 (1 + SKIP_MARGIN)` as `T`.
    skip_factor: T,
}

/// The rows of one chunk, as a pass sees and updates them.
struct Chunk<'c, T> {
    start: usize,
    norms: &'c [T],
    closest: &'c mut [T],
    owner: &'c mut [u32],
    listed: &'c mut [u32],
    listed_len: &'c mut usize,
    dists: &'c mut [T],
    pots: &'c mut [f64],
}

impl<'a, T: Real> Step<'a, T> {
    /// A pass for the `candidates` (rows as the data reads them), given the `chosen` centres.
    fn new(
        kernel: Kernel,
        data: DataView<'a, T>,
        compact: Option<&'a Compact>,
        chosen: ArrayView2<'_, T>,
        candidates: ArrayView2<'_, T>,
    ) -> Self {
        let row = |v: ArrayView1<'_, T>| v.to_slice().expect("standard layout").to_vec();
        let rows: Vec<Vec<T>> = candidates.outer_iter().map(row).collect();
        let bound = chosen
            .outer_iter()
            .map(|a| {
                let a = a.to_slice().expect("standard layout");
                rows.iter().map(|t| kernel.sq_dist(a, t)).fold(T::infinity(), T::min)
            })
            .collect();
        let zeros = vec![T::zero(); data.d];
        let cand_norm = rows.iter().map(|t| kernel.sq_dist(t, &zeros).to_f64_exact()).fold(0.0, f64::max);
        Step {
            kernel,
            data,
            screen: compact.map(|c| (c, c.probe(candidates))),
            packed: kernel.pack_trials(candidates),
            cand_norm: cand_norm as f32,
            rounding: (16.0 * (data.d as f64 + 8.0) * T::epsilon().to_f64_exact()) as f32,
            bound,
            skip_factor: T::from_f64_lossy(4.0 * (1.0 + SKIP_MARGIN)),
        }
    }

    /// Whether no candidate can bring a row (at `closest` from its centre `owner`) closer.
    #[inline]
    fn skip(&self, closest: T, owner: u32) -> bool {
        // No owner yet (u32::MAX) means no bound.
        self.bound.get(owner as usize).is_some_and(|&b| b > self.skip_factor * closest)
    }

    /// Runs the pass: applies the pending winner, stores each computed row's distances and,
    /// per chunk, each candidate's potential (`Σ weight × min(closest, distance)`).
    fn run(&self, state: &mut Nearest<T>) {
        let stride = state.stride;
        let Nearest { norms, closest, owner, listed, listed_len, dists, pots, pending, scratch, .. } = state;
        let (norms, pending, scratch): (&[T], _, &[Mutex<Buffers<T>>]) = (norms, *pending, scratch);
        closest
            .par_chunks_mut(CHUNK_ROWS)
            .zip(owner.par_chunks_mut(CHUNK_ROWS))
            .zip(listed.par_chunks_mut(CHUNK_ROWS))
            .zip(listed_len.par_iter_mut())
            .zip(dists.par_chunks_mut(CHUNK_ROWS * stride))
            .zip(pots.par_chunks_mut(stride))
            .enumerate()
            .for_each(|(ci, (((((closest, owner), listed), listed_len), dists), pots))| {
                let start = ci * CHUNK_ROWS;
                let norms = &norms[start..start + closest.len()];
                let mut chunk = Chunk { start, norms, closest, owner, listed, listed_len, dists, pots };
                // Each thread has its own buffer; the pass makes no nested parallel calls, so the
                // lock is never contended.
                let slot = rayon::current_thread_index().unwrap_or(0) % scratch.len();
                let mut buffers = scratch[slot].lock().expect("a pass never panics holding its buffer");
                self.chunk(&mut buffers, &mut chunk, pending, stride);
            });
    }

    /// [`Step::run`] on one chunk of rows: applies the pending winner to the rows the last pass
    /// computed, lists the rows this pass must compute, then gathers and computes them in blocks
    /// (the gather of one block prefetching the next).
    fn chunk(&self, buffers: &mut Buffers<T>, chunk: &mut Chunk<'_, T>, pending: Option<(usize, u32)>, stride: usize) {
        if let Some((best, centre)) = pending {
            let last = &chunk.listed[..*chunk.listed_len];
            for (&r, dists) in last.iter().zip(chunk.dists.chunks_exact(stride)) {
                // Selects, not branches: whether the winner comes closer is as random as the data.
                let (r, dist) = (r as usize, dists[best]);
                let nearer = dist < chunk.closest[r];
                chunk.owner[r] = if nearer { centre } else { chunk.owner[r] };
                chunk.closest[r] = closer(chunk.closest[r], dist);
            }
        }
        let weights = self.data.w.map(|w| &w[chunk.start..chunk.start + chunk.norms.len()]);
        let (len, skipped) = match &self.screen {
            Some((compact, probe)) => self.screened(compact, probe, buffers, chunk, weights),
            None => self.unscreened(chunk, weights),
        };
        *chunk.listed_len = len;
        chunk.pots.fill(0.0);
        let listed = &chunk.listed[..len];
        for (b, rows) in listed.chunks(SUB_ROWS).enumerate() {
            let then = &listed[b * SUB_ROWS + rows.len()..];
            let x = &mut buffers.rows[..rows.len() * self.data.d];
            self.data.gather(self.kernel, chunk.start, rows, then, x);
            let rows = Listed { rows, norms: chunk.norms, closest: chunk.closest, weights };
            let dists = &mut chunk.dists[b * SUB_ROWS * stride..][..rows.rows.len() * stride];
            self.kernel.trials(x, &self.packed, &rows, stride, dists, chunk.pots);
        }
        chunk.pots.iter_mut().for_each(|p| *p += skipped);
    }

    /// Lists the rows of a chunk that the triangle test keeps; returns how many and the weighted
    /// distance of the others.
    fn unscreened(&self, chunk: &mut Chunk<'_, T>, weights: Option<&[T]>) -> (usize, f64) {
        let (mut skipped, mut len) = (0.0, 0);
        for r in 0..chunk.norms.len() {
            let keep = !self.skip(chunk.closest[r], chunk.owner[r]);
            // Branch-free compaction: which rows are kept is as random as the data's order.
            chunk.listed[len] = r as u32;
            len += usize::from(keep);
            let weighted = weights.map_or(1.0, |w| w[r].to_f64_exact()) * chunk.closest[r].to_f64_exact();
            skipped += if keep { 0.0 } else { weighted };
        }
        (len, skipped)
    }

    /// Lists the rows of a chunk that the 8-bit copy cannot show that no candidate brings
    /// closer, before any of X is read; returns how many and the weighted distance of the others.
    ///
    /// A row's distance to a candidate cannot fall below `closest` when `‖x − t‖² ≥ τ =
    /// closest (1 + SKIP_MARGIN) + r`, `r` bounding the kernel's rounding; since `‖x − t‖ ≥
    /// ‖x̂ − t‖ − e`, it is enough that `‖x̂ − t‖² ≥ (e + √τ)²`, which the screen tests from the
    /// copy with the bias `‖x̂‖² − (e + √τ)²` (less margins for its `f32` rounding). The
    /// triangle test is left out: the rows it skips are far from every candidate, which the
    /// screen shows too, and without its look-up the per-row work is arithmetic that vectorises.
    fn screened(
        &self,
        compact: &Compact,
        probe: &Probe,
        buffers: &mut Buffers<T>,
        chunk: &mut Chunk<'_, T>,
        weights: Option<&[T]>,
    ) -> (usize, f64) {
        let (start, n) = (chunk.start, chunk.norms.len());
        let blocks = n.div_ceil(SCREEN_ROWS);
        let rows = start..start + blocks * SCREEN_ROWS;
        let bias = &mut buffers.bias[..blocks * SCREEN_ROWS];
        let (widen, cand) = ((1.0 + SKIP_MARGIN) as f32, self.rounding * self.cand_norm);
        let per_row =
            chunk.closest.iter().zip(chunk.norms).zip(&compact.err[rows.clone()]).zip(&compact.norms[rows.clone()]);
        for (bias, (((&closest, &norm), &err), &norm_back)) in bias.iter_mut().zip(per_row) {
            let tau = closest.to_f64_exact() as f32 * widen + (self.rounding * norm.to_f64_exact() as f32 + cand);
            let reach = err + tau.sqrt();
            *bias = norm_back * (1.0 - MARGIN) - reach * reach * (1.0 + MARGIN);
        }
        bias[n..].fill(f32::INFINITY);
        let keep = &mut buffers.keep[..blocks];
        self.kernel.screen(compact.codes(start, blocks), probe, bias, &compact.spread[rows], keep);
        let weighted = |r: usize| weights.map_or(1.0, |w| w[r].to_f64_exact()) * chunk.closest[r].to_f64_exact();
        // The weighted distance of every row, a sum per lane of a block so that the additions do
        // not wait on each other, less that of the rows kept.
        let mut all = [0.0; SCREEN_ROWS];
        for b in (0..n).step_by(SCREEN_ROWS) {
            for (l, sum) in all.iter_mut().enumerate().take(n - b) {
                *sum += weighted(b + l);
            }
        }
        let (mut kept, mut len) = (0.0, 0);
        for (b, &keep) in keep.iter().enumerate() {
            // Few rows are kept: walk their bits (padding rows past n are never kept).
            let mut bits = keep & (u32::MAX >> (32 - SCREEN_ROWS.min(n - b * SCREEN_ROWS))) as u16;
            while bits != 0 {
                let r = b * SCREEN_ROWS + bits.trailing_zeros() as usize;
                chunk.listed[len] = r as u32;
                len += 1;
                kept += weighted(r);
                bits &= bits - 1;
            }
        }
        (len, all.iter().sum::<f64>() - kept)
    }
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

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    use super::*;

    /// Greedy k-means++ as scikit-learn writes it: full distance vectors, recomputed potentials.
    fn reference(x: &Array2<f64>, w: &[f64], k: usize, trials: usize, rng: &mut Pcg64Mcg) -> Vec<usize> {
        let n = x.nrows();
        let sq = |i: usize, j: usize| x.row(i).iter().zip(x.row(j)).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
        let search = |values: &[f64], target: f64| {
            let mut cum = 0.0;
            (0..n).find(|&i| {
                cum += values[i];
                cum >= target && w[i] > 0.0
            })
        };
        let total: f64 = w.iter().sum();
        let mut chosen = vec![search(w, rng.random::<f64>() * total).unwrap_or(n - 1)];
        let mut closest: Vec<f64> = (0..n).map(|i| sq(i, chosen[0])).collect();
        while chosen.len() < k {
            let weighted: Vec<f64> = (0..n).map(|i| w[i] * closest[i]).collect();
            let pot: f64 = weighted.iter().sum();
            let candidates: Vec<usize> = (0..trials)
                .map(|_| {
                    let target = rng.random::<f64>() * pot;
                    let mut cum = 0.0;
                    (0..n)
                        .find(|&i| {
                            cum += weighted[i];
                            cum >= target
                        })
                        .unwrap_or(n - 1)
                })
                .collect();
            let pots: Vec<f64> =
                candidates.iter().map(|&c| (0..n).map(|i| w[i] * closest[i].min(sq(i, c))).sum()).collect();
            let best = (0..trials).fold(0, |b, t| if pots[t] < pots[b] { t } else { b });
            chosen.push(candidates[best]);
            closest.iter_mut().enumerate().for_each(|(i, cl)| *cl = cl.min(sq(i, candidates[best])));
        }
        chosen
    }

    /// Skipped rows, deferred winners and chunked potentials pick the same rows as the textbook
    /// algorithm, on well separated blobs (where most rows are skipped) over several chunks, with
    /// and without weights, on data read as stored and shifted on the fly, with and without the
    /// 8-bit copy.
    #[test]
    fn plusplus_picks_the_rows_of_the_textbook_algorithm() {
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let (n, d, blobs) = (3 * CHUNK_ROWS + 17, 5, 30);
        let centres = Array2::from_shape_fn((blobs, d), |_| rng.random_range(-50.0..50.0));
        let x = Array2::from_shape_fn((n, d), |(i, q)| centres[[i % blobs, q]] + rng.random_range(-1.0..1.0));
        let w: Vec<f64> = (0..n).map(|i| if i % 7 == 3 { 0.0 } else { 0.5 + (i % 4) as f64 }).collect();
        let shift: Vec<f64> = (0..d).map(|q| 20.0 - 3.0 * q as f64).collect();
        let shifted = Array2::from_shape_fn((n, d), |(i, q)| x[[i, q]] - shift[q]);
        for (k, weighted, moved) in [(1, false, false), (24, false, false), (40, true, false), (33, true, true)] {
            let weights = weighted.then_some(w.as_slice());
            let ones = vec![1.0; n];
            for kernel in Kernel::available() {
                let stored = Data::new(x.view(), weights);
                let data = if moved { DataView::shifted(stored, &shift) } else { DataView::from(&stored) };
                let seen = if moved { &shifted } else { &x };
                let expected =
                    reference(seen, weights.unwrap_or(&ones), k, default_trials(k), &mut Pcg64Mcg::seed_from_u64(9));
                for compact in [false, true] {
                    let mut rng = Pcg64Mcg::seed_from_u64(9);
                    let ours =
                        plusplus_with(kernel, data, k, default_trials(k), &mut rng, &CancelToken::new(), compact)
                            .unwrap();
                    let name = kernel.name();
                    assert_eq!(ours, expected, "{name} k={k} weighted={weighted} shifted={moved} compact={compact}");
                }
            }
        }
    }
}
