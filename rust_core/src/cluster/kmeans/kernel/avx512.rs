//! AVX-512F instantiation of the kernel: 6 rows × 64 centres (f32) or 32 centres (f64) in
//! 24 of the 32 zmm registers.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::lanes::{routines, Lanes};
use super::{Probe, SCREEN_ROWS};

/// 16 × f32 in a zmm register.
pub(super) struct F32x16;

// SAFETY (all impls in this file): only called from the `avx512f` entry points below, which the
// dispatcher calls only after detecting AVX-512F; pointers are valid for W elements by the
// callers' contracts in `lanes.rs`.
impl Lanes for F32x16 {
    type T = f32;
    type V = __m512;
    const W: usize = 16;
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn mul_add(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn select_lt(a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), y, x)
    }
    #[inline(always)]
    unsafe fn min_lane(v: __m512) -> f32 {
        _mm512_reduce_min_ps(v)
    }
    #[inline(always)]
    unsafe fn eq_mask(a: __m512, b: __m512) -> u64 {
        u64::from(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b))
    }
    #[inline(always)]
    unsafe fn add_scaled_f64(acc: *mut f64, v: __m512, w: f64) {
        let w = _mm512_set1_pd(w);
        let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))));
        _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), _mm512_mul_pd(w, lo)));
        _mm512_storeu_pd(acc.add(8), _mm512_add_pd(_mm512_loadu_pd(acc.add(8)), _mm512_mul_pd(w, hi)));
    }
    #[inline(always)]
    unsafe fn sum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
}

/// 8 × f64 in a zmm register.
pub(super) struct F64x8;

impl Lanes for F64x8 {
    type T = f64;
    type V = __m512d;
    const W: usize = 8;
    #[inline(always)]
    unsafe fn splat(v: f64) -> __m512d {
        _mm512_set1_pd(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> __m512d {
        _mm512_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f64, v: __m512d) {
        _mm512_storeu_pd(p, v)
    }
    #[inline(always)]
    unsafe fn mul_add(a: __m512d, b: __m512d, c: __m512d) -> __m512d {
        _mm512_fmadd_pd(a, b, c)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512d, b: __m512d) -> __m512d {
        _mm512_sub_pd(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: __m512d, b: __m512d) -> __m512d {
        _mm512_add_pd(a, b)
    }
    #[inline(always)]
    unsafe fn select_lt(a: __m512d, b: __m512d, x: __m512d, y: __m512d) -> __m512d {
        _mm512_mask_blend_pd(_mm512_cmp_pd_mask::<_CMP_LT_OQ>(a, b), y, x)
    }
    #[inline(always)]
    unsafe fn min_lane(v: __m512d) -> f64 {
        _mm512_reduce_min_pd(v)
    }
    #[inline(always)]
    unsafe fn eq_mask(a: __m512d, b: __m512d) -> u64 {
        u64::from(_mm512_cmp_pd_mask::<_CMP_EQ_OQ>(a, b))
    }
    #[inline(always)]
    unsafe fn add_scaled_f64(acc: *mut f64, v: __m512d, w: f64) {
        _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), _mm512_mul_pd(_mm512_set1_pd(w), v)));
    }
    #[inline(always)]
    unsafe fn sum(v: __m512d) -> f64 {
        _mm512_reduce_add_pd(v)
    }
}

routines!(F32, F32x16, super::avx2::F32x8, f32, 6, 12, 12, 4, "avx512f,avx512vl,avx2,fma");
routines!(F64, F64x8, super::avx2::F64x4, f64, 6, 12, 12, 4, "avx512f,avx512vl,avx2,fma");

/// See [`super::Kernel::screen`]: per block, the candidates in groups of up to 8, each with its
/// 16 integer dot products (a row per lane) in one zmm, 4 codes a lane per `vpdpbusd`.
///
/// # Safety
/// The CPU has AVX-512F and VNNI; the lengths were checked by [`super::Kernel::screen`].
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn screen(codes: &[u8], probe: &Probe, bias: &[f32], spread: &[f32], keep: &mut [u16]) {
    let block_len = probe.groups * 4 * SCREEN_ROWS;
    for (b, keep) in keep.iter_mut().enumerate() {
        let block = codes.as_ptr().add(b * block_len);
        // The blocks stream from memory: ask for the one after next meanwhile.
        let ahead = codes.as_ptr().wrapping_add((b + 2) * block_len);
        for line in (0..block_len).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
        }
        let bias = _mm512_loadu_ps(bias.as_ptr().add(b * SCREEN_ROWS));
        let spread = _mm512_loadu_ps(spread.as_ptr().add(b * SCREEN_ROWS));
        let mut excluded: u16 = u16::MAX;
        for t0 in (0..probe.count).step_by(8) {
            let args = (block, probe, t0, bias, spread);
            excluded &= match probe.count - t0 {
                1 => screen_block::<1>(args),
                2 => screen_block::<2>(args),
                3 => screen_block::<3>(args),
                4 => screen_block::<4>(args),
                5 => screen_block::<5>(args),
                6 => screen_block::<6>(args),
                7 => screen_block::<7>(args),
                _ => screen_block::<8>(args),
            };
        }
        *keep = !excluded;
    }
}

/// The rows of one block that candidates `t0..t0 + NC` all exclude (a bit per row).
///
/// # Safety
/// As [`screen`]: `block` holds `probe.groups` groups of 64 codes, `t0 + NC ≤ probe.count`.
#[inline(always)]
unsafe fn screen_block<const NC: usize>(
    (block, probe, t0, bias, spread): (*const u8, &Probe, usize, __m512, __m512),
) -> u16 {
    // Two sums per candidate (even and odd groups): twice the independent chains, so that the
    // latency of `vpdpbusd` hides behind its throughput.
    let mut acc = [[_mm512_setzero_si512(); 2]; NC];
    let (weights, groups) = (probe.weights.as_ptr().add(t0), probe.groups);
    let group = |g: usize| _mm512_loadu_si512(block.add(g * 4 * SCREEN_ROWS).cast());
    for g in (0..groups).step_by(2) {
        let (even, w) = (group(g), weights.add(g * probe.count));
        // An odd count leaves the last group without a partner.
        let (odd, w_odd) = if g + 1 < groups { (group(g + 1), w.add(probe.count)) } else { (even, w) };
        for (t, acc) in acc.iter_mut().enumerate() {
            acc[0] = _mm512_dpbusd_epi32(acc[0], even, _mm512_set1_epi32(*w.add(t)));
            if g + 1 < groups {
                acc[1] = _mm512_dpbusd_epi32(acc[1], odd, _mm512_set1_epi32(*w_odd.add(t)));
            }
        }
    }
    let mut excluded = u16::MAX;
    for (t, acc) in acc.iter().enumerate() {
        let (t, acc) = (t0 + t, _mm512_add_epi32(acc[0], acc[1]));
        let base = _mm512_add_ps(bias, _mm512_set1_ps(*probe.offset.get_unchecked(t)));
        let base = _mm512_fmadd_ps(_mm512_set1_ps(*probe.slack.get_unchecked(t)), spread, base);
        let val = _mm512_fmadd_ps(_mm512_set1_ps(*probe.scale.get_unchecked(t)), _mm512_cvtepi32_ps(acc), base);
        excluded &= _mm512_cmp_ps_mask::<_CMP_GE_OQ>(val, _mm512_setzero_ps());
    }
    excluded
}
