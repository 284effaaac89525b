//! The kernel's routines, written once over a vector type and instantiated per instruction set.
//!
//! The micro-kernel keeps an `MR × NV·W` block of dot products in registers (MR rows of X, NV
//! vectors of W centres), loading each centre vector once per feature and broadcasting each x
//! value from memory: `MR·NV` FMAs per `NV + MR` loads. The argmin is folded in per panel (one
//! horizontal minimum per row), so distances never go to memory.

use num_traits::{Float, One, Zero};

use super::{Listed, Packed};
use crate::Real;

/// A SIMD vector of `W` values of `T` and the operations the kernel needs.
///
/// # Safety
/// Implementations for an instruction set may only be called from code compiled for it (the
/// `#[target_feature]` entry points made by [`routines!`]); every function is `#[inline(always)]`
/// so that it is compiled into them.
pub(super) trait Lanes {
    type T: Real;
    type V: Copy;
    const W: usize;
    unsafe fn splat(v: Self::T) -> Self::V;
    /// Unaligned load of W values.
    unsafe fn load(p: *const Self::T) -> Self::V;
    /// Unaligned store of W values.
    unsafe fn store(p: *mut Self::T, v: Self::V);
    /// `a · b + c`.
    unsafe fn mul_add(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise `if a < b { x } else { y }`.
    unsafe fn select_lt(a: Self::V, b: Self::V, x: Self::V, y: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// The smallest lane of `v`, which holds no NaN.
    unsafe fn min_lane(v: Self::V) -> Self::T;
    /// Bit `i` set where `a[i] == b[i]`.
    unsafe fn eq_mask(a: Self::V, b: Self::V) -> u64;
    /// Sum of the lanes.
    unsafe fn sum(v: Self::V) -> Self::T;
    /// `acc[i] += w · v[i]` in f64 for the W lanes (a product, then a sum: no fused rounding).
    unsafe fn add_scaled_f64(acc: *mut f64, v: Self::V, w: f64);
}

/// Hints that the cache line holding `p` will be read soon: into L1 if `NEAR` (read next), else
/// into L2 only (read after the block in L1 is done, which L1 could not hold as well).
#[inline(always)]
fn prefetch<T, const NEAR: bool>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        // SAFETY: a prefetch never faults, whatever the address, and SSE is part of x86_64.
        unsafe {
            if NEAR {
                _mm_prefetch::<_MM_HINT_T0>(p.cast());
            } else {
                _mm_prefetch::<_MM_HINT_T1>(p.cast());
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Dot products of MR rows of X with the `NV·W` centres of one panel (stride `nr`), prefetching
/// the first `d` cache lines of `ahead` into L2 on the way (one per feature, so that the
/// prefetches never queue up behind each other and stall the loads of the FMAs).
///
/// Each row has its own pointer so that the broadcasts address `row + q` with one shared
/// index: no per-row address arithmetic competes with the FMAs for ports.
///
/// # Safety
/// Every row pointer is valid for `d` reads and `panel` for `d · nr` reads (`NV·W ≤ nr`).
#[inline(always)]
unsafe fn dot_block<L: Lanes, const MR: usize, const NV: usize>(
    rows: &[*const L::T; MR],
    d: usize,
    panel: *const L::T,
    nr: usize,
    ahead: &[L::T],
) -> [[L::V; NV]; MR] {
    let line = 64 / std::mem::size_of::<L::T>();
    let mut acc = [[L::splat(L::T::zero()); NV]; MR];
    for q in 0..d {
        if q * line < ahead.len() {
            prefetch::<L::T, false>(ahead.as_ptr().add(q * line));
        }
        let mut b = [L::splat(L::T::zero()); NV];
        for (v, b) in b.iter_mut().enumerate() {
            *b = L::load(panel.add(q * nr + v * L::W));
        }
        for (row, acc) in rows.iter().zip(acc.iter_mut()) {
            let a = L::splat(*row.add(q));
            for v in 0..NV {
                acc[v] = L::mul_add(a, b[v], acc[v]);
            }
        }
    }
    acc
}

/// Pointers to the MR rows `r0..r0 + m` of `x`; a short last group repeats its last row, whose
/// extra results are ignored, so the micro-kernel always sees MR rows.
#[inline(always)]
fn row_block<T: Real, const MR: usize>(x: &[T], d: usize, r0: usize, m: usize) -> [*const T; MR] {
    let rows = &x[r0 * d..(r0 + m) * d];
    std::array::from_fn(|r| rows[r.min(m - 1) * d..].as_ptr())
}

/// Folds the panel's `‖c‖² − 2 x·c` (`acc` holds `−2 x·c`: the panel is packed as `−2c`) into
/// each row's best: the panel's smallest value, at its lowest index, replaces the best only if
/// strictly smaller, so that the lowest index among equals wins across panels too. One
/// horizontal minimum per row and panel instead of a lane-wise running minimum and index per
/// vector: fewer vector operations beside the FMAs.
///
/// # Safety
/// `norms` is valid for reads of `NV·W` values (the panel's).
#[inline(always)]
unsafe fn keep_min<L: Lanes, const MR: usize, const NV: usize>(
    acc: &[[L::V; NV]; MR],
    norms: *const L::T,
    col: usize,
    best: &mut [L::T; MR],
    best_idx: &mut [u32; MR],
) {
    let norm: [L::V; NV] = std::array::from_fn(|v| L::load(norms.add(v * L::W)));
    let inf = L::splat(L::T::infinity());
    for ((acc, best), best_idx) in acc.iter().zip(best.iter_mut()).zip(best_idx.iter_mut()) {
        let val: [L::V; NV] = std::array::from_fn(|v| L::add(acc[v], norm[v]));
        // A NaN lane (only from overflow) never wins: `select_lt` keeps the running minimum.
        let min = L::min_lane(val.iter().fold(inf, |m, &v| L::select_lt(v, m, v, m)));
        // `min` is a lane of some `val[v]` whenever it is below `best`, so the mask is not empty.
        let at = (0..NV).fold(0u64, |mask, v| mask | L::eq_mask(val[v], L::splat(min)) << (v * L::W));
        let better = min < *best;
        *best_idx = if better { (col + at.trailing_zeros() as usize) as u32 } else { *best_idx };
        *best = if better { min } else { *best };
    }
}

/// Runs `$body` with `const $nv` = the number of vectors panel `$p` of `$c` needs (at most
/// `$nvmax`), so that a short last panel costs only what it holds.
macro_rules! with_panel_width {
    ($c:expr, $p:expr, $nvmax:expr, |$nv:ident| $body:block) => {{
        let vectors = ($c.k - $p * $c.nr).div_ceil(L::W).min($nvmax);
        if vectors >= 4 {
            const $nv: usize = 4;
            $body
        } else if vectors == 3 {
            const $nv: usize = 3;
            $body
        } else if vectors == 2 {
            const $nv: usize = 2;
            $body
        } else {
            const $nv: usize = 1;
            $body
        }
    }};
}

/// See [`super::Kernel::nearest`]; panels are `NVMAX` vectors wide.
///
/// # Safety
/// `L`'s instruction set is available, `c` was packed with panels of `NVMAX·W` centres and `x`
/// holds `labels.len()` rows of `c.d` values (checked by [`super::Kernel::nearest`]); `ahead` is
/// only prefetched, which reads nothing.
#[inline(always)]
pub(super) unsafe fn nearest<L: Lanes, const MR: usize, const NVMAX: usize>(
    x: &[L::T],
    c: &Packed<L::T>,
    labels: &mut [u32],
    values: &mut [L::T],
    ahead: &[L::T],
) {
    let (d, nr, data, norms) = (c.d, c.nr, c.data().as_ptr(), c.norms.as_ptr());
    // `ahead`, spread evenly over the row groups (a few lines each, fewer than `d`): the memory
    // fetches the next block while this one computes, instead of stalling the copy that starts it.
    let groups = labels.len().div_ceil(MR).max(1);
    let per_group = ahead.len().div_ceil(groups).next_multiple_of(64 / std::mem::size_of::<L::T>());
    for (group, r0) in (0..labels.len()).step_by(MR).enumerate() {
        let ahead = &ahead[ahead.len().min(group * per_group)..ahead.len().min((group + 1) * per_group)];
        let m = MR.min(labels.len() - r0);
        let rows = row_block::<L::T, MR>(x, d, r0, m);
        let (mut best, mut best_idx) = ([L::T::infinity(); MR], [0u32; MR]);
        for p in 0..c.panels() {
            let panel = data.add(p * d * nr);
            let ahead = if p == 0 { ahead } else { &[] };
            with_panel_width!(c, p, NVMAX, |NV| {
                let acc = dot_block::<L, MR, NV>(&rows, d, panel, nr, ahead);
                keep_min::<L, MR, NV>(&acc, norms.add(p * nr), p * nr, &mut best, &mut best_idx);
            });
        }
        labels[r0..r0 + m].copy_from_slice(&best_idx[..m]);
        values[r0..r0 + m].copy_from_slice(&best[..m]);
    }
}

/// See [`super::Kernel::trials`]: panels of one vector take `MRW` rows at a time, wider ones `MR`.
///
/// # Safety
/// As [`nearest`], with `x` holding `listed.rows.len()` rows, every listed row below
/// `listed.norms.len()`, `dists` holding `listed.rows.len()` rows of `stride ≥ c.stride()` values and
/// `pots` at least `c.stride()` values (checked by [`super::Kernel::trials`]).
#[inline(always)]
pub(super) unsafe fn trials<L: Lanes, const MR: usize, const MRW: usize, const NVMAX: usize>(
    x: &[L::T],
    c: &Packed<L::T>,
    listed: &Listed<'_, L::T>,
    stride: usize,
    dists: &mut [L::T],
    pots: &mut [f64],
) {
    for p in 0..c.panels() {
        with_panel_width!(c, p, NVMAX, |NV| {
            if NV == 1 {
                trials_panel::<L, MRW, 1>(x, c, p, listed, stride, dists, pots);
            } else {
                trials_panel::<L, MR, NV>(x, c, p, listed, stride, dists, pots);
            }
        });
    }
}

/// [`trials`] for panel `p`, whose candidates take `NV` vectors: the dot products stay in
/// registers until each row's distances are stored and its potentials added.
///
/// # Safety
/// As [`trials`].
#[inline(always)]
unsafe fn trials_panel<L: Lanes, const MR: usize, const NV: usize>(
    x: &[L::T],
    c: &Packed<L::T>,
    p: usize,
    listed: &Listed<'_, L::T>,
    stride: usize,
    dists: &mut [L::T],
    pots: &mut [f64],
) {
    let (d, nr) = (c.d, c.nr);
    let (panel, norms, col) = (c.data().as_ptr().add(p * d * nr), c.norms.as_ptr(), p * nr);
    let zero = L::splat(L::T::zero());
    let n = listed.rows.len();
    for r0 in (0..n).step_by(MR) {
        let m = MR.min(n - r0);
        let rows = row_block::<L::T, MR>(x, d, r0, m);
        let acc = dot_block::<L, MR, NV>(&rows, d, panel, nr, &[]);
        // Rows past `m` repeat the last one: their results are dropped.
        for (r, acc) in acc.iter().enumerate().take(m) {
            let i = *listed.rows.get_unchecked(r0 + r) as usize;
            let norm = L::splat(*listed.norms.get_unchecked(i));
            let closest = L::splat(*listed.closest.get_unchecked(i));
            let w = listed.weights.map_or(1.0, |w| w.get_unchecked(i).to_f64_exact());
            for (v, &acc) in acc.iter().enumerate() {
                let cc = col + v * L::W;
                // ‖x‖² + (‖c‖² − 2 x·c), at least 0: the rounding may take it below.
                let dist = L::add(norm, L::add(acc, L::load(norms.add(cc))));
                let dist = L::select_lt(dist, zero, zero, dist);
                L::store(dists.as_mut_ptr().add((r0 + r) * stride + cc), dist);
                L::add_scaled_f64(pots.as_mut_ptr().add(cc), L::select_lt(dist, closest, dist, closest), w);
            }
        }
    }
}

/// How far ahead (in rows) [`gather`] prefetches the rows of a list.
pub(super) const PREFETCH_ROWS: usize = 24;

/// See [`super::Kernel::gather`].
///
/// # Safety
/// `L`'s instruction set is available; every row read lies in `x`, `out` holds all of them and
/// `shift` (if any) has `d` values (checked by [`super::Kernel::gather`]).
#[inline(always)]
pub(super) unsafe fn gather<L: Lanes>(
    x: &[L::T],
    d: usize,
    rows: super::Rows<'_>,
    shift: Option<&[L::T]>,
    out: &mut [L::T],
) {
    match rows {
        super::Rows::Range { start, len } => {
            for r in 0..len {
                copy_row::<L>(x.as_ptr().add((start + r) * d), d, shift, out.as_mut_ptr().add(r * d));
            }
        }
        super::Rows::List { rows: list, then } => {
            for (r, &i) in list.iter().enumerate() {
                // Listed rows are scattered, too short for the hardware prefetcher: ask ahead,
                // so that the memory-bound k-means++ pass keeps several rows in flight.
                let ahead = r + PREFETCH_ROWS;
                if let Some(&ahead) = list.get(ahead).or_else(|| then.get(ahead - list.len())) {
                    let row = x.as_ptr().add(ahead as usize * d);
                    for line in (0..d).step_by(64 / std::mem::size_of::<L::T>()) {
                        prefetch::<L::T, true>(row.add(line));
                    }
                }
                copy_row::<L>(x.as_ptr().add(i as usize * d), d, shift, out.as_mut_ptr().add(r * d));
            }
        }
    }
}

/// `dst[q] = src[q] − shift[q]` (or a plain copy) for `q < d`, in vectors: a row is too short
/// for a call to `memcpy` to pay.
///
/// # Safety
/// `src` and `dst` are valid for `d` values, `shift` has `d` values.
#[inline(always)]
unsafe fn copy_row<L: Lanes>(src: *const L::T, d: usize, shift: Option<&[L::T]>, dst: *mut L::T) {
    let full = d / L::W * L::W;
    match shift {
        Some(m) => {
            for q in (0..full).step_by(L::W) {
                L::store(dst.add(q), L::sub(L::load(src.add(q)), L::load(m.as_ptr().add(q))));
            }
            for (q, &mq) in m.iter().enumerate().skip(full) {
                *dst.add(q) = *src.add(q) - mq;
            }
        }
        None => {
            for q in (0..full).step_by(L::W) {
                L::store(dst.add(q), L::load(src.add(q)));
            }
            for q in full..d {
                *dst.add(q) = *src.add(q);
            }
        }
    }
}

/// See [`super::Kernel::accumulate`].
///
/// # Safety
/// `L`'s instruction set is available; slices are indexed with bounds checks except the
/// vector loads and stores, which stay within the row being added.
#[inline(always)]
pub(super) unsafe fn accumulate<L: Lanes>(
    x: &[L::T],
    w: Option<&[L::T]>,
    labels: &[u32],
    sums: &mut [L::T],
    weights: &mut [f64],
) {
    let d = sums.len() / weights.len();
    let full = d / L::W * L::W;
    for (i, &l) in labels.iter().enumerate() {
        let (l, wi) = (l as usize, w.map_or(L::T::one(), |w| w[i]));
        weights[l] += wi.to_f64_exact();
        let (row, sum) = (&x[i * d..(i + 1) * d], &mut sums[l * d..(l + 1) * d]);
        let wv = L::splat(wi);
        for q in (0..full).step_by(L::W) {
            let s = sum.as_mut_ptr().add(q);
            L::store(s, L::mul_add(L::load(row.as_ptr().add(q)), wv, L::load(s)));
        }
        for q in full..d {
            sum[q] += row[q] * wi;
        }
    }
}

/// See [`super::Kernel::sq_dist`].
///
/// # Safety
/// `L`'s instruction set is available and `a.len() == b.len()`.
#[inline(always)]
pub(super) unsafe fn sq_dist<L: Lanes>(a: &[L::T], b: &[L::T]) -> L::T {
    let full = a.len() / L::W * L::W;
    let mut acc = L::splat(L::T::zero());
    for q in (0..full).step_by(L::W) {
        let diff = L::sub(L::load(a.as_ptr().add(q)), L::load(b.as_ptr().add(q)));
        acc = L::mul_add(diff, diff, acc);
    }
    let tail: L::T = a[full..].iter().zip(&b[full..]).map(|(&u, &v)| (u - v) * (u - v)).sum();
    L::sum(acc) + tail
}

/// Defines `const $name: Routines<$t>` whose entry points run the generic routines with
/// `$lanes`, `MR = $mr` rows (`$mrw` against panels of one vector) and panels of `$nv` vectors,
/// compiled with `#[target_feature(enable = $feature)]`; k-means++ candidates also get the
/// narrower `$narrow` vectors (`$nmrw` rows at a time), which waste fewer lanes on a handful.
macro_rules! routines {
    ($name:ident, $lanes:ty, $narrow:ty, $t:ty, $mr:literal, $mrw:literal, $nmrw:literal, $nv:literal, $feature:literal) => {
        pub(super) const $name: super::Routines<$t> = {
            use super::lanes::{self, trials_entry};
            use super::{Listed, Packed};
            #[target_feature(enable = $feature)]
            unsafe fn nearest(x: &[$t], c: &Packed<$t>, labels: &mut [u32], values: &mut [$t], ahead: &[$t]) {
                lanes::nearest::<$lanes, $mr, $nv>(x, c, labels, values, ahead)
            }
            trials_entry!(trials, $feature, $t, $lanes, $mr, $mrw, $nv);
            trials_entry!(trials_narrow, $feature, $t, $narrow, $mr, $nmrw, $nv);
            #[target_feature(enable = $feature)]
            unsafe fn gather(x: &[$t], d: usize, rows: super::Rows<'_>, shift: Option<&[$t]>, out: &mut [$t]) {
                lanes::gather::<$lanes>(x, d, rows, shift, out)
            }
            #[target_feature(enable = $feature)]
            unsafe fn accumulate(x: &[$t], w: Option<&[$t]>, labels: &[u32], sums: &mut [$t], weights: &mut [f64]) {
                lanes::accumulate::<$lanes>(x, w, labels, sums, weights)
            }
            #[target_feature(enable = $feature)]
            unsafe fn sq_dist(a: &[$t], b: &[$t]) -> $t {
                lanes::sq_dist::<$lanes>(a, b)
            }
            let (wide, narrow) = (<$lanes as lanes::Lanes>::W, <$narrow as lanes::Lanes>::W);
            super::Routines {
                lanes: wide,
                panel: $nv * wide,
                nearest,
                trials: [
                    super::TrialsVariant { lanes: narrow, panel: narrow, run: trials_narrow },
                    super::TrialsVariant { lanes: wide, panel: $nv * wide, run: trials },
                ],
                gather,
                accumulate,
                sq_dist,
            }
        };
    };
}
pub(super) use routines;

/// Defines `$name`, an entry point of [`trials`] for `$lanes` with those block sizes, compiled
/// with `#[target_feature(enable = $feature)]` (for [`routines!`]).
macro_rules! trials_entry {
    ($name:ident, $feature:literal, $t:ty, $lanes:ty, $mr:literal, $mrw:literal, $nv:literal) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name(x: &[$t], c: &Packed<$t>, l: &Listed<'_, $t>, stride: usize, d: &mut [$t], p: &mut [f64]) {
            lanes::trials::<$lanes, $mr, $mrw, $nv>(x, c, l, stride, d, p)
        }
    };
}
pub(super) use trials_entry;
