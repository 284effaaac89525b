//! scikit-learn's handwritten digits (1797 images, 8×8, 17 grey levels), read from the copy
//! that ships inside an installed scikit-learn (`sklearn/datasets/data/digits.csv.gz`).

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::LabelledImages;
use crate::image::Image;
use crate::{Error, Result};

const SIDE: usize = 8;
const MAX_LEVEL: f32 = 16.0;

/// Reads the digits from scikit-learn's gzipped CSV (64 pixel values then the label per line),
/// scaling the 0–16 grey levels to 0–255.
pub fn read_digits_csv(path: &Path) -> Result<LabelledImages> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    GzDecoder::new(file).read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
    let bad = |line: usize, reason: &str| Error::input(format!("{}:{}: {reason}", path.display(), line + 1));
    let mut out = LabelledImages::default();
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(line_no, "not a number"))?;
        if values.len() != SIDE * SIDE + 1 {
            return Err(bad(line_no, "expected 65 values (64 pixels and a label)"));
        }
        let pixels = values[..SIDE * SIDE].iter().map(|v| (v * 255.0 / MAX_LEVEL).round()).collect();
        let image = Image::from_vec(SIDE, SIDE, 1, pixels).ok_or_else(|| bad(line_no, "bad image"))?;
        out.images.push(image);
        out.labels.push(values[SIDE * SIDE] as i64);
    }
    if out.images.is_empty() {
        return Err(Error::input(format!("{}: no digits found", path.display())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;

    use super::*;

    #[test]
    fn reads_gzipped_rows_and_scales_levels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digits.csv.gz");
        let mut enc = GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
        let row: Vec<String> = (0..64).map(|i| (i % 17).to_string()).chain(["7".to_string()]).collect();
        writeln!(enc, "{}", row.join(",")).unwrap();
        enc.finish().unwrap();
        let set = read_digits_csv(&path).unwrap();
        assert_eq!(set.labels, vec![7]);
        assert_eq!(set.images[0].data()[16], 255.0);
        assert_eq!(set.images[0].data()[1], (255.0f32 / 16.0).round());
    }

    #[test]
    fn short_rows_are_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digits.csv.gz");
        let mut enc = GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
        writeln!(enc, "1,2,3").unwrap();
        enc.finish().unwrap();
        let err = read_digits_csv(&path).unwrap_err().to_string();
        assert!(err.contains(":1: expected 65 values"), "{err}");
    }
}
