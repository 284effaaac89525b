//! Where a worker loads a shard from: float32 .npy files every worker can read, shard blobs
//! in Redis (data that came from memory, e.g. a numpy array in Python), or parts stored by
//! other tasks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ShardPlan;
use crate::npy::NpyFile;
use crate::queue::{DataRef, MatrixRef, Queue};
use crate::{Error, Result};

/// The data of a distributed fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardSource {
    /// Little-endian float32, C-order .npy files at these paths on every worker, whose rows,
    /// one after the other, are the data (one file, or a file per part). A shard reads only
    /// its rows of the files it spans.
    Npy(Vec<PathBuf>),
    /// Shard `s` is the raw float32 matrix at Redis key `{prefix}:{s}`.
    Keys(String),
    /// The rows of matrices stored elsewhere (e.g. the outputs of `extract` tasks), one after
    /// the other: the Redis key of their list (JSON, [`MatrixRef`] each). A shard reads only
    /// its rows of the parts it spans.
    Parts(String),
}

impl ShardSource {
    /// The Redis key of shard `s` of a `Keys` source.
    pub(crate) fn shard_key(prefix: &str, s: usize) -> String {
        format!("{prefix}:{s}")
    }

    /// The Redis reference of shard `s` of a `Keys` source.
    pub(crate) fn shard_ref(prefix: &str, plan: &ShardPlan, s: usize) -> MatrixRef {
        MatrixRef { at: DataRef::Key(Self::shard_key(prefix, s)), rows: plan.range(s).len(), cols: plan.d }
    }

    /// Reads shard `s` of `plan`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the data is missing, of another shape, or unreadable.
    pub(crate) async fn load(&self, queue: &Queue, plan: &ShardPlan, s: usize) -> Result<Vec<f32>> {
        match self {
            ShardSource::Keys(prefix) => {
                let m = Self::shard_ref(prefix, plan, s).read(queue).await.map_err(|e| Error::input(e.to_string()))?;
                Ok(m.into_raw_vec_and_offset().0)
            }
            ShardSource::Parts(manifest) => {
                let text: Option<String> =
                    queue.conn.query(redis::cmd("GET").arg(manifest)).await.map_err(|e| Error::input(e.to_string()))?;
                let text = text.ok_or_else(|| Error::input(format!("the list of parts `{manifest}` is gone")))?;
                let parts: Vec<MatrixRef> =
                    serde_json::from_str(&text).map_err(|e| Error::input(format!("the list of parts: {e}")))?;
                read_rows(queue, &parts, plan, s).await
            }
            ShardSource::Npy(paths) => {
                let mut parts = Vec::with_capacity(paths.len());
                for path in paths {
                    let NpyFile { rows, cols, .. } = NpyFile::open(path)?;
                    parts.push(MatrixRef { at: DataRef::Path(path.clone()), rows, cols });
                }
                read_rows(queue, &parts, plan, s).await
            }
        }
    }
}

/// The rows of shard `s` from the `parts` that together hold the `plan.n` rows.
async fn read_rows(queue: &Queue, parts: &[MatrixRef], plan: &ShardPlan, s: usize) -> Result<Vec<f32>> {
    let (range, d) = (plan.range(s), plan.d);
    if let Some(p) = parts.iter().find(|p| p.cols != d && p.rows > 0) {
        return Err(Error::input(format!("{:?} has {} columns, the fit expects {d}", p.at, p.cols)));
    }
    let total: usize = parts.iter().map(|p| p.rows).sum();
    if total != plan.n {
        return Err(Error::input(format!("the data now holds {total} rows, the fit expects {}", plan.n)));
    }
    let mut values = Vec::with_capacity(range.len() * d);
    let mut first = 0;
    for part in parts {
        let (lo, hi) = (range.start.max(first), range.end.min(first + part.rows));
        if lo < hi {
            let bytes = (lo - first) * d * 4..(hi - first) * d * 4;
            let raw = read_bytes(queue, part, bytes.clone()).await?;
            if raw.len() != bytes.len() {
                return Err(Error::input(format!(
                    "{:?} is gone or shorter than its {} × {d} values",
                    part.at, part.rows
                )));
            }
            values.extend(crate::npy::le_f32(&raw));
        }
        first += part.rows;
    }
    Ok(values)
}

/// Bytes `range` of the values of `part` (fewer when it is shorter).
async fn read_bytes(queue: &Queue, part: &MatrixRef, range: std::ops::Range<usize>) -> Result<Vec<u8>> {
    match &part.at {
        DataRef::Key(key) => {
            let cmd = redis::cmd("GETRANGE").arg(key).arg(range.start).arg(range.end - 1).clone();
            queue.conn.query(&cmd).await.map_err(|e| Error::input(format!("{key}: {e}")))
        }
        DataRef::Path(path) => NpyFile::open_shaped(path, part.rows, part.cols)?.read_bytes(range),
    }
}
