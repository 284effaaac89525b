"""The end-to-end path: images (arrays or files) → features → clusters, and its bad input."""

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

import ferrocluster as fc


def test_synthetic_images_are_seeded_and_labelled():
    a, la = fc.datasets.make_images(n=12, size=(16, 24), classes=3, seed=1)
    b, _ = fc.datasets.make_images(n=12, size=(16, 24), classes=3, seed=1)
    c, _ = fc.datasets.make_images(n=12, size=(16, 24), classes=3, seed=2)
    assert a.shape == (12, 16, 24, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(la, np.arange(12) % 3)


def test_digits_match_scikit_learn(digits):
    from sklearn.datasets import load_digits

    images, labels = digits
    ref = load_digits()
    np.testing.assert_array_equal(labels, ref.target)
    np.testing.assert_array_equal(images, np.round(ref.images * 255 / 16).astype(np.uint8))


def test_features_then_kmeans_recovers_the_classes(textures):
    images, labels = textures
    X = fc.extract_features(images, fc.FeatureConfig(size=(32, 32), colour=fc.ColourHistogram(bins=8)))
    assert X.dtype == np.float32 and X.shape == (200, fc.FeatureConfig(size=(32, 32), colour=fc.ColourHistogram(bins=8)).dim)
    km = fc.KMeans(n_clusters=4, random_state=0).fit(X)
    assert adjusted_rand_score(labels, km.labels_) > 0.9
    assert fc.metrics.adjusted_rand_score(labels, km.labels_) == pytest.approx(adjusted_rand_score(labels, km.labels_), abs=1e-12)


def test_files_give_the_same_features_as_arrays(tmp_path, textures):
    images, _ = textures
    paths = []
    for i, img in enumerate(images[:20]):
        p = tmp_path / f"img{i:02}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    config = fc.FeatureConfig(size=(32, 32))
    np.testing.assert_array_equal(fc.extract_features(paths, config), fc.extract_features(images[:20], config))


def test_unreadable_files_raise_naming_the_file_or_are_skipped(tmp_path, textures):
    images, _ = textures
    good = tmp_path / "good.png"
    Image.fromarray(images[0]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(fc.ImageError, match="bad.png"):
        fc.extract_features([good, bad])
    X = fc.extract_features([bad, good, bad], on_error="skip")
    assert X.shape[0] == 1


def test_progress_callback_reaches_the_total(textures):
    images, _ = textures
    seen = []
    fc.extract_features(images, fc.FeatureConfig(size=(32, 32)), progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (200, 200)
    assert all(d <= t for d, t in seen)


@pytest.mark.parametrize(
    "images, message",
    [
        ([], "no images"),
        (np.zeros((4, 4)), "3-D .* or 4-D"),
        ([np.zeros((5, 5, 2), np.uint8)], "shape"),
        ([np.zeros((0, 5), np.uint8)], "empty"),
        ([np.array([["a"]])], "numeric"),
    ],
)
def test_bad_images_raise_value_error(images, message):
    with pytest.raises(ValueError, match=message):
        fc.extract_features(images)


def test_bad_configs_raise_value_error():
    with pytest.raises(ValueError, match="block_norm"):
        fc.FeatureConfig(hog=fc.Hog(block_norm="L3")).dim
    with pytest.raises(ValueError):
        fc.FeatureConfig(size=(0, 10)).dim
    with pytest.raises(ValueError):
        fc.FeatureConfig(hog=None).dim


def test_feature_config_round_trips_through_json():
    config = fc.FeatureConfig(size=(48, 40), grey=True, hog=fc.Hog(orientations=12), lbp=fc.Lbp(points=16, radius=2.0))
    assert fc.FeatureConfig.from_json(config.to_json()) == config
