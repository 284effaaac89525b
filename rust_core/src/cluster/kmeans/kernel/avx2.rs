//! AVX2 + FMA instantiation of the kernel: 6 rows × 16 centres (f32) or 8 centres (f64) in
//! 12 of the 16 ymm registers.

#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::lanes::{routines, Lanes};

/// 8 × f32 in a ymm register.
pub(super) struct F32x8;

// SAFETY (all impls in this file): only called from the `avx2,fma` entry points below, which the
// dispatcher calls only after detecting AVX2 and FMA; pointers are valid for W elements by the
// callers' contracts in `lanes.rs`.
impl Lanes for F32x8 {
    type T = f32;
    type V = __m256;
    const W: usize = 8;
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn mul_add(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn select_lt(a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
        _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b))
    }
    #[inline(always)]
    unsafe fn min_lane(v: __m256) -> f32 {
        let mut vs = [0f32; 8];
        _mm256_storeu_ps(vs.as_mut_ptr(), v);
        vs.into_iter().fold(f32::INFINITY, f32::min)
    }
    #[inline(always)]
    unsafe fn eq_mask(a: __m256, b: __m256) -> u64 {
        // The sign bits of the lanes: 1 where equal.
        u64::from(_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(a, b)) as u32)
    }
    #[inline(always)]
    unsafe fn add_scaled_f64(acc: *mut f64, v: __m256, w: f64) {
        let w = _mm256_set1_pd(w);
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
        _mm256_storeu_pd(acc, _mm256_add_pd(_mm256_loadu_pd(acc), _mm256_mul_pd(w, lo)));
        _mm256_storeu_pd(acc.add(4), _mm256_add_pd(_mm256_loadu_pd(acc.add(4)), _mm256_mul_pd(w, hi)));
    }
    #[inline(always)]
    unsafe fn sum(v: __m256) -> f32 {
        let mut vs = [0f32; 8];
        _mm256_storeu_ps(vs.as_mut_ptr(), v);
        vs.iter().sum()
    }
}

/// 4 × f64 in a ymm register.
pub(super) struct F64x4;

impl Lanes for F64x4 {
    type T = f64;
    type V = __m256d;
    const W: usize = 4;
    #[inline(always)]
    unsafe fn splat(v: f64) -> __m256d {
        _mm256_set1_pd(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> __m256d {
        _mm256_loadu_pd(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f64, v: __m256d) {
        _mm256_storeu_pd(p, v)
    }
    #[inline(always)]
    unsafe fn mul_add(a: __m256d, b: __m256d, c: __m256d) -> __m256d {
        _mm256_fmadd_pd(a, b, c)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256d, b: __m256d) -> __m256d {
        _mm256_sub_pd(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: __m256d, b: __m256d) -> __m256d {
        _mm256_add_pd(a, b)
    }
    #[inline(always)]
    unsafe fn select_lt(a: __m256d, b: __m256d, x: __m256d, y: __m256d) -> __m256d {
        _mm256_blendv_pd(y, x, _mm256_cmp_pd::<_CMP_LT_OQ>(a, b))
    }
    #[inline(always)]
    unsafe fn min_lane(v: __m256d) -> f64 {
        let mut vs = [0f64; 4];
        _mm256_storeu_pd(vs.as_mut_ptr(), v);
        vs.into_iter().fold(f64::INFINITY, f64::min)
    }
    #[inline(always)]
    unsafe fn eq_mask(a: __m256d, b: __m256d) -> u64 {
        // The sign bits of the lanes: 1 where equal.
        u64::from(_mm256_movemask_pd(_mm256_cmp_pd::<_CMP_EQ_OQ>(a, b)) as u32)
    }
    #[inline(always)]
    unsafe fn add_scaled_f64(acc: *mut f64, v: __m256d, w: f64) {
        _mm256_storeu_pd(acc, _mm256_add_pd(_mm256_loadu_pd(acc), _mm256_mul_pd(_mm256_set1_pd(w), v)));
    }
    #[inline(always)]
    unsafe fn sum(v: __m256d) -> f64 {
        let mut vs = [0f64; 4];
        _mm256_storeu_pd(vs.as_mut_ptr(), v);
        vs.iter().sum()
    }
}

routines!(F32, F32x8, F32x8, f32, 6, 12, 12, 2, "avx2,fma");
routines!(F64, F64x4, F64x4, f64, 6, 12, 12, 2, "avx2,fma");
