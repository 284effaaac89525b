//! Where a worker loads a shard from: float32 .npy files every worker can read, shard blobs
//! in Redis (data that came from memory, e.g. a numpy array in Python), or parts stored by
//! other tasks.

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
                let parts: Vec<Part> = parts.into_iter().map(|at| Part { at, offset: 0 }).collect();
                read_rows(queue, &parts, plan, s).await
            }
            ShardSource::Npy(paths) => {
                let mut parts = Vec::with_capacity(paths.len());
                for path in paths {
                    let (rows, cols, offset) = npy_shape(path)?;
                    parts.push(Part { at: MatrixRef { at: DataRef::Path(path.clone()), rows, cols }, offset });
                }
                read_rows(queue, &parts, plan, s).await
            }
        }
    }
}

/// A matrix whose rows are some of the data's, and where its values start in its file or key.
struct Part {
    at: MatrixRef,
    offset: u64,
}

/// The rows of shard `s` from the `parts` that together hold the `plan.n` rows.
async fn read_rows(queue: &Queue, parts: &[Part], plan: &ShardPlan, s: usize) -> Result<Vec<f32>> {
    let (range, d) = (plan.range(s), plan.d);
    if let Some(p) = parts.iter().find(|p| p.at.cols != d && p.at.rows > 0) {
        return Err(Error::input(format!("{:?} has {} columns, the fit expects {d}", p.at.at, p.at.cols)));
    }
    let total: usize = parts.iter().map(|p| p.at.rows).sum();
    if total != plan.n {
        return Err(Error::input(format!("the data now holds {total} rows, the fit expects {}", plan.n)));
    }
    let mut values = Vec::with_capacity(range.len() * d);
    let mut first = 0;
    for Part { at: part, offset } in parts {
        let (lo, hi) = (range.start.max(first), range.end.min(first + part.rows));
        if lo < hi {
            let bytes = (lo - first) * d * 4..(hi - first) * d * 4;
            let raw = read_bytes(queue, &part.at, *offset, bytes.clone()).await?;
            if raw.len() != bytes.len() {
                return Err(Error::input(format!(
                    "{:?} is gone or shorter than its {} × {d} values",
                    part.at, part.rows
                )));
            }
            values.extend(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
        first += part.rows;
    }
    Ok(values)
}

/// Bytes `range` of the values at `at`, which start `offset` bytes in (fewer when it is shorter).
async fn read_bytes(queue: &Queue, at: &DataRef, offset: u64, range: std::ops::Range<usize>) -> Result<Vec<u8>> {
    match at {
        DataRef::Key(key) => {
            let (start, end) = (offset as usize + range.start, offset as usize + range.end);
            let cmd = redis::cmd("GETRANGE").arg(key).arg(start).arg(end - 1).clone();
            queue.conn.query(&cmd).await.map_err(|e| Error::input(format!("{key}: {e}")))
        }
        DataRef::Path(path) => {
            let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut bytes = Vec::with_capacity(range.len());
            file.seek(SeekFrom::Start(offset + range.start as u64))
                .and_then(|_| Read::by_ref(&mut file).take(range.len() as u64).read_to_end(&mut bytes))
                .map_err(|e| Error::io(path, e))?;
            Ok(bytes)
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
