//! Decoding every supported format and depth, and refusing bad files with a typed error.

use std::io::Cursor;

use ferrocluster_core::image::{decode, decode_dynamic, load, load_batch, to_rgb, DecodeLimits};
use ferrocluster_core::Error;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};
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

/// A PNG written with the `png` crate: any colour type and bit depth, with a palette and a
/// transparency chunk where given.
fn png_bytes(w: u32, h: u32, colour: png::ColorType, depth: png::BitDepth, palette: Option<(&[u8], &[u8])>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, w, h);
    encoder.set_color(colour);
    encoder.set_depth(depth);
    if let Some((palette, trns)) = palette {
        encoder.set_palette(palette.to_vec());
        if !trns.is_empty() {
            encoder.set_trns(trns.to_vec());
        }
    }
    let row_bytes = (w as usize * colour.samples() * depth as usize).div_ceil(8);
    let data: Vec<u8> = (0..row_bytes * h as usize).map(|i| (i * 37 % 251) as u8).collect();
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    bytes
}

#[test]
fn png_of_every_layout_decodes_as_the_image_crate_does() {
    // The oracle: `image`'s own PNG decoder and conversion to RGB, what PNGs went through
    // before they were decoded directly.
    use png::{BitDepth, ColorType};
    let palette: Vec<u8> = (0..16 * 3).map(|i| (i * 16) as u8).collect();
    let trns = [0u8, 128, 255];
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (
            "L8".into(),
            encode(
                &DynamicImage::ImageLuma8(ImageBuffer::from_fn(11, 7, |x, y| Luma([(x * 23 + y) as u8]))),
                ImageFormat::Png,
            ),
        ),
        (
            "La8".into(),
            encode(
                &DynamicImage::ImageLumaA8(ImageBuffer::from_fn(11, 7, |x, y| LumaA([(x * 23) as u8, (y * 30) as u8]))),
                ImageFormat::Png,
            ),
        ),
        ("Rgb8".into(), encode(&gradient_rgb(11, 7), ImageFormat::Png)),
        (
            "Rgba8".into(),
            encode(
                &DynamicImage::ImageRgba8(ImageBuffer::from_fn(11, 7, |x, y| {
                    Rgba([x as u8 * 20, y as u8 * 30, 7, (x * y) as u8])
                })),
                ImageFormat::Png,
            ),
        ),
        (
            "L16".into(),
            encode(
                &DynamicImage::ImageLuma16(ImageBuffer::from_fn(11, 7, |x, y| Luma([(x * 5000 + y * 77) as u16]))),
                ImageFormat::Png,
            ),
        ),
        (
            "Rgba16".into(),
            encode(
                &DynamicImage::ImageRgba16(ImageBuffer::from_fn(11, 7, |x, y| {
                    Rgba([(x * 5000) as u16, (y * 9000) as u16, 12345, 65535 - x as u16])
                })),
                ImageFormat::Png,
            ),
        ),
    ];
    for (colour, depth) in [
        (ColorType::Grayscale, BitDepth::One),
        (ColorType::Grayscale, BitDepth::Two),
        (ColorType::Grayscale, BitDepth::Four),
        (ColorType::GrayscaleAlpha, BitDepth::Sixteen),
        (ColorType::Rgb, BitDepth::Sixteen),
    ] {
        cases.push((format!("{colour:?} {depth:?}"), png_bytes(11, 7, colour, depth, None)));
    }
    cases.push(("palette".into(), png_bytes(11, 7, ColorType::Indexed, BitDepth::Four, Some((&palette[..], &[][..])))));
    cases.push((
        "palette+tRNS".into(),
        png_bytes(11, 7, ColorType::Indexed, BitDepth::Four, Some((&palette[..], &trns[..]))),
    ));
    let limits = DecodeLimits::default();
    for (name, bytes) in &cases {
        let oracle = decode_dynamic(bytes, name, &limits).unwrap();
        let eight_bit = oracle.color().bytes_per_pixel() == oracle.color().channel_count();
        for size in [None, Some([7, 11]), Some([5, 13])] {
            let got = decode(bytes, name, size, &limits).unwrap();
            // 8-bit pixels at their size are the integers themselves, as an array of them
            // gives (`image`'s float conversion of grey + alpha is an ulp off some of them).
            let expected = if eight_bit && size != Some([5, 13]) {
                let exact: Vec<f32> = oracle.to_rgb8().into_raw().into_iter().map(f32::from).collect();
                ferrocluster_core::image::Image::from_vec(7, 11, 3, exact).unwrap()
            } else {
                to_rgb(&oracle, size)
            };
            assert_eq!(got, expected, "{name} at {size:?}");
        }
    }
}

#[test]
fn files_decode_as_their_bytes_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.png");
    let bytes = encode(&gradient_rgb(9, 6), ImageFormat::Png);
    std::fs::write(&path, &bytes).unwrap();
    let limits = DecodeLimits::default();
    assert_eq!(load(&path, None, &limits).unwrap(), decode(&bytes, "g.png", None, &limits).unwrap());
    let small = DecodeLimits { max_file_bytes: bytes.len() as u64 - 1, ..limits };
    let (name, reason) = image_error(load(&path, None, &small));
    assert!(name.ends_with("g.png") && reason.contains("over the limit"), "{name}: {reason}");
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
