//! Float32 matrices as NumPy `.npy` files (format 1.0, little-endian, C order), which
//! `np.load` reads: the features `ferrocluster extract` writes, the matrices `extract` tasks
//! leave on a shared folder, the rows a distributed fit reads.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ndarray::ArrayView2;

use crate::{Error, Result};

/// Values converted per read or write: the buffers stay small whatever the matrix.
const CHUNK_VALUES: usize = 16 * 1024;

/// Writes `matrix` to `path`, aside first and then renamed into place, so a reader never
/// sees half a file and writers racing on the same path (a task run twice) each leave a
/// whole one.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written (nothing is left behind then).
pub fn write_f32(path: &Path, matrix: ArrayView2<'_, f32>) -> Result<()> {
    let aside = aside_name(path);
    let written = write_to(&aside, matrix).and_then(|()| std::fs::rename(&aside, path));
    written.map_err(|e| {
        // Already gone when the create failed; a failed write or rename leaves it.
        let _ = std::fs::remove_file(&aside);
        Error::io(path, e)
    })
}

/// A name beside `path` that no other writer picks (process and random number).
fn aside_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{:016x}.partial", std::process::id(), rand::random::<u64>()));
    path.with_file_name(name)
}

fn write_to(path: &Path, matrix: ArrayView2<'_, f32>) -> std::io::Result<()> {
    let (n, d) = matrix.dim();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut file = std::io::BufWriter::new(File::create(path)?);
    file.write_all(b"\x93NUMPY\x01\x00")?;
    file.write_all(&(header.len() as u16).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    let mut bytes = Vec::with_capacity(CHUNK_VALUES * 4);
    for v in matrix.iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
        if bytes.len() == bytes.capacity() {
            file.write_all(&bytes)?;
            bytes.clear();
        }
    }
    file.write_all(&bytes)?;
    file.flush()
}

/// The float32 values of little-endian bytes, four a value: the data of a `.npy` file, and of
/// a matrix or blob stored in Redis.
pub fn le_f32(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// An open float32 `.npy` file: its shape, and the file positioned at its first value.
#[derive(Debug)]
pub struct NpyFile {
    file: File,
    path: PathBuf,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Where the values start in the file.
    pub offset: u64,
}

impl NpyFile {
    /// Opens `path` and reads its header.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, [`Error::InvalidInput`] for another format or a
    /// file shorter than its header announces (a torn or foreign file).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut npy = NpyFile { file, path: path.to_owned(), rows: 0, cols: 0, offset: 0 };
        npy.read_header()?;
        Ok(npy)
    }

    /// Opens `path`, a file of `rows × cols` values as its reference says.
    ///
    /// # Errors
    /// As [`NpyFile::open`]; [`Error::InvalidInput`] for another shape.
    pub fn open_shaped(path: &Path, rows: usize, cols: usize) -> Result<Self> {
        let npy = Self::open(path)?;
        if (npy.rows, npy.cols) != (rows, cols) {
            return Err(Error::input(format!(
                "{} holds {} × {} values, not the {rows} × {cols} expected",
                path.display(),
                npy.rows,
                npy.cols
            )));
        }
        Ok(npy)
    }

    fn read_header(&mut self) -> Result<()> {
        let path = self.path.clone();
        let bad = |why: &str| Error::input(format!("{}: {why}", path.display()));
        let io = |e| Error::io(&path, e);
        let mut head = [0u8; 12];
        self.file.read_exact(&mut head).map_err(io)?;
        if &head[..6] != b"\x93NUMPY" {
            return Err(bad("not a .npy file"));
        }
        let (len, start) = match head[6] {
            1 => (usize::from(u16::from_le_bytes([head[8], head[9]])), 10),
            2 | 3 => (u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize, 12),
            v => return Err(bad(&format!(".npy format version {v} is not supported"))),
        };
        let mut header = vec![0u8; len];
        self.file.seek(SeekFrom::Start(start as u64)).and_then(|_| self.file.read_exact(&mut header)).map_err(io)?;
        let header = String::from_utf8_lossy(&header).replace(' ', "");
        if !header.contains("'descr':'<f4'") {
            return Err(bad("only little-endian float32 ('<f4') arrays can be read: save X.astype(np.float32)"));
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
        let size = self.file.metadata().map_err(io)?.len();
        let needed = n.checked_mul(d).and_then(|v| v.checked_mul(4)).map(|b| offset + b as u64);
        if needed.is_none_or(|needed| size < needed) {
            return Err(bad(&format!("truncated: {size} bytes for {n} × {d} float32 values")));
        }
        (self.rows, self.cols, self.offset) = (n, d, offset);
        Ok(())
    }

    /// Reads bytes `range` of the values (fewer when the file has shrunk since it was opened).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn read_bytes(&mut self, range: std::ops::Range<usize>) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(range.len());
        let file = &mut self.file;
        file.seek(SeekFrom::Start(self.offset + range.start as u64))
            .and_then(|_| Read::by_ref(file).take(range.len() as u64).read_to_end(&mut bytes))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(bytes)
    }

    /// Reads every value into `out`, which holds `rows × cols` of them.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `out` is of another size; [`Error::Io`].
    pub fn read_into(&mut self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.rows * self.cols {
            return Err(Error::input(format!(
                "{}: {} × {} values, not the {} expected",
                self.path.display(),
                self.rows,
                self.cols,
                out.len()
            )));
        }
        let io = |e| Error::io(&self.path, e);
        self.file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut bytes = vec![0u8; CHUNK_VALUES.min(out.len()) * 4];
        for values in out.chunks_mut(CHUNK_VALUES) {
            let bytes = &mut bytes[..values.len() * 4];
            self.file.read_exact(bytes).map_err(io)?;
            for (v, x) in values.iter_mut().zip(le_f32(bytes)) {
                *v = x;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    #[test]
    fn a_matrix_written_reads_back_and_leaves_no_file_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let m = Array2::from_shape_fn((3000, 7), |(i, j)| (i * 7 + j) as f32 - 0.5);
        write_f32(&path, m.view()).unwrap();
        let mut npy = NpyFile::open(&path).unwrap();
        assert_eq!((npy.rows, npy.cols, npy.offset % 64), (3000, 7, 0));
        let mut back = vec![0.0; 3000 * 7];
        npy.read_into(&mut back).unwrap();
        assert_eq!(back, m.as_slice().unwrap());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["x.npy"]);
    }

    #[test]
    fn torn_foreign_and_unwritable_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write_f32(&path, Array2::<f32>::ones((10, 4)).view()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(NpyFile::open(&path).unwrap_err().to_string().contains("truncated"));
        std::fs::write(&path, b"not numpy at all").unwrap();
        assert!(NpyFile::open(&path).unwrap_err().to_string().contains("not a .npy file"));
        let missing = dir.path().join("gone").join("x.npy");
        let e = write_f32(&missing, Array2::<f32>::ones((1, 1)).view()).unwrap_err();
        assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("gone"), "{e}");
    }
}
