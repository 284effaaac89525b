//! Writing a float32 matrix as a NumPy .npy file (format 1.0), readable by `np.load`.

use std::io::Write;
use std::path::Path;

use ferrocluster_core::Error;
use ndarray::Array2;

/// Writes `matrix` as a little-endian float32 .npy file.
pub fn write_f32(path: &Path, matrix: &Array2<f32>) -> Result<(), Error> {
    let (n, d) = matrix.dim();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + n * d * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in matrix.iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(&bytes).map_err(|e| Error::io(path, e))
}
