//! k-means with scikit-learn's semantics on a fused, tiled, SIMD distance kernel.
