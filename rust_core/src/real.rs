//! The floating-point types the engine computes in (f32 and f64).

use std::fmt::{Debug, Display};
use std::iter::Sum;

/// A float the engine computes in: `f32` or `f64`.
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::NumAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// Widens to f64 (exact).
    fn to_f64_exact(self) -> f64;
    /// Narrows from f64 (rounds to nearest for f32).
    fn from_f64_lossy(v: f64) -> Self;
}

impl Real for f32 {
    fn to_f64_exact(self) -> f64 {
        f64::from(self)
    }
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn to_f64_exact(self) -> f64 {
        self
    }
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
}
