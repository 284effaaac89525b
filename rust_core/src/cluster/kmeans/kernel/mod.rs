//! The distance kernel of k-means: `‖c‖² − 2 x·c` for blocks of rows against packed centres,
//! fused with the argmin, plus the small row routines the fit needs around it.
//!
//! The register-blocked code is written once (`lanes.rs`) over a vector abstraction and
//! instantiated for AVX-512F, AVX2+FMA and a portable fallback; [`Kernel::detect`] picks the
//! best one the CPU supports at run time.

// The only unsafe code of the crate: SIMD intrinsics behind run-time feature detection.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod lanes;
mod portable;

use std::any::Any;

use ndarray::ArrayView2;

use crate::Real;

/// The instruction sets the kernel is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

/// A kernel variant the running CPU supports. The field is private so that a `Kernel` for an
/// instruction set can only be made after detecting it: this is what makes the calls sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kernel {
    isa: Isa,
}

type NearestFn<T> = unsafe fn(&[T], &Packed<T>, &mut [u32], &mut [T], &[T]);
type TrialsFn<T> = unsafe fn(&[T], &Packed<T>, &Listed<'_, T>, usize, &mut [T], &mut [f64]);
type GatherFn<T> = unsafe fn(&[T], usize, Rows<'_>, Option<&[T]>, &mut [T]);
type AccumulateFn<T> = unsafe fn(&[T], Option<&[T]>, &[u32], &mut [T], &mut [f64]);

/// The entry points of one kernel variant for one element type.
#[derive(Clone, Copy)]
pub(super) struct Routines<T: 'static> {
    /// Vector width in elements.
    lanes: usize,
    /// Centres per packed panel.
    panel: usize,
    /// See [`Kernel::nearest`].
    nearest: NearestFn<T>,
    /// See [`Kernel::trials`]: a narrow variant, then the full width.
    trials: [TrialsVariant<T>; 2],
    /// See [`Kernel::gather`].
    gather: GatherFn<T>,
    /// See [`Kernel::accumulate`].
    accumulate: AccumulateFn<T>,
    /// See [`Kernel::sq_dist`].
    sq_dist: unsafe fn(&[T], &[T]) -> T,
}

/// One width of [`Kernel::trials`].
#[derive(Clone, Copy)]
pub(super) struct TrialsVariant<T: 'static> {
    /// Vector width in elements.
    lanes: usize,
    /// Candidates per packed panel.
    panel: usize,
    run: TrialsFn<T>,
}

impl Kernel {
    /// The fastest variant this CPU supports.
    pub(crate) fn detect() -> Self {
        Self::available()[0]
    }

    /// Every variant this CPU supports, fastest first (the portable one last).
    pub(crate) fn available() -> Vec<Self> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            // VL gives the narrow (ymm) k-means++ kernel all 32 vector registers.
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
                all.push(Kernel { isa: Isa::Avx512 });
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                all.push(Kernel { isa: Isa::Avx2 });
            }
        }
        all.push(Kernel { isa: Isa::Portable });
        all
    }

    /// The variant's name, for test messages.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    fn routines<T: Real>(self) -> Routines<T> {
        let table: Option<&dyn Any> = match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(if is::<T, f32>() { &avx512::F32 } else { &avx512::F64 }),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(if is::<T, f32>() { &avx2::F32 } else { &avx2::F64 }),
            Isa::Portable => None,
        };
        // A `Real` other than f32/f64 has no SIMD table and takes the portable code.
        table.and_then(|t| t.downcast_ref::<Routines<T>>()).copied().unwrap_or_else(portable::routines::<T>)
    }

    /// Packs the rows of `centres` (k × d) into panels for [`Kernel::nearest`].
    pub(crate) fn pack<T: Real>(self, centres: ArrayView2<'_, T>) -> Packed<T> {
        Packed::new(centres, self.routines::<T>().panel, self.routines::<T>().lanes, self)
    }

    /// For each row of `x` (row-major, `labels.len()` rows of `packed.d`), the nearest centre
    /// (the lowest index among equals) and its `‖c‖² − 2 x·c` (add `‖x‖²` for the squared distance).
    /// `ahead` (the memory the caller reads next) is prefetched into L2 meanwhile.
    pub(crate) fn nearest<T: Real>(
        self,
        x: &[T],
        packed: &Packed<T>,
        labels: &mut [u32],
        values: &mut [T],
        ahead: &[T],
    ) {
        assert_eq!(packed.kernel, self, "centres packed for another kernel");
        let routines = self.routines::<T>();
        assert!(packed.lanes == routines.lanes && packed.nr == routines.panel, "not packed by pack");
        assert!(x.len() == labels.len() * packed.d && values.len() == labels.len());
        // SAFETY: `self` was made by `available()`, so the CPU has the variant's instruction set;
        // the slice lengths were checked above.
        unsafe { (self.routines::<T>().nearest)(x, packed, labels, values, ahead) }
    }

    /// The variant of [`Kernel::trials`] for `count` candidates: the narrowest that holds them.
    fn trials_variant<T: Real>(self, count: usize) -> TrialsVariant<T> {
        let [narrow, wide] = self.routines::<T>().trials;
        if count <= narrow.lanes {
            narrow
        } else {
            wide
        }
    }

    /// Packs k-means++ candidates (a handful of rows) for [`Kernel::trials`].
    pub(crate) fn pack_trials<T: Real>(self, candidates: ArrayView2<'_, T>) -> Packed<T> {
        let variant = self.trials_variant::<T>(candidates.nrows());
        Packed::new(candidates, variant.panel, variant.lanes, self)
    }

    /// The row stride [`Kernel::trials`] needs for up to `count` candidates.
    pub(crate) fn trials_stride<T: Real>(self, count: usize) -> usize {
        count.div_ceil(self.trials_variant::<T>(count).lanes) * self.trials_variant::<T>(count).lanes
    }

    /// The k-means++ step for the rows of `x` (row-major, `packed.d` columns), row `r` being row
    /// `listed.rows[r]` of `listed`: writes its squared distances to the candidates
    /// (`‖x‖² + ‖c‖² − 2 x·c`, at least 0) to row `r` of `dists` (`stride` values a row; columns
    /// past `packed.k` hold padding) and adds `w · min(closest, distance)` to `pots` per candidate.
    /// A handful of candidates takes narrow vectors (fewer idle lanes) and twice as many rows
    /// at a time, so that enough independent FMA chains hide their latency.
    pub(crate) fn trials<T: Real>(
        self,
        x: &[T],
        packed: &Packed<T>,
        listed: &Listed<'_, T>,
        stride: usize,
        dists: &mut [T],
        pots: &mut [f64],
    ) {
        assert_eq!(packed.kernel, self, "candidates packed for another kernel");
        let variant = self.trials_variant::<T>(packed.k);
        assert!(packed.lanes == variant.lanes && packed.nr == variant.panel, "not packed by pack_trials");
        let n = listed.norms.len();
        assert!(listed.closest.len() == n && listed.weights.is_none_or(|w| w.len() == n));
        assert!(x.len() == listed.rows.len() * packed.d && listed.rows.iter().all(|&r| (r as usize) < n));
        let rows = listed.rows.len();
        assert!(stride >= packed.stride() && dists.len() == rows * stride && pots.len() >= packed.stride());
        // SAFETY: as in `nearest`; the lengths and listed rows were checked above.
        unsafe { (variant.run)(x, packed, listed, stride, dists, pots) }
    }

    /// Copies `rows` of `x` (row-major, `d` columns) into `out`, minus `shift` if given: one
    /// read of each row, prefetched ahead when the rows are a scattered list.
    pub(crate) fn gather<T: Real>(self, x: &[T], d: usize, rows: Rows<'_>, shift: Option<&[T]>, out: &mut [T]) {
        // Only the first rows of `then` are prefetched.
        let rows = match rows {
            Rows::List { rows, then } => Rows::List { rows, then: &then[..then.len().min(lanes::PREFETCH_ROWS)] },
            range => range,
        };
        let (len, last) = match rows {
            Rows::Range { start, len } => (len, start + len),
            Rows::List { rows, then } => {
                (rows.len(), rows.iter().chain(then).map(|&i| i as usize + 1).max().unwrap_or(0))
            }
        };
        assert!(last * d <= x.len() && out.len() == len * d && shift.is_none_or(|m| m.len() == d));
        // SAFETY: as in `nearest`; every row read lies in `x` and `out` holds them all (checked above).
        unsafe { (self.routines::<T>().gather)(x, d, rows, shift, out) }
    }

    /// Adds `w_i · x_i` to row `labels[i]` of `sums` (k × d) and `w_i` to `weights[labels[i]]`
    /// for every row `i` of `x` (w = 1 without weights).
    pub(crate) fn accumulate<T: Real>(
        self,
        x: &[T],
        w: Option<&[T]>,
        labels: &[u32],
        sums: &mut [T],
        weights: &mut [f64],
    ) {
        let d = sums.len() / weights.len().max(1);
        assert!(x.len() == labels.len() * d && w.is_none_or(|w| w.len() == labels.len()));
        assert!(labels.iter().all(|&l| (l as usize) < weights.len()));
        // SAFETY: as in `nearest`; labels index rows of `sums` and `weights` (checked above).
        unsafe { (self.routines::<T>().accumulate)(x, w, labels, sums, weights) }
    }

    /// The screen of k-means++ over blocks of an 8-bit copy of the rows: bit `l` of `keep[b]` is
    /// set unless, for every candidate `t` of `probe`, row `l` of block `b` gives
    /// `bias + offset_t + scale_t · dot_t + slack_t · spread ≥ 0` (`dot_t`: the exact integer dot
    /// product of the row's codes with the candidate's weights). A comparison with NaN keeps
    /// the row. `codes` holds the blocks ([`SCREEN_ROWS`] rows, `probe.groups` groups of 4
    /// codes each, laid out group by group, row by row), `bias` and `spread` a value per row.
    pub(crate) fn screen(self, codes: &[u8], probe: &Probe, bias: &[f32], spread: &[f32], keep: &mut [u16]) {
        let blocks = keep.len();
        assert!(codes.len() == blocks * probe.groups * 4 * SCREEN_ROWS);
        assert!(bias.len() == blocks * SCREEN_ROWS && spread.len() == bias.len());
        assert!(probe.weights.len() == probe.groups * probe.count && probe.offset.len() == probe.count);
        assert!(probe.scale.len() == probe.count && probe.slack.len() == probe.count);
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 && std::is_x86_feature_detected!("avx512vnni") {
            // SAFETY: AVX-512F was detected when `self` was made and VNNI just now; the lengths
            // were checked above.
            return unsafe { avx512::screen(codes, probe, bias, spread, keep) };
        }
        portable::screen(codes, probe, bias, spread, keep);
    }

    /// Whether [`Kernel::screen`] runs on vector integer dot products (else it is plain code,
    /// slower than reading the rows it would spare).
    pub(crate) fn screens_fast(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            return std::is_x86_feature_detected!("avx512vnni");
        }
        false
    }

    /// `‖a − b‖²` (accumulated in `T`).
    pub(crate) fn sq_dist<T: Real>(self, a: &[T], b: &[T]) -> T {
        assert_eq!(a.len(), b.len());
        // SAFETY: as in `nearest`.
        unsafe { (self.routines::<T>().sq_dist)(a, b) }
    }
}

/// What [`Kernel::trials`] reads per row of a k-means++ pass (the rows of one chunk).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listed<'a, T> {
    /// The rows whose distances are computed, in the order they were gathered.
    pub(crate) rows: &'a [u32],
    /// Per row: squared norm.
    pub(crate) norms: &'a [T],
    /// Per row: squared distance to the nearest centre so far.
    pub(crate) closest: &'a [T],
    /// Per row: weight (1 if `None`).
    pub(crate) weights: Option<&'a [T]>,
}

/// Rows per block of the 8-bit copy that [`Kernel::screen`] reads: one i32 lane each in a zmm.
pub(crate) const SCREEN_ROWS: usize = 16;

/// The candidates of a k-means++ step as [`Kernel::screen`] reads them.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Number of candidates.
    pub(crate) count: usize,
    /// Groups of 4 columns of the codes.
    pub(crate) groups: usize,
    /// Per group, per candidate: its 4 signed 8-bit weights for those columns, in one i32.
    pub(crate) weights: Vec<i32>,
    /// Per candidate: the terms of the screen's test (see [`Kernel::screen`]).
    pub(crate) offset: Vec<f32>,
    pub(crate) scale: Vec<f32>,
    pub(crate) slack: Vec<f32>,
}

/// Which rows of a matrix [`Kernel::gather`] copies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rows<'a> {
    /// `len` consecutive rows from `start`.
    Range { start: usize, len: usize },
    /// These rows, in this order; `then` lists the rows the caller gathers next, which are
    /// prefetched as the list runs out, so that the memory stays busy across calls.
    List { rows: &'a [u32], then: &'a [u32] },
}

fn is<T: 'static, U: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
}

/// Centres (or candidates) laid out for the micro-kernel, times −2: panels of `nr` centres, each
/// panel `d × nr` with the `nr` values of one feature contiguous, 64-byte aligned; norms (of the
/// centres themselves) padded with +∞ so that padding columns never win an argmin.
#[derive(Debug, Clone)]
pub(crate) struct Packed<T> {
    buf: Vec<T>,
    offset: usize,
    norms: Vec<T>,
    /// Number of centres.
    pub(crate) k: usize,
    /// Number of features.
    pub(crate) d: usize,
    nr: usize,
    /// Vector width of the kernel, in elements.
    lanes: usize,
    kernel: Kernel,
}

impl<T: Real> Packed<T> {
    fn new(centres: ArrayView2<'_, T>, nr: usize, lanes: usize, kernel: Kernel) -> Self {
        let (k, d) = centres.dim();
        let panels = k.div_ceil(nr);
        let len = panels * nr * d;
        let align = 64 / std::mem::size_of::<T>();
        let mut buf = vec![T::zero(); len + align];
        let offset = buf.as_ptr().align_offset(64).min(align);
        let data = &mut buf[offset..offset + len];
        let mut norms = vec![T::infinity(); panels * nr];
        let minus_two = T::from_f64_lossy(-2.0);
        for (j, c) in centres.outer_iter().enumerate() {
            let (p, lane) = (j / nr, j % nr);
            // −2c, so that the kernel's dot products are `−2 x·c` exactly (a power of two scales
            // every rounding alike) and `‖c‖² − 2 x·c` is an add, not an FMA beside the others.
            for (q, &v) in c.iter().enumerate() {
                data[p * d * nr + q * nr + lane] = minus_two * v;
            }
            norms[j] = c.iter().map(|&v| v * v).sum();
        }
        Packed { buf, offset, norms, k, d, nr, lanes, kernel }
    }

    /// The packed panels (`panels × d × nr`).
    fn data(&self) -> &[T] {
        &self.buf[self.offset..self.offset + self.panels() * self.nr * self.d]
    }

    /// Number of panels.
    fn panels(&self) -> usize {
        self.k.div_ceil(self.nr)
    }

    /// Smallest row stride of [`Kernel::trials`]' output: k rounded up to whole vectors.
    pub(crate) fn stride(&self) -> usize {
        self.k.div_ceil(self.lanes) * self.lanes
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    use super::*;

    fn random<T: Real>(rows: usize, cols: usize, seed: u64) -> Array2<T> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| T::from_f64_lossy(rng.random_range(-3.0..3.0)))
    }

    /// Every variant agrees with a direct computation, for shapes around the block sizes.
    fn variants_agree<T: Real>(tol: f64) {
        let shapes =
            [(1, 1, 1), (5, 3, 2), (13, 7, 17), (37, 64, 64), (50, 5, 33), (25, 100, 9), (49, 17, 40), (70, 64, 6)];
        for &(n, d, k) in &shapes {
            let x = random::<T>(n, d, (n * d * k) as u64);
            let c = random::<T>(k, d, 7 + k as u64);
            let xs = x.as_slice().unwrap();
            for kernel in Kernel::available() {
                let packed = kernel.pack(c.view());
                let (mut labels, mut values) = (vec![0; n], vec![T::zero(); n]);
                kernel.nearest(xs, &packed, &mut labels, &mut values, xs);
                let name = kernel.name();
                let exact = |i: usize, j: usize| -> f64 {
                    (0..d).map(|q| (x[[i, q]].to_f64_exact() - c[[j, q]].to_f64_exact()).powi(2)).sum()
                };
                let norm = |i: usize| -> f64 { x.row(i).iter().map(|v| v.to_f64_exact().powi(2)).sum() };
                let scale =
                    |i: usize| norm(i) + 1.0 + c.outer_iter().map(|r| r.dot(&r).to_f64_exact()).fold(0.0, f64::max);
                for i in 0..n {
                    let best = (0..k).map(|j| exact(i, j)).fold(f64::INFINITY, f64::min);
                    let (value, label) = (norm(i) + values[i].to_f64_exact(), labels[i] as usize);
                    assert!((value - best).abs() <= tol * scale(i), "{name} value row {i}");
                    assert!(exact(i, label) - best <= 2.0 * tol * scale(i), "{name} label row {i}");
                    for j in 0..k {
                        let sq = kernel.sq_dist(x.row(i).as_slice().unwrap(), c.row(j).as_slice().unwrap());
                        assert!((sq.to_f64_exact() - exact(i, j)).abs() <= tol * scale(i), "{name} sq_dist");
                    }
                }
                // k-means++ candidates: every other row, listed backwards, weighted.
                let rows: Vec<u32> = (0..n as u32).rev().step_by(2).collect();
                let mut gathered = vec![T::zero(); rows.len() * d];
                kernel.gather(xs, d, Rows::List { rows: &rows, then: &[] }, None, &mut gathered);
                let norms: Vec<T> = (0..n).map(|i| T::from_f64_lossy(norm(i))).collect();
                let closest: Vec<T> = (0..n).map(|i| T::from_f64_lossy(0.5 * norm(i) + i as f64)).collect();
                let w: Vec<T> = (0..n).map(|i| T::from_f64_lossy(0.5 + i as f64)).collect();
                let listed = Listed { rows: &rows, norms: &norms, closest: &closest, weights: Some(&w) };
                let trials = kernel.pack_trials(c.view());
                let stride = kernel.trials_stride::<T>(k);
                let (mut dists, mut pots) = (vec![T::zero(); rows.len() * stride], vec![0.0; stride]);
                kernel.trials(&gathered, &trials, &listed, stride, &mut dists, &mut pots);
                for (r, &i) in rows.iter().enumerate() {
                    let i = i as usize;
                    for j in 0..k {
                        let got = dists[r * stride + j].to_f64_exact();
                        assert!((got - exact(i, j)).abs() <= tol * scale(i), "{name} trial dist ({i}, {j})");
                    }
                }
                for (j, &pot) in pots.iter().enumerate().take(k) {
                    let wmin = |i: usize| w[i].to_f64_exact() * exact(i, j).min(closest[i].to_f64_exact());
                    let want: f64 = rows.iter().map(|&i| wmin(i as usize)).sum();
                    let bound: f64 = rows.iter().map(|&i| w[i as usize].to_f64_exact() * scale(i as usize)).sum();
                    assert!((pot - want).abs() <= tol * bound, "{name} potential {j}");
                }
                let (mut sums, mut weights) = (vec![T::zero(); k * d], vec![0.0; k]);
                kernel.accumulate(xs, Some(&w), &labels, &mut sums, &mut weights);
                for j in 0..k {
                    let rows: Vec<usize> = (0..n).filter(|&i| labels[i] as usize == j).collect();
                    let wsum: f64 = rows.iter().map(|&i| w[i].to_f64_exact()).sum();
                    assert!((weights[j] - wsum).abs() <= 1e-9 * (1.0 + wsum));
                    for q in 0..d {
                        let s: f64 = rows.iter().map(|&i| w[i].to_f64_exact() * x[[i, q]].to_f64_exact()).sum();
                        assert!((sums[j * d + q].to_f64_exact() - s).abs() <= tol * (1.0 + wsum) * 10.0);
                    }
                }
            }
        }
    }

    #[test]
    fn variants_agree_f32() {
        variants_agree::<f32>(1e-5);
    }

    #[test]
    fn variants_agree_f64() {
        variants_agree::<f64>(1e-12);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Every variant labels like the portable one, up to near-ties.
        #[test]
        fn variants_agree_with_portable(n in 1usize..40, d in 1usize..70, k in 1usize..140, seed in 0u64..1000) {
            let x = random::<f32>(n, d, seed);
            let c = random::<f32>(k, d, seed + 1);
            let portable = Kernel { isa: Isa::Portable };
            let run = |kernel: Kernel| {
                let (mut labels, mut values) = (vec![0; n], vec![0.0; n]);
                kernel.nearest(x.as_slice().unwrap(), &kernel.pack(c.view()), &mut labels, &mut values, &[]);
                (labels, values)
            };
            let (labels, values) = run(portable);
            // `‖c_j‖² − 2 x_i·c_j`, the value `nearest` minimises.
            let value = |i: usize, j: usize| c.row(j).dot(&c.row(j)) - 2.0 * x.row(i).dot(&c.row(j));
            for kernel in Kernel::available() {
                let (l, v) = run(kernel);
                for i in 0..n {
                    let tol = 1e-4 * (1.0 + values[i].abs() + 9.0 * d as f32);
                    let chosen = value(i, l[i] as usize);
                    proptest::prop_assert!((v[i] - values[i]).abs() <= tol, "{} row {i}", kernel.name());
                    proptest::prop_assert!(l[i] == labels[i] || chosen - values[i] <= tol, "{} row {i}", kernel.name());
                }
            }
        }
    }

    /// Gathering rows (a range or a list, shifted or not) reads exactly `x − shift`, rounded once.
    #[test]
    fn gather_copies_rows_minus_the_shift() {
        for d in [1, 7, 16, 33, 64] {
            let x = random::<f32>(40, d, d as u64);
            let shift: Vec<f32> = (0..d).map(|q| 0.25 * q as f32 - 1.0).collect();
            let xs = x.as_slice().unwrap();
            let list = [39u32, 0, 17, 17, 5];
            for kernel in Kernel::available() {
                for shift in [None, Some(shift.as_slice())] {
                    let x = &x;
                    let expect = |i: usize| (0..d).map(move |q| x[[i, q]] - shift.map_or(0.0, |m| m[q]));
                    let mut out = vec![f32::NAN; list.len() * d];
                    kernel.gather(xs, d, Rows::List { rows: &list[..3], then: &list[3..] }, shift, &mut out[..3 * d]);
                    kernel.gather(xs, d, Rows::List { rows: &list[3..], then: &[] }, shift, &mut out[3 * d..]);
                    let want: Vec<f32> = list.iter().flat_map(|&i| expect(i as usize)).collect();
                    assert_eq!(out, want, "{} list d={d}", kernel.name());
                    let mut out = vec![f32::NAN; 9 * d];
                    kernel.gather(xs, d, Rows::Range { start: 30, len: 9 }, shift, &mut out);
                    let want: Vec<f32> = (30..39).flat_map(expect).collect();
                    assert_eq!(out, want, "{} range d={d}", kernel.name());
                }
            }
        }
    }

    #[test]
    fn ties_pick_the_lowest_index() {
        for kernel in Kernel::available() {
            let c = Array2::<f32>::zeros((40, 3));
            let packed = kernel.pack(c.view());
            let (mut labels, mut values) = (vec![9; 2], vec![1.0; 2]);
            kernel.nearest(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], &packed, &mut labels, &mut values, &[]);
            assert_eq!(labels, [0, 0], "{}", kernel.name());
        }
    }
}
