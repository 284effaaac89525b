//! Shared test harness.
pub mod proxy;
pub mod redis;
