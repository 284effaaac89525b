//! What the coordinator asks of a shard, and what a shard answers. Matrices in the requests
//! are generic: arrays in process, references to Redis keys on the wire. Replies carry f64
//! (values of `T` widened exactly), which cross JSON as their bytes (base64), so
//! without rounding.

use serde::{Deserialize, Serialize};

/// Centres (or candidates) with the version that names them: a shard that holds labels or
/// distances computed from a version does not compute them again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<M> {
    /// Unique within one fit.
    pub version: u64,
    /// The matrix, `rows × d`, in the centred space of the data.
    pub centres: M,
}

/// One step of the plan, run on every shard it is sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardOp<M> {
    /// Load the shard (checking it is finite) and sum its columns.
    Load,
    /// Subtract the global column mean (values of `T`, widened) and return the column sums
    /// of the centred values and of their squares.
    Centre {
        /// The mean.
        mean: Vec<f64>,
    },
    /// The centred rows with these global indices (those in this shard).
    Rows {
        /// Global row indices.
        indices: Vec<usize>,
    },
    /// k-means||: bring each row's distance to its nearest candidate up to date (candidates
    /// are added in `batches`, given as cumulative counts) and return the shard's cost; with
    /// `counts`, also how many rows each candidate is nearest to.
    InitCost {
        /// Every candidate so far.
        candidates: Versioned<M>,
        /// Cumulative candidate counts of the batches they were added in.
        batches: Vec<usize>,
        /// Whether to count the rows nearest to each candidate.
        counts: bool,
    },
    /// k-means||: keep each row with probability `min(1, factor × d² / phi)`, drawing from a
    /// generator seeded by `(seed, shard, round)`.
    InitSample {
        /// Every candidate so far (as in `InitCost`).
        candidates: Versioned<M>,
        /// Cumulative candidate counts.
        batches: Vec<usize>,
        /// The total cost of all shards for these candidates.
        phi: f64,
        /// The oversampling factor ℓ.
        factor: f64,
        /// The run's seed.
        seed: u64,
        /// The round.
        round: u64,
    },
    /// A Lloyd iteration: assign each row to its nearest of `centres` and sum the rows per
    /// cluster. The labels it starts from are those of `labels_from` (none: the first one).
    Step {
        /// The centres of this iteration.
        centres: Versioned<M>,
        /// The centres the previous labels came from.
        labels_from: Option<Versioned<M>>,
    },
    /// The `count` rows farthest from their centre under the labels of `labels_from`.
    Farthest {
        /// The centres of the labels.
        labels_from: Versioned<M>,
        /// How many.
        count: usize,
    },
    /// The labels of `labels_from` and the inertia of the rows under `centres`.
    Finish {
        /// The final centres.
        centres: M,
        /// The centres the labels come from (the final ones unless the run converged strictly).
        labels_from: Versioned<M>,
    },
}

impl<M> ShardOp<M> {
    /// The task kind of this step on `ferrocluster-worker`.
    pub fn kind(&self) -> &'static str {
        match self {
            ShardOp::Load => "kmeans.load_shard",
            ShardOp::Centre { .. } => "kmeans.centre",
            ShardOp::Rows { .. } => "kmeans.rows",
            ShardOp::InitCost { .. } => "kmeans.init_cost",
            ShardOp::InitSample { .. } => "kmeans.init_sample",
            ShardOp::Step { .. } => "kmeans.step",
            ShardOp::Farthest { .. } => "kmeans.farthest",
            ShardOp::Finish { .. } => "kmeans.finish",
        }
    }

    /// Every task kind, as workers register them.
    pub const KINDS: [&'static str; 8] = [
        "kmeans.load_shard",
        "kmeans.centre",
        "kmeans.rows",
        "kmeans.init_cost",
        "kmeans.init_sample",
        "kmeans.step",
        "kmeans.farthest",
        "kmeans.finish",
    ];

    /// The same step with every matrix converted by `f`, in a fixed order. `f` also sees the
    /// version of a [`Versioned`] matrix (`None` for the others).
    ///
    /// # Errors
    /// The first error of `f`.
    pub fn try_map<N, E>(&self, f: &mut impl FnMut(Option<u64>, &M) -> Result<N, E>) -> Result<ShardOp<N>, E> {
        let mut v = |c: &Versioned<M>| -> Result<Versioned<N>, E> {
            Ok(Versioned { version: c.version, centres: f(Some(c.version), &c.centres)? })
        };
        Ok(match self {
            ShardOp::Load => ShardOp::Load,
            ShardOp::Centre { mean } => ShardOp::Centre { mean: mean.clone() },
            ShardOp::Rows { indices } => ShardOp::Rows { indices: indices.clone() },
            ShardOp::InitCost { candidates, batches, counts } => {
                ShardOp::InitCost { candidates: v(candidates)?, batches: batches.clone(), counts: *counts }
            }
            ShardOp::InitSample { candidates, batches, phi, factor, seed, round } => ShardOp::InitSample {
                candidates: v(candidates)?,
                batches: batches.clone(),
                phi: *phi,
                factor: *factor,
                seed: *seed,
                round: *round,
            },
            ShardOp::Step { centres, labels_from } => {
                ShardOp::Step { centres: v(centres)?, labels_from: labels_from.as_ref().map(&mut v).transpose()? }
            }
            ShardOp::Farthest { labels_from, count } => {
                ShardOp::Farthest { labels_from: v(labels_from)?, count: *count }
            }
            ShardOp::Finish { centres, labels_from } => {
                let labels_from = v(labels_from)?;
                ShardOp::Finish { centres: f(None, centres)?, labels_from }
            }
        })
    }
}

/// A row far from its centre, a candidate for an empty cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FarPoint {
    /// Squared distance to its centre.
    pub dist: f64,
    /// Global row index.
    pub index: usize,
    /// Its cluster.
    pub label: u32,
    /// Its values (centred).
    #[serde(with = "f64_bytes")]
    pub row: Vec<f64>,
}

/// A shard's answer to one [`ShardOp`] (the variant of the same name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardReply {
    /// Column sums.
    Load {
        /// Per column.
        #[serde(with = "f64_bytes")]
        sums: Vec<f64>,
    },
    /// Column sums of the centred values and of their squares.
    Centre {
        /// Σ x.
        #[serde(with = "f64_bytes")]
        s1: Vec<f64>,
        /// Σ x².
        #[serde(with = "f64_bytes")]
        s2: Vec<f64>,
    },
    /// Rows asked for that this shard holds.
    Rows {
        /// Their global indices.
        indices: Vec<usize>,
        /// Their values, row-major.
        #[serde(with = "f64_bytes")]
        rows: Vec<f64>,
    },
    /// The shard's k-means|| cost.
    InitCost {
        /// Σ d² to the nearest candidate.
        cost: f64,
        /// Rows nearest to each candidate (empty unless asked).
        #[serde(with = "f64_bytes")]
        counts: Vec<f64>,
    },
    /// Rows sampled as new candidates, row-major.
    InitSample {
        /// Their values.
        #[serde(with = "f64_bytes")]
        rows: Vec<f64>,
    },
    /// Partial M-step.
    Step {
        /// Per-cluster sums, `k × d`.
        #[serde(with = "f64_bytes")]
        sums: Vec<f64>,
        /// Rows per cluster.
        #[serde(with = "f64_bytes")]
        weights: Vec<f64>,
        /// Rows whose label changed.
        changed: usize,
    },
    /// The farthest rows, farthest first.
    Farthest {
        /// At most `count` of them.
        points: Vec<FarPoint>,
    },
    /// Final labels and partial inertia.
    Finish {
        /// Σ d² to the assigned centre.
        inertia: f64,
        /// Cluster of each row.
        labels: Vec<u32>,
    },
}

/// Vectors of f64 on the wire as base64 of their little-endian bytes: exact, as decimal text
/// is, at a third of its size and a small part of the time to write and parse it (every Lloyd
/// step sends k × d partial sums per shard).
mod f64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD.decode(text).map_err(serde::de::Error::custom)?;
        if bytes.len() % 8 != 0 {
            return Err(serde::de::Error::custom(format!("{} bytes are not a whole number of f64", bytes.len())));
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_cross_json_as_bytes_bit_for_bit() {
        let sums = vec![0.1, -0.0, f64::MIN_POSITIVE / 3.0, 1e300, 2.0f64.powi(-1074), 123_456_789.123_456_79];
        let reply = ShardReply::Step { sums: sums.clone(), weights: vec![3.0, 0.0], changed: 7 };
        let text = serde_json::to_string(&reply).unwrap();
        assert!(text.contains(r#""sums":"mpmZmZmZuT8AAAAAAAAAg"#), "{text}");
        let ShardReply::Step { sums: back, .. } = serde_json::from_str(&text).unwrap() else { panic!("{text}") };
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let torn = text.replace(r#""sums":"mpmZmZmZ"#, r#""sums":"mpmZ"#);
        assert!(serde_json::from_str::<ShardReply>(&torn).unwrap_err().to_string().contains("f64"), "{torn}");
    }
}
