//! AVX-512F instantiation of the kernel: 6 rows × 64 centres (f32) or 32 centres (f64) in
//! 24 of the 32 zmm registers.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::lanes::{routines, Lanes};

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
