//! Decoding every supported format and depth, and refusing bad files with a typed error.

use std::io::Cursor;

use ferrocluster_core::image::{decode, load_batch, DecodeLimits};
use ferrocluster_core::Error;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use proptest::prelude::*;

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn gradient_rgb(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])))
}

#[test]
fn lossless_formats_round_trip_exactly() {
    let original = gradient_rgb(13, 9);
    for format in [ImageFormat::Png, ImageFormat::Bmp, ImageFormat::Tiff, ImageFormat::WebP] {
        let img = decode(&encode(&original, format), "x", None, &DecodeLimits::default()).unwrap();
        assert_eq!((img.height(), img.width(), img.channels()), (9, 13, 3), "{format:?}");
        let expected: Vec<f32> = original.to_rgb8().into_raw().into_iter().map(f32::from).collect();
        assert_eq!(img.data(), &expected[..], "{format:?}");
    }
}

#[test]
fn lossy_and_palette_formats_decode_close_to_the_source() {
    let original = gradient_rgb(16, 16);
    for format in [ImageFormat::Jpeg, ImageFormat::Gif] {
        let img = decode(&encode(&original, format), "x", None, &DecodeLimits::default()).unwrap();
        let expected = original.to_rgb8().into_raw();
        let mean_err: f32 = img.data().iter().zip(expected).map(|(a, b)| (a - f32::from(b)).abs()).sum::<f32>()
            / img.data().len() as f32;
        assert!(mean_err < 12.0, "{format:?}: mean abs error {mean_err}");
    }
}

#[test]
fn grey_16_bit_and_alpha_become_rgb_in_0_255() {
    let grey = DynamicImage::ImageLuma8(ImageBuffer::from_fn(4, 3, |x, _| Luma([(x * 60) as u8])));
    let img = decode(&encode(&grey, ImageFormat::Png), "g", None, &DecodeLimits::default()).unwrap();
    assert_eq!(img.channels(), 3);
    assert_eq!(&img.data()[3..6], &[60.0, 60.0, 60.0]);

    let deep = DynamicImage::ImageLuma16(ImageBuffer::from_fn(2, 2, |x, _| Luma([if x == 0 { 0 } else { 65535 }])));
    let img = decode(&encode(&deep, ImageFormat::Png), "d", None, &DecodeLimits::default()).unwrap();
    assert_eq!(&img.data()[..6], &[0.0, 0.0, 0.0, 255.0, 255.0, 255.0]);

    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(2, 2, |_, _| Rgba([10, 20, 30, 0])));
    let img = decode(&encode(&rgba, ImageFormat::Png), "a", None, &DecodeLimits::default()).unwrap();
    assert_eq!(&img.data()[..3], &[10.0, 20.0, 30.0]);
}

#[test]
fn resizing_gives_the_requested_size() {
    let img =
        decode(&encode(&gradient_rgb(40, 30), ImageFormat::Png), "r", Some([8, 12]), &DecodeLimits::default()).unwrap();
    assert_eq!((img.height(), img.width(), img.channels()), (8, 12, 3));
}

fn image_error(result: ferrocluster_core::Result<ferrocluster_core::image::Image>) -> (String, String) {
    match result {
        Err(Error::Image { source_name, reason }) => (source_name, reason),
        other => panic!("expected an image error, got {other:?}"),
    }
}

#[test]
fn corrupt_truncated_and_unknown_files_name_the_file() {
    let png = encode(&gradient_rgb(32, 32), ImageFormat::Png);
    let (name, reason) = image_error(decode(&png[..png.len() / 2], "half.png", None, &DecodeLimits::default()));
    assert_eq!(name, "half.png");
    assert!(!reason.is_empty());
    let (_, reason) = image_error(decode(b"definitely not an image", "text.png", None, &DecodeLimits::default()));
    assert!(reason.contains("unrecognised"), "{reason}");
    let (_, reason) = image_error(decode(b"", "empty.png", None, &DecodeLimits::default()));
    assert!(reason.contains("empty"), "{reason}");
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    // A valid PNG header announcing 60000×60000 pixels, followed by almost nothing.
    let mut bomb = encode(&gradient_rgb(1, 1), ImageFormat::Png);
    let ihdr = bomb.windows(4).position(|w| w == b"IHDR").unwrap() + 4;
    bomb[ihdr..ihdr + 4].copy_from_slice(&60_000u32.to_be_bytes());
    bomb[ihdr + 4..ihdr + 8].copy_from_slice(&60_000u32.to_be_bytes());
    let (_, reason) = image_error(decode(&bomb, "bomb.png", None, &DecodeLimits::default()));
    assert!(reason.contains("over the limit") || reason.contains("CRC") || reason.contains("crc"), "{reason}");

    let big = encode(&gradient_rgb(300, 200), ImageFormat::Png);
    let limits = DecodeLimits { max_pixels: 10_000, ..Default::default() };
    let (_, reason) = image_error(decode(&big, "big.png", None, &limits));
    assert!(reason.contains("300×200") && reason.contains("over the limit"), "{reason}");
}

#[test]
fn a_batch_keeps_good_files_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    gradient_rgb(5, 5).save(&good).unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"garbage").unwrap();
    let missing = dir.path().join("missing.png");
    let batch = load_batch(&[bad, good, missing], [4, 4], &DecodeLimits::default(), &|_| {});
    assert_eq!(batch.images.len(), 1);
    assert_eq!(batch.images[0].0, 1);
    let failed: Vec<usize> = batch.failures.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, vec![0, 2]);
    assert!(batch.failures[0].1.to_string().contains("bad.png"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, "fuzz", Some([4, 4]), &DecodeLimits::default());
    }

    #[test]
    fn any_png_size_decodes_to_its_size(w in 1u32..40, h in 1u32..40, th in 1usize..20, tw in 1usize..20) {
        let png = encode(&gradient_rgb(w, h), ImageFormat::Png);
        let img = decode(&png, "p", Some([th, tw]), &DecodeLimits::default()).unwrap();
        prop_assert_eq!((img.height(), img.width()), (th, tw));
        prop_assert!(img.data().iter().all(|v| v.is_finite() && (0.0..=255.0).contains(v)));
    }
}
