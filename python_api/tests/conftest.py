"""Shared fixtures: data made once per session."""

import numpy as np
import pytest

import ferrocluster as fc


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as uint8 images (1797, 8, 8) and labels."""
    return fc.datasets.load_digits()


@pytest.fixture(scope="session")
def textures():
    """Synthetic labelled RGB images (200, 32, 32, 3) in 4 classes."""
    return fc.datasets.make_images(n=200, size=(32, 32), classes=4, seed=7)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
