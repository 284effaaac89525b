//! A contact sheet: one row per cluster, a label with the cluster's number and size, then
//! thumbnails of its members (those closest to the centre first).

use image::{imageops, Rgb, RgbImage};

use super::glyphs::{draw_text, text_width};
use crate::image::Image;
use crate::{Error, Result};

/// Layout of a contact sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSheet {
    /// Thumbnails per row (cluster).
    pub per_cluster: usize,
    /// Side of a thumbnail, in pixels.
    pub thumb: u32,
    /// Gap between thumbnails, in pixels.
    pub gap: u32,
}

impl Default for ContactSheet {
    fn default() -> Self {
        ContactSheet { per_cluster: 12, thumb: 48, gap: 4 }
    }
}

const BACKGROUND: Rgb<u8> = Rgb([250, 250, 250]);
const INK: Rgb<u8> = Rgb([30, 30, 30]);

/// Draws the sheet. `members[c]` are the images of cluster `c`, in display order, and
/// `sizes[c]` the cluster's full size (members may hold only a sample of it).
pub fn contact_sheet(layout: &ContactSheet, members: &[Vec<&Image<f32>>], sizes: &[usize]) -> Result<RgbImage> {
    if members.is_empty() || members.len() != sizes.len() {
        return Err(Error::input("a contact sheet needs one list of members and one size per cluster"));
    }
    if layout.per_cluster == 0 || layout.thumb == 0 {
        return Err(Error::parameter("per_cluster", "thumbnails per cluster and their size must be positive"));
    }
    let scale = (layout.thumb / 16).clamp(1, 3);
    let labels: Vec<String> = sizes.iter().enumerate().map(|(c, n)| format!("#{c} n={n}")).collect();
    let label_w = labels.iter().map(|l| text_width(l, scale)).max().unwrap_or(0) + 2 * layout.gap;
    let cell = layout.thumb + layout.gap;
    let width = label_w + layout.per_cluster as u32 * cell + layout.gap;
    let height = members.len() as u32 * cell + layout.gap;
    let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
    for (c, row) in members.iter().enumerate() {
        let top = layout.gap + c as u32 * cell;
        draw_text(&mut canvas, layout.gap, top + (layout.thumb - 5 * scale) / 2, &labels[c], scale, INK);
        for (j, image) in row.iter().take(layout.per_cluster).enumerate() {
            let thumb = thumbnail(image, layout.thumb);
            imageops::overlay(&mut canvas, &thumb, i64::from(label_w + j as u32 * cell), i64::from(top));
        }
    }
    Ok(canvas)
}

/// Scales an image to fit a `side × side` square, keeping its aspect ratio.
fn thumbnail(image: &Image<f32>, side: u32) -> RgbImage {
    let (h, w, ch) = (image.height() as u32, image.width() as u32, image.channels());
    let rgb = RgbImage::from_fn(w, h, |x, y| {
        let base = (y as usize * w as usize + x as usize) * ch;
        let px = |k: usize| image.data()[base + if ch == 3 { k } else { 0 }].round().clamp(0.0, 255.0) as u8;
        Rgb([px(0), px(1), px(2)])
    });
    let fit = f64::from(side) / f64::from(h.max(w));
    let (tw, th) = (((f64::from(w) * fit).round() as u32).max(1), ((f64::from(h) * fit).round() as u32).max(1));
    let filter = if fit > 1.0 { imageops::FilterType::Nearest } else { imageops::FilterType::Triangle };
    imageops::resize(&rgb, tw, th, filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(value: f32) -> Image<f32> {
        Image::from_vec(8, 8, 3, vec![value; 8 * 8 * 3]).unwrap()
    }

    #[test]
    fn one_row_per_cluster_with_thumbnails_where_members_are() {
        let (dark, light) = (flat(0.0), flat(200.0));
        let layout = ContactSheet { per_cluster: 3, thumb: 16, gap: 2 };
        let sheet = contact_sheet(&layout, &[vec![&dark, &dark], vec![&light]], &[2, 1]).unwrap();
        assert_eq!(sheet.height(), 2 * 18 + 2);
        let label_w = sheet.width() - 3 * 18 - 2;
        // Cluster 0's second thumbnail is dark, cluster 1 has no second thumbnail.
        assert_eq!(sheet.get_pixel(label_w + 18 + 8, 2 + 8), &Rgb([0, 0, 0]));
        assert_eq!(sheet.get_pixel(label_w + 8, 20 + 8), &Rgb([200, 200, 200]));
        assert_eq!(sheet.get_pixel(label_w + 18 + 8, 20 + 8), &BACKGROUND);
        // The label is drawn in ink.
        let ink = (0..label_w).flat_map(|x| (2..18).map(move |y| (x, y))).any(|(x, y)| sheet.get_pixel(x, y) == &INK);
        assert!(ink);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        assert!(contact_sheet(&ContactSheet::default(), &[], &[]).is_err());
        let img = flat(1.0);
        assert!(contact_sheet(&ContactSheet::default(), &[vec![&img]], &[1, 2]).is_err());
    }
}
