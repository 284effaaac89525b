//! Initial centres: greedy k-means++ (scikit-learn's `_kmeans_plusplus`) and random rows.

use std::ops::Range;

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::kernel::{Kernel, Packed};
use super::lloyd::Data;
use super::rows_of;
use crate::cluster::validate_data;
use crate::{Error, Real, Result};

/// Rows per kernel call in a k-means++ step: a multiple of every micro-kernel height (6, 4).
const SUB_ROWS: usize = 252;
/// Rows per parallel chunk of a k-means++ step (and per chunk potential that sampling walks).
const CHUNK_ROWS: usize = 16 * SUB_ROWS;
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
/// The state is one n-vector of each row's squared distance to its nearest centre (with that
/// centre's index and a flag): distances to the candidates are never stored. Each step is one
/// parallel pass over the rows that computes the candidates' potentials with the fused kernel
/// and, in the same read of a row, applies the previous step's winner to it. Rows that no
/// candidate can bring closer are skipped (triangle inequality against the row's nearest
/// centre, see [`SKIP_MARGIN`]); a winner is applied to exactly the rows its pass computed, so
/// skipping changes nothing but the time taken. Sampling walks the chunk potentials, then one
/// chunk with the pending winner applied on the fly by the same arithmetic.
pub(crate) fn plusplus<T: Real>(
    kernel: Kernel,
    data: &Data<'_, T>,
    k: usize,
    trials: usize,
    rng: &mut Pcg64Mcg,
) -> Result<Vec<usize>> {
    let n = data.n();
    let total = total_weight(data)?;
    let mut chosen = vec![weighted_row(data, total, rng)];
    if k == 1 {
        return Ok(chosen);
    }
    let mut state = Nearest {
        closest: vec![T::infinity(); n],
        owner: vec![u32::MAX; n],
        computed: vec![true; n],
        chunk_pot: Vec::new(),
    };
    // The first centre is applied to every row before the first sampling; every later winner
    // waits for the next pass.
    let pots = Step::new(kernel, data, &chosen, true, &[]).run(&mut state);
    state.chunk_pot = pots.into_iter().map(|p| p[0]).collect();
    let mut pending = false;
    while chosen.len() < k {
        let pot: f64 = state.chunk_pot.iter().sum();
        let winner = pending.then(|| kernel.pack(rows_of(data, &chosen[chosen.len() - 1..]).view()));
        let candidates: Vec<usize> =
            (0..trials).map(|_| state.sample(kernel, data, winner.as_ref(), rng.random::<f64>() * pot)).collect();
        let pots = Step::new(kernel, data, &chosen, pending, &candidates).run(&mut state);
        let pot = |t: usize| pots.iter().map(|p| p[1 + t]).sum::<f64>();
        let best = (0..candidates.len()).fold(0, |b, t| if pot(t) < pot(b) { t } else { b });
        state.chunk_pot = pots.iter().map(|p| p[1 + best]).collect();
        chosen.push(candidates[best]);
        pending = true;
    }
    Ok(chosen)
}

/// Each row's squared distance to its nearest applied centre and that centre's position;
/// whether the last pass computed the row (then the pending winner applies to it); per chunk,
/// the sum of `weight × distance` with the pending winner applied.
struct Nearest<T> {
    closest: Vec<T>,
    owner: Vec<u32>,
    computed: Vec<bool>,
    chunk_pot: Vec<f64>,
}

impl<T: Real> Nearest<T> {
    /// The first row whose cumulative `weight × closest`, with the pending `winner` applied,
    /// reaches `target` (scikit-learn's `searchsorted` on the cumulative sum).
    fn sample(&self, kernel: Kernel, data: &Data<'_, T>, winner: Option<&Packed<T>>, mut target: f64) -> usize {
        let last = self.chunk_pot.len() - 1;
        let mut ci = 0;
        while ci < last && target > self.chunk_pot[ci] {
            target -= self.chunk_pot[ci];
            ci += 1;
        }
        let (start, end) = (ci * CHUNK_ROWS, (ci * CHUNK_ROWS + CHUNK_ROWS).min(self.closest.len()));
        let mut scratch = Scratch::new(kernel, data.d, winner.map_or(1, Packed::stride));
        let mut cum = 0.0;
        for s in (start..end).step_by(SUB_ROWS) {
            let rows = s..(s + SUB_ROWS).min(end);
            let listed = winner.map_or(0, |w| scratch.compute(data, rows.clone(), |i| self.computed[i], w));
            let mut next = 0;
            for i in rows {
                let mut cl = self.closest[i];
                if next < listed && scratch.select[next] as usize == i {
                    cl = closer(cl, scratch.dists[next * scratch.stride]);
                    next += 1;
                }
                cum += data.weight(i) * cl.to_f64_exact();
                if cum >= target {
                    return i;
                }
            }
        }
        end - 1
    }
}

/// `d` if it is below `closest`, else `closest`: the one comparison passes and sampling share.
#[inline]
fn closer<T: Real>(closest: T, d: T) -> T {
    if d < closest {
        d
    } else {
        closest
    }
}

/// Buffers of a pass, made once per thread: the rows of a kernel call and their distances.
struct Scratch<T> {
    kernel: Kernel,
    select: Vec<u32>,
    dists: Vec<T>,
    stride: usize,
    zeros: Vec<T>,
}

impl<T: Real> Scratch<T> {
    fn new(kernel: Kernel, d: usize, stride: usize) -> Self {
        Scratch {
            kernel,
            select: vec![0; SUB_ROWS],
            dists: vec![T::zero(); SUB_ROWS * stride],
            stride,
            zeros: vec![T::zero(); d],
        }
    }

    /// Lists the rows of `rows` (at most [`SUB_ROWS`]) that `keep` selects and writes their
    /// squared distances (`‖x‖² + ‖c‖² − 2 x·c`, at least 0) to the packed centres into `dists`,
    /// a row of `stride` each; returns how many rows it listed.
    fn compute(
        &mut self,
        data: &Data<'_, T>,
        rows: Range<usize>,
        keep: impl Fn(usize) -> bool,
        packed: &Packed<T>,
    ) -> usize {
        // Branch-free compaction: which rows are kept is as random as the data's order.
        let mut listed = 0;
        for i in rows {
            self.select[listed] = i as u32;
            listed += usize::from(keep(i));
        }
        let (select, dists) = (&self.select[..listed], &mut self.dists[..listed * self.stride]);
        self.kernel.partial_dists(data.x, select, packed, dists);
        for (&i, out) in select.iter().zip(dists.chunks_exact_mut(self.stride)) {
            let norm = self.kernel.sq_dist(data.rows(i as usize, 1), &self.zeros);
            out.iter_mut().for_each(|v| *v = (norm + *v).max(T::zero()));
        }
        listed
    }
}

/// One pass of k-means++: the pending winner (if any) and the candidates, packed in that order.
struct Step<'a, T> {
    kernel: Kernel,
    data: &'a Data<'a, T>,
    /// Whether the last chosen centre is pending (packed first).
    pending: bool,
    /// Position of the last chosen centre.
    centre: u32,
    packed: Packed<T>,
    /// Per chosen centre: the smallest squared distance to a candidate.
    bound: Vec<T>,
    /// `4 (1 + SKIP_MARGIN)` as `T`.
    skip_factor: T,
}

impl<'a, T: Real> Step<'a, T> {
    fn new(kernel: Kernel, data: &'a Data<'a, T>, chosen: &[usize], pending: bool, candidates: &[usize]) -> Self {
        let last = chosen[chosen.len() - 1];
        let centres: Vec<usize> = pending.then_some(last).into_iter().chain(candidates.iter().copied()).collect();
        let bound = chosen
            .par_iter()
            .map(|&a| {
                candidates.iter().map(|&t| kernel.sq_dist(data.rows(a, 1), data.rows(t, 1))).fold(T::infinity(), T::min)
            })
            .collect();
        Step {
            kernel,
            data,
            pending,
            centre: (chosen.len() - 1) as u32,
            packed: kernel.pack(rows_of(data, &centres).view()),
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

    /// Runs the pass; per chunk, the potential with the pending winner applied, then each
    /// candidate's (`Σ weight × min(closest, distance)`).
    fn run(&self, state: &mut Nearest<T>) -> Vec<Vec<f64>> {
        let Nearest { closest, owner, computed, .. } = state;
        closest
            .par_chunks_mut(CHUNK_ROWS)
            .zip(owner.par_chunks_mut(CHUNK_ROWS))
            .zip(computed.par_chunks_mut(CHUNK_ROWS))
            .enumerate()
            .map_init(
                || Scratch::new(self.kernel, self.data.d, self.packed.stride()),
                |scratch, (ci, ((closest, owner), computed))| {
                    self.chunk(scratch, ci * CHUNK_ROWS, closest, owner, computed)
                },
            )
            .collect()
    }

    /// [`Step::run`] on the chunk of rows from `start`.
    fn chunk(
        &self,
        scratch: &mut Scratch<T>,
        start: usize,
        closest: &mut [T],
        owner: &mut [u32],
        computed: &mut [bool],
    ) -> Vec<f64> {
        let first = usize::from(self.pending);
        let trials = self.packed.k - first;
        let mut pots = vec![0.0; 1 + trials];
        for s in (0..closest.len()).step_by(SUB_ROWS) {
            let rows = s..(s + SUB_ROWS).min(closest.len());
            let mut skipped = 0.0;
            for r in rows.clone() {
                let keep = (computed[r] && self.pending) || !self.skip(closest[r], owner[r]);
                computed[r] = keep;
                skipped += if keep { 0.0 } else { self.data.weight(start + r) * closest[r].to_f64_exact() };
            }
            let listed =
                scratch.compute(self.data, start + rows.start..start + rows.end, |i| computed[i - start], &self.packed);
            for (&i, d) in scratch.select[..listed].iter().zip(scratch.dists.chunks_exact(scratch.stride)) {
                let r = i as usize - start;
                if self.pending && d[0] < closest[r] {
                    closest[r] = d[0];
                    owner[r] = self.centre;
                }
                let (w, cl) = (self.data.weight(i as usize), closest[r]);
                pots[0] += w * cl.to_f64_exact();
                for (pot, &dt) in pots[1..].iter_mut().zip(&d[first..first + trials]) {
                    *pot += w * closer(cl, dt).to_f64_exact();
                }
            }
            pots.iter_mut().for_each(|p| *p += skipped);
        }
        pots
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
    /// algorithm, on well separated blobs (where most rows are skipped) over several chunks.
    #[test]
    fn plusplus_picks_the_rows_of_the_textbook_algorithm() {
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let (n, d, blobs) = (3 * CHUNK_ROWS + 17, 5, 30);
        let centres = Array2::from_shape_fn((blobs, d), |_| rng.random_range(-50.0..50.0));
        let x = Array2::from_shape_fn((n, d), |(i, q)| centres[[i % blobs, q]] + rng.random_range(-1.0..1.0));
        let w: Vec<f64> = (0..n).map(|i| if i % 7 == 3 { 0.0 } else { 0.5 + (i % 4) as f64 }).collect();
        for (k, weighted) in [(1, false), (24, false), (40, true)] {
            let weights = weighted.then_some(w.as_slice());
            let ones = vec![1.0; n];
            for kernel in Kernel::available() {
                let data = Data::new(x.view(), weights);
                let ours = plusplus(kernel, &data, k, default_trials(k), &mut Pcg64Mcg::seed_from_u64(9)).unwrap();
                let expected =
                    reference(&x, weights.unwrap_or(&ones), k, default_trials(k), &mut Pcg64Mcg::seed_from_u64(9));
                assert_eq!(ours, expected, "{} k={k} weighted={weighted}", kernel.name());
            }
        }
    }
}
