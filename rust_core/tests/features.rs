//! The feature pipeline through the public API: configuration files, batches, errors.

use std::sync::atomic::{AtomicUsize, Ordering};

use ferrocluster_core::features::{BlockNorm, ColourHistogram, FeatureConfig, Hog, Lbp, LbpMethod, Pixels};
use ferrocluster_core::image::{DecodedImage, Image, ImageView};
use ndarray::{s, Array2};
use proptest::prelude::*;

fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 256) as f32
        })
        .collect()
}

fn everything() -> FeatureConfig {
    FeatureConfig {
        size: [32, 40],
        grey: false,
        hog: Some(Hog { orientations: 8, pixels_per_cell: [8, 8], cells_per_block: [2, 2], ..Hog::default() }),
        lbp: Some(Lbp::default()),
        colour: Some(ColourHistogram { bins: 8, joint: false }),
        pixels: Some(Pixels { grey: true }),
    }
}

#[test]
fn configuration_round_trips_through_json_and_has_skimage_defaults() {
    let config = everything();
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains("\"L2-Hys\"") && json.contains("\"uniform\""), "{json}");
    assert_eq!(serde_json::from_str::<FeatureConfig>(&json).unwrap(), config);

    let partial: FeatureConfig = serde_json::from_str(r#"{"size": [48, 48], "lbp": {"points": 16}}"#).unwrap();
    assert_eq!(partial.hog, FeatureConfig::default().hog);
    assert_eq!(partial.lbp, Some(Lbp { points: 16, radius: 1.0, method: LbpMethod::Uniform }));
    assert!(serde_json::from_str::<FeatureConfig>(r#"{"sise": [48, 48]}"#).is_err());
    assert!(serde_json::from_str::<FeatureConfig>(r#"{"hog": {"block_norm": "L3"}}"#).is_err());

    let hog = Hog::default();
    assert_eq!(
        (hog.orientations, hog.pixels_per_cell, hog.cells_per_block, hog.block_norm, hog.transform_sqrt),
        (9, [8, 8], [3, 3], BlockNorm::L2Hys, false)
    );
    assert_eq!(FeatureConfig::default().dim(), 7 * 7 * 2 * 2 * 9);
    assert_eq!(everything().dim(), 3 * 4 * 2 * 2 * 8 + 10 + 24 + 32 * 40);
}

#[test]
fn a_batch_equals_its_images_one_by_one_in_any_output_layout() {
    let config = everything();
    let [h, w] = config.size;
    let pixels: Vec<Vec<f32>> = (0..150).map(|i| noise(h * w * 3, i)).collect();
    let images: Vec<ImageView<'_, f32>> = pixels.iter().map(|p| ImageView::new(h, w, 3, p).unwrap()).collect();

    let calls = AtomicUsize::new(0);
    let last = AtomicUsize::new(0);
    let mut batch = Array2::zeros((images.len(), config.dim()));
    config
        .extract_into(&images, batch.view_mut(), &|done| {
            calls.fetch_add(1, Ordering::Relaxed);
            last.fetch_max(done, Ordering::Relaxed);
        })
        .unwrap();
    assert_eq!(last.load(Ordering::Relaxed), images.len());
    assert!(calls.load(Ordering::Relaxed) >= 2);

    let mut one = vec![0.0; config.dim()];
    for (image, row) in images.iter().zip(batch.rows()) {
        config.extract_one(*image, &mut one).unwrap();
        assert_eq!(row.as_slice().unwrap(), one.as_slice());
        assert!(one.iter().all(|v| v.is_finite()));
    }
    // Rows that are not contiguous (a column-major matrix) receive the same values.
    let mut fortran = Array2::zeros((config.dim(), images.len()));
    config.extract_into(&images, fortran.view_mut().reversed_axes(), &|_| {}).unwrap();
    assert_eq!(fortran.t(), batch);
    assert_eq!(config.extract(&images[..3]).unwrap(), batch.slice(s![..3, ..]));
    assert_eq!(config.extract(&[]).unwrap().dim(), (0, config.dim()));
}

#[test]
fn wrong_images_and_configurations_are_errors_that_say_why() {
    let config = everything();
    let good = noise(32 * 40 * 3, 1);
    let grey = noise(32 * 40, 2);
    let small = noise(31 * 40 * 3, 3);
    let images = [
        ImageView::new(32, 40, 3, &good).unwrap(),
        ImageView::new(32, 40, 1, &grey).unwrap(),
        ImageView::new(31, 40, 3, &small).unwrap(),
    ];
    let err = config.extract(&images).unwrap_err().to_string();
    assert!(err.contains("image 1") && err.contains("32×40×3"), "{err}");
    let err = config.extract_one(images[2], &mut vec![0.0; config.dim()]).unwrap_err().to_string();
    assert!(err.contains("31×40×3"), "{err}");
    assert!(config.extract_one(images[0], &mut vec![0.0; config.dim() - 1]).is_err());
    assert!(config.extract_into(&images[..1], Array2::zeros((2, config.dim())).view_mut(), &|_| {}).is_err());

    for bad in [
        FeatureConfig { hog: None, lbp: None, colour: None, pixels: None, ..everything() },
        FeatureConfig { size: [0, 40], ..everything() },
        FeatureConfig { size: [5000, 40], ..everything() },
        FeatureConfig { size: [8, 40], ..everything() },
        FeatureConfig { lbp: Some(Lbp { points: 40, ..Lbp::default() }), ..everything() },
        FeatureConfig { colour: Some(ColourHistogram { bins: 100, joint: true }), ..everything() },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        assert!(bad.extract(&images[..1]).is_err());
    }
}

#[test]
fn decoded_bytes_give_the_features_of_their_f32_values() {
    // HOG takes bytes on its integer path, and converts f32 values that are bytes to it: the
    // f32 extraction is the oracle, for every part that converts them itself.
    let hog = |hog: Hog| FeatureConfig { size: [32, 40], hog: Some(hog), ..FeatureConfig::default() };
    let mut configs = vec![everything(), FeatureConfig { grey: true, ..everything() }, hog(Hog::default())];
    for block_norm in BlockNorm::ALL {
        for transform_sqrt in [false, true] {
            configs.push(hog(Hog { block_norm, transform_sqrt, cells_per_block: [2, 2], ..Hog::default() }));
        }
    }
    for (seed, config) in configs.iter().enumerate() {
        let [h, w] = config.size;
        let floats = noise(h * w * 3, seed as u64);
        let bytes: Vec<u8> = floats.iter().map(|&v| v as u8).collect();
        let extractor = config.extractor().unwrap();
        let mut expected = vec![0.0; config.dim()];
        extractor.extract(ImageView::new(h, w, 3, &floats).unwrap(), &mut expected).unwrap();
        let mut got = vec![f32::NAN; config.dim()];
        extractor.extract_decoded(&DecodedImage::Bytes(Image::from_vec(h, w, 3, bytes).unwrap()), &mut got).unwrap();
        assert_eq!(got, expected, "{config:?}");
    }
    let small = DecodedImage::Bytes(Image::from_vec(4, 4, 3, vec![0; 48]).unwrap());
    assert!(FeatureConfig::default().extractor().unwrap().extract_decoded(&small, &mut [0.0; 1764]).is_err());
}

#[test]
fn grey_hog_sees_the_grey_conversion() {
    let config = FeatureConfig { size: [24, 24], grey: true, ..FeatureConfig::default() };
    let rgb = noise(24 * 24 * 3, 9);
    let image = ImageView::new(24, 24, 3, &rgb).unwrap();
    let grey = ferrocluster_core::features::grey(image);
    let expected = config.hog.as_ref().unwrap().compute(ImageView::new(24, 24, 1, &grey).unwrap()).unwrap();
    assert_eq!(config.extract(&[image]).unwrap().row(0).to_vec(), expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_configuration_gives_finite_features_or_an_error(
        h in 1usize..48, w in 1usize..48, grey in any::<bool>(),
        hog in proptest::option::of((1usize..13, 1usize..10, 1usize..4, 0usize..4, any::<bool>())),
        lbp in proptest::option::of((1usize..20, 0.0f64..5.0, 0usize..4)),
        colour in proptest::option::of((1usize..40, any::<bool>())),
        pixels in proptest::option::of(any::<bool>()),
        seed in any::<u64>(),
    ) {
        let config = FeatureConfig {
            size: [h, w],
            grey,
            hog: hog.map(|(orientations, cell, block, norm, transform_sqrt)| Hog {
                orientations,
                pixels_per_cell: [cell, cell + 1],
                cells_per_block: [block, block],
                block_norm: BlockNorm::ALL[norm],
                transform_sqrt,
            }),
            lbp: lbp.map(|(points, radius, method)| Lbp { points, radius, method: LbpMethod::ALL[method] }),
            colour: colour.map(|(bins, joint)| ColourHistogram { bins, joint }),
            pixels: pixels.map(|grey| Pixels { grey }),
        };
        let data = noise(h * w * 3, seed);
        let image = ImageView::new(h, w, 3, &data).unwrap();
        match config.extract(&[image, image]) {
            Ok(features) => {
                prop_assert!(config.validate().is_ok());
                prop_assert_eq!(features.dim(), (2, config.dim()));
                prop_assert!(features.iter().all(|v| v.is_finite()));
                prop_assert_eq!(features.row(0), features.row(1));
            }
            Err(_) => prop_assert!(config.validate().is_err()),
        }
    }
}
