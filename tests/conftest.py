"""Shared fixtures: real MNIST images from the embedded subset (no data folder needed)."""

import numpy as np
import pytest

from symspike.host import datasets


@pytest.fixture(scope="session")
def mnist_small():
    """``(x_train, y_train, x_test, y_test)``: the embedded MNIST subset (2000 / 1000)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SYMSPIKE_DATA", raising=False)
        x, y = datasets.load("mnist", "train")
        xt, yt = datasets.load("mnist", "test")
    return x, y, xt, yt
