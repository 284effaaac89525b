"""fc.hog / fc.local_binary_pattern / fc.extract_features against scikit-image 0.26, the oracle.

HOG must match `skimage.feature.hog` to 1e-6 (it is bit-identical in practice) with the same
output dtype and shape; LBP codes must be identical; a feature row must be the concatenation
of what scikit-image and numpy compute for the same image.
"""

import itertools
import warnings

import numpy as np
import pytest
from skimage.feature import hog as sk_hog
from skimage.feature import local_binary_pattern
from sklearn.datasets import load_digits

import ferrocluster as fc

TOL = 1e-6
NORMS = ["L1", "L1-sqrt", "L2", "L2-Hys"]
GREY_WEIGHTS = [np.float32(0.2125), np.float32(0.7154), np.float32(0.0721)]


def sk_lbp(image, points, radius, method):
    """scikit-image's LBP without its warning about float images (pytest turns it into an error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return local_binary_pattern(image, points, radius, method)


def grey(image):
    """The grey conversion of the feature pipeline: rgb2gray's weights, in float32, left to right."""
    rgb = image.astype(np.float32)
    wr, wg, wb = GREY_WEIGHTS
    return (rgb[..., 0] * wr + rgb[..., 1] * wg) + rgb[..., 2] * wb


def max_delta(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def digit_images():
    digits = load_digits().images[:8]
    for i, d in enumerate(digits):
        d8 = np.clip(d * 16, 0, 255).astype(np.uint8)
        yield f"digit{i}-32", np.kron(d8, np.ones((4, 4), np.uint8))
        yield f"digit{i}-64", np.kron(d8, np.ones((8, 8), np.uint8))


def random_images():
    rng = np.random.default_rng(0)
    yield "uint8-37x53", rng.integers(0, 256, (37, 53), dtype=np.uint8)
    yield "float32-37x53", (rng.random((37, 53)) * 255).astype(np.float32)
    yield "float64-41x66", rng.random((41, 66)) * 255
    yield "float32-integers-64", rng.integers(0, 256, (64, 64)).astype(np.float32)
    yield "rgb-uint8-37x53", rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    yield "rgb-float32-48x40", (rng.random((48, 40, 3)) * 255).astype(np.float32)
    yield "rgb-float64-33x47", rng.random((33, 47, 3)) * 255
    yy, xx = np.mgrid[0:48, 0:48]
    # Exact 0°, 45°, 90° and 135° gradients sit on bin bounds for 4 and 8 orientations.
    yield "diagonals-uint8", ((xx + yy) * 5 % 256).astype(np.uint8)
    yield "antidiagonals-float32", ((xx - yy) * 3.0 % 256).astype(np.float32)
    yield "checker-float64", ((xx // 3 + yy // 5) % 2) * 200.0
    yield "rgb-stripes-uint8", np.stack([xx * 7 % 256, yy * 11 % 256, (xx + yy) * 13 % 256], -1).astype(np.uint8)


HOG_PARAMS = (
    [dict()]
    + [
        dict(block_norm=norm, transform_sqrt=ts, cells_per_block=(2, 2))
        for norm, ts in itertools.product(NORMS, [False, True])
    ]
    + [dict(orientations=o, pixels_per_cell=(4, 4), cells_per_block=(2, 2)) for o in [1, 4, 6, 8, 12, 73, 81]]
    + [
        dict(pixels_per_cell=(5, 3), cells_per_block=(1, 2), orientations=7),
        dict(pixels_per_cell=(16, 16), cells_per_block=(1, 1)),
        dict(pixels_per_cell=(3, 7), cells_per_block=(4, 3), block_norm="L1"),
        dict(pixels_per_cell=(2, 2), cells_per_block=(6, 6), orientations=36, block_norm="L1-sqrt"),
    ]
)


def hog_cases():
    for (name, image), params in itertools.product(list(digit_images()) + list(random_images()), HOG_PARAMS):
        blocks = params.get("cells_per_block", (3, 3))
        cells = params.get("pixels_per_cell", (8, 8))
        if image.shape[0] >= blocks[0] * cells[0] and image.shape[1] >= blocks[1] * cells[1]:
            yield pytest.param(image, params, id=f"{name}-{params}")


@pytest.mark.parametrize("image,params", list(hog_cases()))
def test_hog_equals_skimage(image, params):
    kwargs = dict(params, channel_axis=-1 if image.ndim == 3 else None)
    expected = sk_hog(image, **kwargs)
    got = fc.hog(image, **kwargs)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert max_delta(got, expected) <= TOL


@pytest.mark.parametrize("name,image", list(digit_images()))
def test_hog_of_digits_is_bit_identical(name, image):
    expected = sk_hog(image, cells_per_block=(2, 2))
    np.testing.assert_array_equal(fc.hog(image, cells_per_block=(2, 2)), expected)


def test_hog_keeps_skimage_shape_and_dtype_conventions():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    for feature_vector in [True, False]:
        expected = sk_hog(image, pixels_per_cell=(8, 8), cells_per_block=(2, 3), feature_vector=feature_vector)
        got = fc.hog(image, pixels_per_cell=(8, 8), cells_per_block=(2, 3), feature_vector=feature_vector)
        assert got.shape == expected.shape and got.dtype == expected.dtype == np.float64
        assert max_delta(got, expected) <= TOL
    as_float32 = fc.hog(image.astype(np.float32))
    assert as_float32.dtype == np.float32
    assert max_delta(as_float32, sk_hog(image.astype(np.float32))) <= TOL
    # Positional arguments follow skimage's order.
    assert max_delta(fc.hog(image, 6, (4, 4), (2, 2), "L1"), sk_hog(image, 6, (4, 4), (2, 2), "L1")) <= TOL


@pytest.mark.parametrize("shape", [(64, 64), (37, 53, 3)])
def test_uint8_input_equals_float_input(shape):
    # uint8 images go to the core as they are and take its integer path; float64 images of
    # the same values are what scikit-image computes on.
    image = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
    axis = -1 if len(shape) == 3 else None
    for params in [dict(), dict(orientations=4, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L1")]:
        got = fc.hog(image, channel_axis=axis, **params)
        np.testing.assert_array_equal(got, fc.hog(image.astype(np.float64), channel_axis=axis, **params))
        np.testing.assert_array_equal(got, sk_hog(image, channel_axis=axis, **params))
    if axis is None:
        np.testing.assert_array_equal(
            fc.local_binary_pattern(image, 8, 1, "uniform"), fc.local_binary_pattern(image.astype(np.float64), 8, 1, "uniform")
        )


def test_hog_parameters_are_validated_whatever_was_called_before():
    image = np.zeros((32, 32), dtype=np.uint8)
    fc.hog(image, orientations=1, pixels_per_cell=(8, 8))
    with pytest.raises(ValueError):
        fc.hog(image, orientations=True, pixels_per_cell=(8, 8))
    with pytest.raises(ValueError):
        fc.hog(image, orientations=1, pixels_per_cell=(8.0, 8))


def test_hog_accepts_read_only_and_strided_input():
    rng = np.random.default_rng(2)
    big = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    view = big[5:70:2, ::-1]
    view.flags.writeable = False
    assert max_delta(fc.hog(view, channel_axis=-1), sk_hog(view, channel_axis=-1)) <= TOL


def test_hog_takes_what_skimage_takes_in_any_layout():
    # The core reads the arguments and the array as given: numpy integers, lists, byte orders,
    # strides and a single channel last must give what scikit-image gives.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    cases = [
        (image, dict(orientations=np.int64(6), pixels_per_cell=[np.int32(8), 8], cells_per_block=(np.int64(2), 2))),
        (np.asfortranarray(image), dict(cells_per_block=(2, 2))),
        (image.astype(">f8"), dict(cells_per_block=(2, 2))),
        (image.astype(np.float16), dict(cells_per_block=(2, 2))),
        (image[:, :, None], dict(cells_per_block=(2, 2), channel_axis=-1)),
        (np.stack([image, image[::-1], image[:, ::-1]]), dict(cells_per_block=(2, 2), channel_axis=0)),
    ]
    for arr, kwargs in cases:
        expected = sk_hog(arr, **kwargs)
        got = fc.hog(arr, **kwargs)
        assert got.dtype == expected.dtype and got.shape == expected.shape, (arr.dtype, arr.shape, kwargs)
        np.testing.assert_array_equal(got, expected)


def test_hog_rejects_bad_input():
    image = np.zeros((32, 32), dtype=np.uint8)
    with pytest.raises(ValueError, match="L2-Hys"):
        fc.hog(image, block_norm="L3")
    with pytest.raises(ValueError, match="too small"):
        fc.hog(np.zeros((20, 40), dtype=np.uint8))
    with pytest.raises(ValueError, match="empty|too small"):
        fc.hog(np.zeros((0, 0), dtype=np.float64), pixels_per_cell=(1, 1), cells_per_block=(1, 1))
    with pytest.raises(ValueError):
        fc.hog(np.zeros(64, dtype=np.float64))
    with pytest.raises(ValueError):
        fc.hog(np.zeros((4, 32, 32), dtype=np.float64))
    with pytest.raises(ValueError):
        fc.hog(image, visualize=True)
    with pytest.raises(ValueError):
        fc.hog(image, orientations=0)
    with pytest.raises(ValueError):
        fc.hog(image, pixels_per_cell=(0, 8))


LBP_PARAMS = [
    (1, 1.0),
    (3, 0.5),
    (4, 1.0),
    (8, 1.0),
    (8, -1.0),
    (8, 1.5),
    (8, 2.7),
    (12, 2.0),
    (16, 2.0),
    (24, 3.0),
    (8, 0.0),
    (6, 7.3),
    (10, 1.25),
]


def lbp_images():
    rng = np.random.default_rng(3)
    yield "uint8-noise", rng.integers(0, 256, (37, 53), dtype=np.uint8)
    yield "uint8-few-levels", rng.integers(0, 3, (29, 31), dtype=np.uint8)
    yield "uint8-digit", next(digit_images())[1]
    yield "float64-noise", rng.random((23, 19)) * 255
    yield "float32-levels", (rng.integers(0, 4, (17, 22)) * 0.3).astype(np.float32)
    yield "uint8-1x1", np.array([[5]], dtype=np.uint8)
    yield "uint8-3x2", rng.integers(0, 3, (3, 2), dtype=np.uint8)
    # Flat areas and ramps put interpolated samples next to the centre, where every rounding
    # of scikit-image's arithmetic shows.
    yield "uint8-flat", np.full((9, 70), 200, dtype=np.uint8)
    yield "uint8-ramps", (np.add.outer(np.arange(64), 3 * np.arange(64)) % 7).astype(np.uint8)
    yield "float64-tiny-ramps", np.add.outer(np.arange(20), np.arange(33)) * 1e-3


@pytest.mark.parametrize("method", ["default", "uniform", "ror", "nri_uniform"])
@pytest.mark.parametrize("points,radius", LBP_PARAMS)
@pytest.mark.parametrize("name,image", list(lbp_images()))
def test_lbp_codes_equal_skimage(name, image, points, radius, method):
    expected = sk_lbp(image, points, radius, method)
    got = fc.local_binary_pattern(image, points, radius, method=method)
    assert got.dtype == np.float64 and got.shape == expected.shape
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("seed", range(6))
def test_lbp_8_1_equals_skimage_on_random_images(seed):
    # P = 8, R = 1 has its own pass: random sizes, byte noise, few levels and float images.
    rng = np.random.default_rng(100 + seed)
    h, w = rng.integers(1, 80, 2)
    images = [
        rng.integers(0, 256, (h, w), dtype=np.uint8),
        rng.integers(0, 1 + seed, (h, w), dtype=np.uint8),
        rng.random((h, w)) * 10.0 ** rng.integers(-3, 4),
        (rng.integers(0, 3, (h, w)) * 0.1).astype(np.float32),
    ]
    for image in images:
        for method in ("default", "uniform", "ror", "nri_uniform"):
            assert np.array_equal(fc.local_binary_pattern(image, 8, 1, method), sk_lbp(image, 8, 1, method))


def test_lbp_rejects_bad_input():
    image = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(ValueError):
        fc.local_binary_pattern(np.zeros((8, 8, 3), dtype=np.uint8), 8, 1.0)
    with pytest.raises(ValueError):
        fc.local_binary_pattern(np.zeros(8, dtype=np.uint8), 8, 1.0)
    with pytest.raises(ValueError, match="uniform"):
        fc.local_binary_pattern(image, 8, 1.0, method="circular")
    with pytest.raises(ValueError):
        fc.local_binary_pattern(image, 0, 1.0)
    with pytest.raises(ValueError):
        fc.local_binary_pattern(image, 8, float("nan"))


def feature_images(n, size, seed):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for _ in range(n - 2)]
    # A digit in colour and a flat image: edges on a plain background, and no gradient at all.
    digit = next(digit_images())[1][: size[0], : size[1]]
    digit = np.pad(digit, [(0, size[0] - digit.shape[0]), (0, size[1] - digit.shape[1])])
    images.append(np.stack([digit, 255 - digit, digit // 2], -1))
    images.append(np.full(size + (3,), 77, dtype=np.uint8))
    return images


def expected_row(image, config):
    """One feature row from scikit-image and numpy: HOG, LBP histogram, colour histogram, pixels."""
    rgb = image.astype(np.float32)
    parts = []
    if config.hog is not None:
        h = config.hog
        kwargs = dict(
            orientations=h.orientations,
            pixels_per_cell=tuple(h.pixels_per_cell),
            cells_per_block=tuple(h.cells_per_block),
            block_norm=h.block_norm,
            transform_sqrt=h.transform_sqrt,
        )
        parts.append(sk_hog(grey(image), **kwargs) if config.grey else sk_hog(rgb, channel_axis=-1, **kwargs))
    if config.lbp is not None:
        codes = sk_lbp(grey(image), config.lbp.points, config.lbp.radius, config.lbp.method)
        counts = np.bincount(codes.astype(np.int64).ravel(), minlength=config.lbp.points + 2)
        parts.append(counts / codes.size)
    if config.colour is not None:
        bins = config.colour.bins
        if config.colour.joint:
            counts, _ = np.histogramdd(rgb.reshape(-1, 3), bins=bins, range=[(0, 256)] * 3)
            parts.append(counts.ravel() / counts.sum())
        else:
            for ch in range(3):
                counts, _ = np.histogram(rgb[..., ch], bins=bins, range=(0, 256))
                parts.append(counts / counts.sum())
    if config.pixels is not None:
        pixels = grey(image) if config.pixels.grey else rgb
        parts.append((pixels / np.float32(255)).ravel())
    return np.concatenate([np.asarray(p).astype(np.float32).ravel() for p in parts])


CONFIGS = [
    dict(),
    dict(grey=True),
    dict(
        size=(32, 48),
        hog=fc.Hog(orientations=8, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L1"),
        lbp=fc.Lbp(points=8, radius=1.0, method="uniform"),
        colour=fc.ColourHistogram(bins=16, joint=False),
        pixels=fc.Pixels(grey=False),
    ),
    dict(
        size=(40, 40),
        grey=True,
        hog=fc.Hog(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3), transform_sqrt=True),
        lbp=fc.Lbp(points=16, radius=2.0, method="uniform"),
        colour=fc.ColourHistogram(bins=4, joint=True),
        pixels=fc.Pixels(grey=True),
    ),
    dict(size=(24, 24), hog=None, lbp=fc.Lbp(points=8, radius=1.5, method="uniform")),
]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=[f"config{i}" for i in range(len(CONFIGS))])
def test_extract_features_rows_equal_skimage_and_numpy(kwargs):
    config = fc.FeatureConfig(**kwargs)
    size = tuple(config.size)
    images = feature_images(6, size, seed=len(kwargs))
    features = fc.extract_features(images, config)
    assert features.dtype == np.float32
    assert features.shape == (len(images), config.dim)
    for row, image in zip(features, images):
        expected = expected_row(image, config)
        assert row.shape == expected.shape
        assert max_delta(row, expected) <= TOL
    # A 4-D batch and a list give the same rows.
    np.testing.assert_array_equal(fc.extract_features(np.stack(images), config), features)


def test_default_config_is_rgb_hog_with_2x2_blocks():
    config = fc.FeatureConfig()
    assert tuple(config.size) == (64, 64)
    assert config.lbp is None and config.colour is None and config.pixels is None
    assert config.dim == 7 * 7 * 2 * 2 * 9
    image = feature_images(3, (64, 64), seed=5)[0]
    row = fc.extract_features([image])[0]
    assert max_delta(row, sk_hog(image.astype(np.float32), cells_per_block=(2, 2), channel_axis=-1)) <= TOL


def test_extract_features_of_grey_images_uses_them_as_rgb():
    config = fc.FeatureConfig(size=(32, 32))
    rng = np.random.default_rng(6)
    greys = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    as_rgb = np.repeat(greys[..., None], 3, axis=-1)
    np.testing.assert_array_equal(fc.extract_features(greys, config), fc.extract_features(as_rgb, config))
    np.testing.assert_array_equal(fc.extract_features(list(greys), config), fc.extract_features(as_rgb, config))


def test_feature_config_rejects_bad_parameters():
    images = feature_images(2, (16, 16), seed=7)

    # Each configuration is refused when built or at the latest when used.
    def extract(**kwargs):
        return fc.extract_features(images, fc.FeatureConfig(**kwargs))

    with pytest.raises(ValueError):
        extract(size=(16, 16), hog=None)
    with pytest.raises(ValueError, match="too small"):
        extract(size=(16, 16), hog=fc.Hog(cells_per_block=(3, 3)))
    with pytest.raises(ValueError):
        extract(size=(0, 16))
    with pytest.raises(ValueError, match="L2-Hys"):
        extract(size=(16, 16), hog=fc.Hog(block_norm="l2hys"))
    with pytest.raises(ValueError):
        extract(size=(16, 16), hog=None, lbp=fc.Lbp(points=0))
    with pytest.raises(ValueError):
        extract(size=(16, 16), hog=None, colour=fc.ColourHistogram(bins=0))


def test_extract_features_rejects_bad_images():
    config = fc.FeatureConfig(size=(32, 32))
    with pytest.raises(ValueError):
        fc.extract_features(np.zeros(32, dtype=np.uint8), config)
    with pytest.raises(ValueError):
        fc.extract_features([np.zeros((32, 32, 2), dtype=np.uint8)], config)
    with pytest.raises(ValueError):
        fc.extract_features([np.zeros((32, 32, 3, 1), dtype=np.uint8)], config)
