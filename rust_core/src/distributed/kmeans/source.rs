//! Where a worker loads a shard from: a float32 .npy file every worker can read, or shard
//! blobs in Redis (data that came from memory, e.g. a numpy array in Python).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ShardPlan;
use crate::queue::{DataRef, MatrixRef, Queue};
use crate::{Error, Result};

/// The data of a distributed fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardSource {
    /// A little-endian float32, C-order `n × d` .npy file at this path on every worker.
    Npy(PathBuf),
    /// Shard `s` is the raw float32 matrix at Redis key `{prefix}:{s}`.
    Keys(String),
}

impl ShardSource {
    /// The Redis reference of shard `s` of a `Keys` source.
    pub(crate) fn shard_ref(prefix: &str, plan: &ShardPlan, s: usize) -> MatrixRef {
        MatrixRef { at: DataRef::Key(format!("{prefix}:{s}")), rows: plan.range(s).len(), cols: plan.d }
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
            ShardSource::Npy(path) => {
                let (n, d, offset) = npy_shape(path)?;
                if (n, d) != (plan.n, plan.d) {
                    return Err(Error::input(format!(
                        "{} holds {n} × {d}, the fit expects {} × {}",
                        path.display(),
                        plan.n,
                        plan.d
                    )));
                }
                let range = plan.range(s);
                let mut bytes = vec![0u8; range.len() * d * 4];
                let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                file.seek(SeekFrom::Start(offset + (range.start * d * 4) as u64))
                    .and_then(|_| file.read_exact(&mut bytes))
                    .map_err(|e| Error::io(path, e))?;
                Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
        }
    }
}

/// Rows, columns and data offset of a 2-d little-endian float32 C-order .npy file.
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`Error::InvalidInput`] for another format.
pub fn npy_shape(path: &Path) -> Result<(usize, usize, u64)> {
    let bad = |why: &str| Error::input(format!("{}: {why}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 12];
    file.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
    if &head[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (len, start) = match head[6] {
        1 => (usize::from(u16::from_le_bytes([head[8], head[9]])), 10),
        2 | 3 => (u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize, 12),
        v => return Err(bad(&format!(".npy format version {v} is not supported"))),
    };
    let mut header = vec![0u8; len];
    file.seek(SeekFrom::Start(start as u64))
        .and_then(|_| file.read_exact(&mut header))
        .map_err(|e| Error::io(path, e))?;
    let header = String::from_utf8_lossy(&header).replace(' ', "");
    if !header.contains("'descr':'<f4'") {
        return Err(bad("only little-endian float32 ('<f4') arrays can be sharded: save X.astype(np.float32)"));
    }
    if !header.contains("'fortran_order':False") {
        return Err(bad("the array is in Fortran order: save np.ascontiguousarray(X)"));
    }
    let shape = header
        .split("'shape':(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| bad("no shape in the header"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("unreadable shape"))?;
    let [n, d] = dims[..] else { return Err(bad(&format!("a 2-d array is needed, got shape ({shape})"))) };
    let offset = (start + len) as u64;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if size < offset + (n * d * 4) as u64 {
        return Err(bad(&format!("truncated: {size} bytes for {n} × {d} float32 values")));
    }
    Ok((n, d, offset))
}
