//! Jobs spread over the workers of a Redis queue ([`crate::queue`]).
//!
//! Each job is a plan over shards of the data that a coordinator drives step by step; the
//! same plan also runs in process, so a fit on a cluster can be checked against a local one.

pub mod kmeans;
