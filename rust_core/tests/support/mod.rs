//! Shared test harness.
pub mod cli;
pub mod proxy;
pub mod redis;
