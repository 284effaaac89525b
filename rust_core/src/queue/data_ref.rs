//! Large data by reference: envelopes carry where a matrix lives (a Redis key or a file
//! path), never the matrix itself.

use std::path::PathBuf;
use std::time::Duration;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{Error, Queue, Result};

/// Where bytes live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataRef {
    /// A Redis string key (visible to every worker; mind Redis memory).
    Key(String),
    /// A file path (on storage every worker mounts at the same path).
    Path(PathBuf),
}

impl DataRef {
    /// Stores `bytes` here: at a key (expiring after `ttl` if given, set with the value so no
    /// crash leaves it without one), or in a file (which does not expire).
    ///
    /// # Errors
    /// [`Error::Data`] when the file cannot be written; Redis errors.
    pub async fn write_bytes(&self, queue: &Queue, bytes: &[u8], ttl: Option<Duration>) -> Result<()> {
        match self {
            DataRef::Key(key) => {
                let mut set = redis::cmd("SET");
                set.arg(key).arg(bytes);
                if let Some(ttl) = ttl {
                    set.arg("PX").arg(ttl.as_millis().max(1) as u64);
                }
                queue.conn.query(&set).await
            }
            DataRef::Path(path) => {
                std::fs::write(path, bytes).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
            }
        }
    }

    /// The bytes stored here; `None` when there is no such key or file.
    ///
    /// # Errors
    /// [`Error::Data`] when the file cannot be read; Redis errors.
    pub async fn read_bytes(&self, queue: &Queue) -> Result<Option<Vec<u8>>> {
        match self {
            DataRef::Key(key) => queue.conn.query(redis::cmd("GET").arg(key)).await,
            DataRef::Path(path) => match std::fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::Data(format!("{}: {e}", path.display()))),
            },
        }
    }

    /// Deletes the data (nothing to do when it is already gone).
    ///
    /// # Errors
    /// [`Error::Data`] when the file cannot be removed; Redis errors.
    pub async fn delete(&self, queue: &Queue) -> Result<()> {
        match self {
            DataRef::Key(key) => queue.conn.query(redis::cmd("DEL").arg(key)).await,
            DataRef::Path(path) => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::Data(format!("{}: {e}", path.display())))
                }
                _ => Ok(()),
            },
        }
    }
}

/// A float32 matrix by reference, `rows × cols`: at a key, raw little-endian values,
/// row-major; at a path, a `.npy` file ([`crate::npy`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixRef {
    /// Where the bytes are.
    #[serde(flatten)]
    pub at: DataRef,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

impl MatrixRef {
    /// Stores `matrix` at `at` and returns the reference to it.
    ///
    /// # Errors
    /// [`Error::Data`] when the file cannot be written; Redis errors.
    pub async fn write(queue: &Queue, at: DataRef, matrix: &Array2<f32>) -> Result<Self> {
        Self::write_expiring(queue, at, matrix, None).await
    }

    /// Stores `matrix` at `at` as [`MatrixRef::write`] does; a Redis key expires after `ttl`
    /// (set with the value, so no crash can leave it without one). Files do not expire.
    ///
    /// # Errors
    /// As [`MatrixRef::write`].
    pub async fn write_expiring(
        queue: &Queue,
        at: DataRef,
        matrix: &Array2<f32>,
        ttl: Option<Duration>,
    ) -> Result<Self> {
        match &at {
            DataRef::Key(_) => {
                let bytes: Vec<u8> = matrix.iter().flat_map(|v| v.to_le_bytes()).collect();
                at.write_bytes(queue, &bytes, ttl).await?
            }
            DataRef::Path(path) => {
                crate::npy::write_f32(path, matrix.view()).map_err(|e| Error::Data(e.to_string()))?
            }
        }
        Ok(MatrixRef { at, rows: matrix.nrows(), cols: matrix.ncols() })
    }

    /// Loads the matrix, checking its size against `rows × cols`.
    ///
    /// # Errors
    /// [`Error::Data`] when it is missing or of the wrong size; Redis errors.
    pub async fn read(&self, queue: &Queue) -> Result<Array2<f32>> {
        let stored = self.open(queue).await?;
        // The size is the data's own, checked by `open`: no reference can ask for more.
        let mut matrix = Array2::zeros((self.rows, self.cols));
        stored.copy_into(matrix.as_slice_mut().expect("a new matrix is contiguous"))?;
        Ok(matrix)
    }

    /// Loads the matrix into `out` (`rows × cols` values, row-major), checking its size.
    ///
    /// # Errors
    /// As [`MatrixRef::read`]; [`Error::Data`] when `out` is of another size.
    pub async fn read_into(&self, queue: &Queue, out: &mut [f32]) -> Result<()> {
        if self.rows.checked_mul(self.cols) != Some(out.len()) {
            return Err(Error::Data(format!(
                "{:?}: {} values asked of a {} × {} matrix",
                self.at,
                out.len(),
                self.rows,
                self.cols
            )));
        }
        self.open(queue).await?.copy_into(out)
    }

    /// The stored values, checked to be `rows × cols` of them.
    async fn open(&self, queue: &Queue) -> Result<Stored> {
        match &self.at {
            DataRef::Key(key) => {
                let bytes = self.at.read_bytes(queue).await?;
                let bytes = bytes.ok_or_else(|| Error::Data(format!("no Redis key `{key}`")))?;
                let expected = self.rows.checked_mul(self.cols).and_then(|n| n.checked_mul(4));
                if expected != Some(bytes.len()) {
                    return Err(Error::Data(format!(
                        "{:?} holds {} bytes, not the {} × {} float32 values its reference announces",
                        self.at,
                        bytes.len(),
                        self.rows,
                        self.cols
                    )));
                }
                Ok(Stored::Bytes(bytes))
            }
            DataRef::Path(path) => crate::npy::NpyFile::open_shaped(path, self.rows, self.cols)
                .map(Stored::File)
                .map_err(|e| Error::Data(e.to_string())),
        }
    }
}

/// A matrix's values as read from where they are stored, of the size its reference says.
enum Stored {
    Bytes(Vec<u8>),
    File(crate::npy::NpyFile),
}

impl Stored {
    fn copy_into(self, out: &mut [f32]) -> Result<()> {
        match self {
            Stored::Bytes(bytes) => {
                for (v, x) in out.iter_mut().zip(crate::npy::le_f32(&bytes)) {
                    *v = x;
                }
                Ok(())
            }
            Stored::File(mut file) => file.read_into(out).map_err(|e| Error::Data(e.to_string())),
        }
    }
}
