"""Wire encodings: exact round trips, the packed size equals the IR's bit-packed size."""

import numpy as np
import pytest

from lcp.ir import IRError, TensorSpec
from lcp.sw.cluster import wire


RANGES = [(0, 1), (0, 3), (0, 7), (0, 15), (0, 255), (-8, 7), (-128, 127), (0, 31),
          (-2048, 2047), (-70000, 90000), (5, 20)]


@pytest.mark.parametrize("lo,hi", RANGES)
@pytest.mark.parametrize("encoding", wire.ENCODINGS)
def test_round_trip_exact(lo, hi, encoding):
    rng = np.random.default_rng(lo & 0xFF)
    spec = TensorSpec((3, 5, 7), lo, hi, scale=0.0371)
    x = rng.integers(lo, hi + 1, (2, 3, 5, 7))
    x.flat[0], x.flat[1] = lo, hi
    msg = wire.encode(x, spec, encoding)
    y = wire.decode(msg, spec)
    assert y.dtype == np.int64 and y.shape == x.shape
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_packed_size_is_ir_nbytes(bits):
    spec = TensorSpec((64, 3, 3), 0, (1 << bits) - 1)
    x = np.random.default_rng(bits).integers(0, 1 << bits, (1, 64, 3, 3))
    assert len(wire.encode(x, spec)["d"]) == spec.nbytes


def test_odd_sizes_and_flat_tensors():
    spec = TensorSpec((13,), 0, 15)
    x = np.arange(13).reshape(1, 13) % 16
    msg = wire.encode(x, spec)
    assert len(msg["d"]) == 7
    np.testing.assert_array_equal(wire.decode(msg, spec), x)


def test_zfp_lz4_is_defers_format():
    import lz4.frame
    import zfpy
    spec = TensorSpec((4, 6, 6), 0, 15, scale=0.0728)
    x = np.random.default_rng(1).integers(0, 16, (1, 4, 6, 6))
    d = wire.encode(x, spec, "zfp-lz4")["d"]
    f = zfpy.decompress_numpy(lz4.frame.decompress(d))
    assert f.dtype == np.float32 and f.shape == (1, 6, 6, 4)     # channels last, as Keras
    np.testing.assert_array_equal(f, np.moveaxis(x, 1, -1).astype(np.float32)
                                  * np.float32(0.0728))


def test_encode_rejects_out_of_range_and_floats():
    spec = TensorSpec((2,), 0, 15)
    with pytest.raises(IRError, match="outside"):
        wire.encode(np.array([[0, 16]]), spec)
    with pytest.raises(IRError, match="integer"):
        wire.encode(np.array([[0.5, 1.0]]), spec)
    with pytest.raises(IRError, match="unknown wire encoding"):
        wire.encode(np.array([[0, 1]]), spec, "gzip")


def test_decode_checks_against_the_expected_spec():
    spec = TensorSpec((4,), 0, 15)
    msg = wire.encode(np.array([[1, 2, 3, 4]]), spec)
    with pytest.raises(IRError, match="shape"):
        wire.decode(msg, TensorSpec((5,), 0, 15))
    with pytest.raises(IRError, match="outside"):
        wire.decode(msg, TensorSpec((4,), 0, 2))
    bad = dict(msg, d=msg["d"][:-1])
    with pytest.raises(IRError, match="payload"):
        wire.decode(bad)
    with pytest.raises(IRError, match="malformed"):
        wire.decode({"e": "packed"})
