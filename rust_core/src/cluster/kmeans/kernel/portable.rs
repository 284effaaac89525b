//! The portable instantiation of the kernel (any CPU, any `Real`): plain arrays of 8 values,
//! which the compiler vectorises as far as the baseline target allows.

use super::lanes::{self, Lanes};
use super::{Listed, Packed, Probe, Routines, Rows, TrialsVariant, SCREEN_ROWS};
use crate::Real;

/// 8 values of `T` in an array.
pub(super) struct Array8<T>(std::marker::PhantomData<T>);

const W: usize = 8;

impl<T: Real> Lanes for Array8<T> {
    type T = T;
    type V = [T; W];
    const W: usize = W;
    #[inline(always)]
    unsafe fn splat(v: T) -> [T; W] {
        [v; W]
    }
    #[inline(always)]
    unsafe fn load(p: *const T) -> [T; W] {
        // SAFETY: the callers in `lanes.rs` pass pointers valid for W reads.
        unsafe { p.cast::<[T; W]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut T, v: [T; W]) {
        // SAFETY: the callers in `lanes.rs` pass pointers valid for W writes.
        unsafe { p.cast::<[T; W]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn mul_add(a: [T; W], b: [T; W], c: [T; W]) -> [T; W] {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    unsafe fn sub(a: [T; W], b: [T; W]) -> [T; W] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    unsafe fn add(a: [T; W], b: [T; W]) -> [T; W] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn select_lt(a: [T; W], b: [T; W], x: [T; W], y: [T; W]) -> [T; W] {
        std::array::from_fn(|i| if a[i] < b[i] { x[i] } else { y[i] })
    }
    #[inline(always)]
    unsafe fn min_lane(v: [T; W]) -> T {
        v.into_iter().fold(T::infinity(), T::min)
    }
    #[inline(always)]
    unsafe fn eq_mask(a: [T; W], b: [T; W]) -> u64 {
        (0..W).fold(0, |mask, i| mask | u64::from(a[i] == b[i]) << i)
    }
    #[inline(always)]
    unsafe fn add_scaled_f64(acc: *mut f64, v: [T; W], w: f64) {
        for (i, v) in v.iter().enumerate() {
            // SAFETY: the callers in `lanes.rs` pass pointers valid for W reads and writes.
            unsafe { *acc.add(i) += w * v.to_f64_exact() };
        }
    }
    #[inline(always)]
    unsafe fn sum(v: [T; W]) -> T {
        v.iter().copied().sum()
    }
}

fn nearest<T: Real>(x: &[T], c: &Packed<T>, labels: &mut [u32], values: &mut [T], ahead: &[T]) {
    // SAFETY: the portable lanes need no instruction set; lengths are checked by `Kernel`.
    unsafe { lanes::nearest::<Array8<T>, 4, 2>(x, c, labels, values, ahead) }
}

fn trials<T: Real>(x: &[T], c: &Packed<T>, listed: &Listed<'_, T>, stride: usize, dists: &mut [T], pots: &mut [f64]) {
    // SAFETY: as in `nearest`.
    unsafe { lanes::trials::<Array8<T>, 4, 8, 2>(x, c, listed, stride, dists, pots) }
}

fn gather<T: Real>(x: &[T], d: usize, rows: Rows<'_>, shift: Option<&[T]>, out: &mut [T]) {
    // SAFETY: as in `nearest`.
    unsafe { lanes::gather::<Array8<T>>(x, d, rows, shift, out) }
}

fn accumulate<T: Real>(x: &[T], w: Option<&[T]>, labels: &[u32], sums: &mut [T], weights: &mut [f64]) {
    // SAFETY: as in `nearest`.
    unsafe { lanes::accumulate::<Array8<T>>(x, w, labels, sums, weights) }
}

fn sq_dist<T: Real>(a: &[T], b: &[T]) -> T {
    // SAFETY: as in `nearest`.
    unsafe { lanes::sq_dist::<Array8<T>>(a, b) }
}

/// The portable routines for `T`.
pub(super) fn routines<T: Real>() -> Routines<T> {
    let variant = TrialsVariant { lanes: W, panel: 2 * W, run: trials };
    Routines { lanes: W, panel: 2 * W, nearest, trials: [variant; 2], gather, accumulate, sq_dist }
}

/// See [`super::Kernel::screen`] (lengths checked there).
pub(super) fn screen(codes: &[u8], probe: &Probe, bias: &[f32], spread: &[f32], keep: &mut [u16]) {
    let (count, groups) = (probe.count, probe.groups);
    for ((keep, block), b) in keep.iter_mut().zip(codes.chunks_exact(groups * 4 * SCREEN_ROWS)).zip(0..) {
        *keep = 0;
        for l in 0..SCREEN_ROWS {
            let row = b * SCREEN_ROWS + l;
            let excluded = (0..count).all(|t| {
                let dot: i32 = (0..groups)
                    .map(|g| {
                        let w = probe.weights[g * count + t].to_le_bytes();
                        let a = &block[(g * SCREEN_ROWS + l) * 4..][..4];
                        (0..4).map(|j| i32::from(a[j]) * i32::from(w[j] as i8)).sum::<i32>()
                    })
                    .sum();
                bias[row] + probe.offset[t] + probe.scale[t] * dot as f32 + probe.slack[t] * spread[row] >= 0.0
            });
            *keep |= u16::from(!excluded) << l;
        }
    }
}
