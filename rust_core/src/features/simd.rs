//! Runtime choice of instruction set for the feature kernels, the one place in the features
//! that holds `unsafe`.
//!
//! A [`Kernel`] is an `#[inline(always)]` body run through [`dispatch`], which inlines it into a
//! function compiled for AVX-512 or AVX2 when the CPU has them, so that LLVM vectorises its
//! loops with wider registers; the portable build (SSE2 on x86-64) runs it otherwise. Only
//! what is inlined gets the wider instructions, hence `#[inline(always)]` down the hot path.
//! The results are the same bit for bit: Rust never contracts `a * b + c` into an FMA, and
//! every vector `+ − × ÷ sqrt` and conversion rounds exactly as its scalar form.
#![allow(unsafe_code)]

/// A hot loop with its inputs, compiled once per instruction set.
pub(crate) trait Kernel {
    /// What the kernel returns.
    type Output;

    /// The body; implementations must be `#[inline(always)]` (a closure would not be inlined
    /// into the wider builds, whatever its size).
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the widest instruction set this CPU supports.
#[inline]
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: every feature `avx512` enables was detected on this CPU (`has_avx512`).
            return unsafe { avx512(kernel) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: every feature `avx2` enables was detected on this CPU just above.
            return unsafe { avx2(kernel) };
        }
    }
    kernel.run()
}

/// Whether this CPU has every feature [`avx512`] is compiled for.
#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("popcnt")
}

/// `kernel` compiled for x86-64 with AVX-512 (F, BW, DQ, VL).
///
/// # Safety
/// The CPU must support every feature enabled here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,popcnt")]
unsafe fn avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}

/// `kernel` compiled for x86-64 with AVX2.
///
/// # Safety
/// The CPU must support every feature enabled here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}

/// A [`Kernel`] whose body has a faster form with fused multiply-add.
pub(crate) trait FusedKernel {
    /// What the kernel returns.
    type Output;

    /// The body; `FMA` is true only where `f64::mul_add` compiles to one instruction (elsewhere
    /// it is a call to libm's `fma`: exact, but slow). Implementations must be `#[inline(always)]`.
    fn run<const FMA: bool>(self) -> Self::Output;
}

/// A [`FusedKernel`] run with `FMA` set.
struct Fused<K, const FMA: bool>(K);

impl<K: FusedKernel, const FMA: bool> Kernel for Fused<K, FMA> {
    type Output = K::Output;

    #[inline(always)]
    fn run(self) -> K::Output {
        self.0.run::<FMA>()
    }
}

/// Runs `kernel` as [`dispatch`] does, with `FMA` true in the AVX-512 build (AVX-512F implies
/// FMA) and false in the others.
#[inline]
pub(crate) fn dispatch_fused<K: FusedKernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: every feature `avx512` enables was detected on this CPU (`has_avx512`).
            return unsafe { avx512(Fused::<K, true>(kernel)) };
        }
    }
    dispatch(Fused::<K, false>(kernel))
}
