//! Jobs spread over the workers of a Redis queue ([`crate::queue`]).
//!
//! Each job is a plan over shards of the data that a coordinator drives step by step; the
//! same plan also runs in process, so a fit on a cluster can be checked against a local one.
//! The data a job keeps in Redis expires unless its coordinator renews it ([`KeptKeys`]).

mod kept_keys;
pub mod kmeans;

pub use kept_keys::{KeptKeys, DATA_TTL};
