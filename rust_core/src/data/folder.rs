//! A labelled image set on disk: one PNG per image and a `labels.csv` of `file,label`.

use std::collections::HashMap;
use std::path::Path;

use super::LabelledImages;
use crate::{Error, Result};

/// Name of the file that maps image file names to their labels.
pub const LABELS_FILE: &str = "labels.csv";

/// Writes each image as `{prefix}-{index:05}.png` (upscaled by `scale` with nearest-neighbour
/// sampling, so tiny images stay visible) and a `labels.csv`.
pub fn write_labelled(set: &LabelledImages, dir: &Path, prefix: &str, scale: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let scale = scale.max(1);
    let mut labels = csv::Writer::from_path(dir.join(LABELS_FILE)).map_err(|e| csv_error(dir, e))?;
    labels.write_record(["file", "label"]).map_err(|e| csv_error(dir, e))?;
    for (i, (image, label)) in set.images.iter().zip(&set.labels).enumerate() {
        let name = format!("{prefix}-{i:05}.png");
        let (h, w, ch) = (image.height(), image.width(), image.channels());
        let rgb = image::RgbImage::from_fn((w * scale) as u32, (h * scale) as u32, |x, y| {
            let base = ((y as usize / scale) * w + x as usize / scale) * ch;
            let px = |k: usize| image.data()[base + if ch == 3 { k } else { 0 }].round().clamp(0.0, 255.0) as u8;
            image::Rgb([px(0), px(1), px(2)])
        });
        let path = dir.join(&name);
        rgb.save(&path).map_err(|e| Error::Image { source_name: path.display().to_string(), reason: e.to_string() })?;
        labels.write_record([name, label.to_string()]).map_err(|e| csv_error(dir, e))?;
    }
    labels.flush().map_err(|e| Error::io(dir, e))
}

/// Reads `labels.csv` from `dir`: file name → label. `Ok(None)` when the folder has none.
pub fn read_labels(dir: &Path) -> Result<Option<HashMap<String, i64>>> {
    let path = dir.join(LABELS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let mut reader = csv::Reader::from_path(&path).map_err(|e| csv_error(&path, e))?;
    let mut map = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&path, e))?;
        let (Some(file), Some(label)) = (record.get(0), record.get(1)) else {
            return Err(Error::input(format!("{}: each row needs `file,label`", path.display())));
        };
        let label = label
            .trim()
            .parse()
            .map_err(|_| Error::input(format!("{}: label `{label}` of {file} is not an integer", path.display())))?;
        map.insert(file.to_owned(), label);
    }
    Ok(Some(map))
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    Error::io(path, std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{synthetic, SyntheticSpec};

    #[test]
    fn written_sets_read_back_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let set = synthetic(&SyntheticSpec { n: 5, size: [8, 8], classes: 2, ..Default::default() }).unwrap();
        write_labelled(&set, dir.path(), "img", 2).unwrap();
        let labels = read_labels(dir.path()).unwrap().unwrap();
        assert_eq!(labels.len(), 5);
        assert_eq!(labels["img-00003.png"], 1);
        let img = crate::image::load(&dir.path().join("img-00000.png"), None, &Default::default()).unwrap();
        assert_eq!((img.height(), img.width()), (16, 16));
    }
}
