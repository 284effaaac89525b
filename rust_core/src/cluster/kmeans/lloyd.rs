//! Lloyd's algorithm as scikit-learn runs it (`_kmeans_single_lloyd`), on the fused kernel.
//!
//! Rows are split into fixed chunks (a function of n, k and d only, never of the thread
//! count); every per-chunk partial result is reduced in chunk order, so a fit is bit-identical
//! whatever the size of the rayon pool.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::kernel::{Kernel, Rows};
use crate::{CancelToken, Real, Result};

/// Rows of X that one kernel call sees: ~64 KiB, so they are still in L2 for the accumulation.
const SUB_ROWS_BYTES: usize = 64 * 1024;
/// Smallest chunk of rows handed to a thread.
const MIN_CHUNK_ROWS: usize = 4096;
/// Bound on the memory of all per-chunk partial sums of one iteration.
const PARTIALS_BYTES: usize = 64 << 20;

/// Contiguous data the algorithms run on: `n × d` row-major, optional weights.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Data<'a, T> {
    pub(crate) x: &'a [T],
    pub(crate) d: usize,
    pub(crate) w: Option<&'a [T]>,
}

impl<'a, T: Real> Data<'a, T> {
    /// Data over a row-major matrix (callers make it so with `as_standard_layout`).
    pub(crate) fn new(x: ArrayView2<'a, T>, w: Option<&'a [T]>) -> Self {
        Data { x: x.to_slice().expect("standard layout"), d: x.ncols(), w }
    }

    pub(crate) fn n(&self) -> usize {
        self.x.len() / self.d
    }

    /// Rows `start..start + len` of X.
    pub(crate) fn rows(&self, start: usize, len: usize) -> &'a [T] {
        &self.x[start * self.d..(start + len) * self.d]
    }

    /// Weight of row `i` (1 without weights).
    pub(crate) fn weight(&self, i: usize) -> f64 {
        self.w.map_or(1.0, |w| w[i].to_f64_exact())
    }
}

/// [`Data`] as the algorithms read it: the stored rows, or the rows minus a shift subtracted as
/// each row is read (the fit's centring, done on the fly so that X is never copied: every value
/// seen is `x − shift` rounded to `T`, as a centred copy would hold it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataView<'a, T> {
    data: Data<'a, T>,
    shift: Option<&'a [T]>,
}

impl<'a, T: Real> From<&Data<'a, T>> for DataView<'a, T> {
    fn from(data: &Data<'a, T>) -> Self {
        DataView { data: *data, shift: None }
    }
}

impl<'a, T: Real> From<&DataView<'a, T>> for DataView<'a, T> {
    fn from(view: &DataView<'a, T>) -> Self {
        *view
    }
}

impl<'a, T> std::ops::Deref for DataView<'a, T> {
    type Target = Data<'a, T>;

    fn deref(&self) -> &Data<'a, T> {
        &self.data
    }
}

impl<'a, T: Real> DataView<'a, T> {
    /// The rows of `data` minus `shift` (one value per column).
    pub(crate) fn shifted(data: Data<'a, T>, shift: &'a [T]) -> Self {
        assert_eq!(shift.len(), data.d);
        DataView { data, shift: Some(shift) }
    }

    /// Rows `start..start + len` as seen: the stored slice, or shifted into `buf` (at least
    /// `len · d` long).
    pub(crate) fn block<'b>(&'b self, kernel: Kernel, start: usize, len: usize, buf: &'b mut [T]) -> &'b [T] {
        match self.shift {
            None => self.data.rows(start, len),
            Some(shift) => {
                let out = &mut buf[..len * self.d];
                kernel.gather(self.x, self.d, Rows::Range { start, len }, Some(shift), out);
                out
            }
        }
    }

    /// Rows `start + list[r]` as seen, into `out` (`list.len() · d` values), prefetching the
    /// rows `start + then[r]` that the caller gathers next.
    pub(crate) fn gather(&self, kernel: Kernel, start: usize, list: &[u32], then: &[u32], out: &mut [T]) {
        kernel.gather(&self.x[start * self.d..], self.d, Rows::List { rows: list, then }, self.shift, out);
    }

    /// Value `q` of row `i` as seen (the same rounding as [`DataView::block`]).
    pub(crate) fn value(&self, i: usize, q: usize) -> T {
        let v = self.x[i * self.d + q];
        self.shift.map_or(v, |m| v - m[q])
    }

    /// Whether rows are shifted as they are read (then reading them needs a buffer).
    pub(crate) fn is_shifted(&self) -> bool {
        self.shift.is_some()
    }
}

/// Rows per chunk for `n` rows with per-chunk partials of `partial_len` values of `T`.
pub(super) fn chunk_rows<T>(n: usize, partial_len: usize) -> usize {
    let max_chunks = (PARTIALS_BYTES / (partial_len.max(1) * std::mem::size_of::<T>())).max(1);
    MIN_CHUNK_ROWS.max(n.div_ceil(max_chunks))
}

/// Rows per kernel call.
fn sub_rows<T>(d: usize) -> usize {
    // A multiple of every micro-kernel height (6, 4), so only a chunk's last call is ragged.
    (SUB_ROWS_BYTES / (d * std::mem::size_of::<T>()) / 12 * 12).max(12)
}

/// The outcome of one Lloyd run, in the (centred) space of the data it ran on.
#[derive(Debug, Clone)]
pub(super) struct Run<T> {
    pub(super) centres: Array2<T>,
    pub(super) labels: Vec<u32>,
    pub(super) inertia: f64,
    pub(super) n_iter: usize,
}

/// What a pass over the data does after assigning each row to its nearest centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nothing more (an E-step).
    Nothing,
    /// Sums the rows per cluster (scikit-learn's fused assignment and update).
    Update,
    /// Sums the weighted squared distances of the rows to their new centre, while each block
    /// of rows is still in cache (the final E-step and the inertia in one read of X).
    Inertia,
}

/// What one pass over the data found.
pub(crate) struct Pass {
    /// Per-cluster weighted sums of rows (k × d) and weights; empty unless updating.
    pub(crate) sums: Vec<f64>,
    pub(crate) weights: Vec<f64>,
    /// Rows whose label changed.
    pub(crate) changed: usize,
    /// `Σ w ‖x − c_label‖²` with [`Then::Inertia`], else 0.
    pub(crate) inertia: f64,
}

/// Assigns every row to its nearest centre (writing `labels`), then does `then`:
/// scikit-learn's `lloyd_iter_chunked_dense`.
pub(crate) fn pass<'a, T: Real>(
    kernel: Kernel,
    data: impl Into<DataView<'a, T>>,
    centres: ArrayView2<'_, T>,
    labels: &mut [u32],
    then: Then,
) -> Pass {
    let data = data.into();
    let (k, d) = centres.dim();
    let packed = kernel.pack(centres);
    let centres = centres.as_slice().expect("centres are standard layout");
    let update = then == Then::Update;
    let chunk = chunk_rows::<T>(data.n(), k * d);
    let sub = sub_rows::<T>(d);
    let partials: Vec<(Vec<T>, Vec<f64>, usize, f64)> = labels
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(ci, labels)| {
            let start = ci * chunk;
            let mut sums = vec![T::zero(); if update { k * d } else { 0 }];
            let mut weights = vec![0.0; if update { k } else { 0 }];
            let (mut new, mut values, mut changed, mut inertia) = (vec![0u32; sub], vec![T::zero(); sub], 0, 0.0);
            let mut buf = vec![T::zero(); if data.is_shifted() { sub * d } else { 0 }];
            for s in (0..labels.len()).step_by(sub) {
                let m = sub.min(labels.len() - s);
                let x = data.block(kernel, start + s, m, &mut buf);
                // The rows after this block (the next chunk's too: a thread mostly takes them next).
                let next = start + s + m;
                let ahead = data.rows(next, sub.min(data.n() - next));
                kernel.nearest(x, &packed, &mut new[..m], &mut values[..m], ahead);
                for (old, &new) in labels[s..s + m].iter_mut().zip(&new[..m]) {
                    changed += usize::from(*old != new);
                    *old = new;
                }
                match then {
                    Then::Nothing => {}
                    Then::Update => {
                        let w = data.w.map(|w| &w[start + s..start + s + m]);
                        kernel.accumulate(x, w, &new[..m], &mut sums, &mut weights);
                    }
                    Then::Inertia => {
                        for (i, (row, &l)) in x.chunks_exact(d).zip(&new[..m]).enumerate() {
                            let c = &centres[l as usize * d..(l as usize + 1) * d];
                            inertia += data.weight(start + s + i) * kernel.sq_dist(row, c).to_f64_exact();
                        }
                    }
                }
            }
            (sums, weights, changed, inertia)
        })
        .collect();
    let mut total = Pass {
        sums: vec![0.0; if update { k * d } else { 0 }],
        weights: vec![0.0; k],
        changed: partials.iter().map(|p| p.2).sum(),
        inertia: partials.iter().map(|p| p.3).sum(),
    };
    if update {
        // In parallel over clusters, each summing the chunks in chunk order (deterministic).
        let sums = total.sums.par_chunks_mut(d.max(1)).zip(total.weights.par_iter_mut());
        sums.enumerate().for_each(|(j, (sums, weight))| {
            for (p_sums, p_weights, _, _) in &partials {
                sums.iter_mut().zip(&p_sums[j * d..(j + 1) * d]).for_each(|(t, &s)| *t += s.to_f64_exact());
                *weight += p_weights[j];
            }
        });
    }
    total
}

/// `‖x_i − c_{labels[i]}‖²` for every row, in parallel.
pub(crate) fn label_sq_dists<'a, T: Real>(
    kernel: Kernel,
    data: impl Into<DataView<'a, T>>,
    centres: &Array2<T>,
    labels: &[u32],
) -> Vec<T> {
    let data = data.into();
    let d = data.d;
    let c = centres.as_slice().expect("centres are standard layout");
    labels
        .par_iter()
        .enumerate()
        .map_init(
            || vec![T::zero(); d],
            |buf, (i, &l)| kernel.sq_dist(data.block(kernel, i, 1, buf), &c[l as usize * d..(l as usize + 1) * d]),
        )
        .collect()
}

/// `Σ w_i ‖x_i − c_{labels[i]}‖²`, summed in f64 in a fixed order.
pub(crate) fn inertia<'a, T: Real>(
    kernel: Kernel,
    data: impl Into<DataView<'a, T>>,
    centres: &Array2<T>,
    labels: &[u32],
) -> f64 {
    let data = data.into();
    let d = data.d;
    let c = centres.as_slice().expect("centres are standard layout");
    let chunk = MIN_CHUNK_ROWS;
    let partials: Vec<f64> = labels
        .par_chunks(chunk)
        .enumerate()
        .map(|(ci, labels)| {
            let start = ci * chunk;
            let mut buf = vec![T::zero(); d];
            labels
                .iter()
                .enumerate()
                .map(|(i, &l)| {
                    let row = data.block(kernel, start + i, 1, &mut buf);
                    let sq = kernel.sq_dist(row, &c[l as usize * d..(l as usize + 1) * d]);
                    data.weight(start + i) * sq.to_f64_exact()
                })
                .sum::<f64>()
        })
        .collect();
    partials.iter().sum()
}

/// The nearest centre of every row (an E-step).
pub(crate) fn assign<'a, T: Real>(kernel: Kernel, data: impl Into<DataView<'a, T>>, centres: &Array2<T>) -> Vec<u32> {
    let data = data.into();
    let mut labels = vec![0; data.n()];
    pass(kernel, data, centres.view(), &mut labels, Then::Nothing);
    labels
}

/// Gives each empty cluster one of the points farthest from their centre, taking it out of its
/// cluster: scikit-learn's `_relocate_empty_clusters_dense` (farthest first, lower index first
/// among equal distances).
fn relocate_empty<T: Real>(
    kernel: Kernel,
    data: DataView<'_, T>,
    centres_old: &Array2<T>,
    labels: &[u32],
    sums: &mut [f64],
    weights: &mut [f64],
) {
    let empty: Vec<usize> = (0..weights.len()).filter(|&j| weights[j] == 0.0).collect();
    if empty.is_empty() {
        return;
    }
    let dists = label_sq_dists(kernel, data, centres_old, labels);
    if dists.iter().all(|&v| v == T::zero()) {
        // More clusters than distinct points: relocating is pointless.
        return;
    }
    let farther =
        |a: &usize, b: &usize| dists[*b].partial_cmp(&dists[*a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(b));
    let mut order: Vec<usize> = (0..dists.len()).collect();
    let n_far = empty.len().min(order.len());
    order.select_nth_unstable_by(n_far - 1, farther);
    order.truncate(n_far);
    order.sort_unstable_by(farther);
    for (&new, &far) in empty.iter().zip(&order) {
        let row = (0..data.d).map(|q| data.value(far, q).to_f64_exact());
        move_point(sums, weights, row, labels[far] as usize, new, data.weight(far));
    }
}

/// Moves a point (its values `row`, weight `w`) from cluster `old` into the empty cluster `new`
/// in the sums and weights of an M-step.
pub(crate) fn move_point(
    sums: &mut [f64],
    weights: &mut [f64],
    row: impl ExactSizeIterator<Item = f64>,
    old: usize,
    new: usize,
    w: f64,
) {
    let d = row.len();
    for (q, v) in row.enumerate() {
        sums[old * d + q] -= v * w;
        sums[new * d + q] = v * w;
    }
    weights[new] = w;
    weights[old] -= w;
}

/// Centres from sums and weights; a cluster still empty goes to the centre of the heaviest.
pub(crate) fn average<T: Real>(sums: &[f64], weights: &[f64], d: usize) -> Array2<T> {
    let k = weights.len();
    let mut centres = Array2::from_shape_fn((k, d), |(j, q)| {
        if weights[j] > 0.0 {
            T::from_f64_lossy(sums[j * d + q] / weights[j])
        } else {
            T::zero()
        }
    });
    let heaviest = (0..k).fold(0, |best, j| if weights[j] > weights[best] { j } else { best });
    for j in (0..k).filter(|&j| weights[j] <= 0.0) {
        let row = centres.row(heaviest).to_owned();
        centres.row_mut(j).assign(&row);
    }
    centres
}

/// One run of Lloyd's algorithm from `centres`, with scikit-learn's stopping rules: labels
/// unchanged (strict), or the squared centre shift at most `tol`; without strict convergence
/// one more E-step makes the labels match the final centres. Calls `progress` after each
/// iteration, then stops with [`crate::Error::Cancelled`] if `cancel` says so.
pub(super) fn lloyd<T: Real>(
    kernel: Kernel,
    data: DataView<'_, T>,
    mut centres: Array2<T>,
    (max_iter, tol): (usize, f64),
    progress: &dyn Fn(usize),
    cancel: &CancelToken,
) -> Result<Run<T>> {
    let d = data.d;
    let mut labels = vec![u32::MAX; data.n()];
    let mut strict = false;
    let mut n_iter = 0;
    for i in 0..max_iter {
        n_iter = i + 1;
        let mut p = pass(kernel, data, centres.view(), &mut labels, Then::Update);
        relocate_empty(kernel, data, &centres, &labels, &mut p.sums, &mut p.weights);
        let new = average::<T>(&p.sums, &p.weights, d);
        let shift: f64 = new.iter().zip(&centres).map(|(a, b)| (a.to_f64_exact() - b.to_f64_exact()).powi(2)).sum();
        centres = new;
        progress(n_iter);
        cancel.check()?;
        if p.changed == 0 {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
    }
    let inertia = if strict {
        inertia(kernel, data, &centres, &labels)
    } else {
        pass(kernel, data, centres.view(), &mut labels, Then::Inertia).inertia
    };
    Ok(Run { centres, labels, inertia, n_iter })
}
