"""The golden reference's ops against naive per-element Python loops (an independent model of
the IR semantics written straight from the ``lcp.ir`` docstring)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lcp.golden import run_layer
from lcp.ir import IRError, Layer, TensorSpec
from lcp.shapes import infer_layer


def naive_conv(x, w, b, stride, pads):
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    pt, pl, pb, pr = pads
    OH = (H + pt + pb - KH) // stride[0] + 1
    OW = (W + pl + pr - KW) // stride[1] + 1
    y = np.zeros((N, O, OH, OW), dtype=object)
    for n, o, i, j in itertools.product(range(N), range(O), range(OH), range(OW)):
        acc = int(b[o]) if b is not None else 0
        for c, u, v in itertools.product(range(C), range(KH), range(KW)):
            r, s = i * stride[0] + u - pt, j * stride[1] + v - pl
            if 0 <= r < H and 0 <= s < W:
                acc += int(w[o, c, u, v]) * int(x[n, c, r, s])
        y[n, o, i, j] = acc
    return y.astype(np.int64)


def naive_pool(x, k, stride, pads, fn, pad_value):
    N, C, H, W = x.shape
    pt, pl, pb, pr = pads
    OH = (H + pt + pb - k[0]) // stride[0] + 1
    OW = (W + pl + pr - k[1]) // stride[1] + 1
    y = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n, c, i, j in itertools.product(range(N), range(C), range(OH), range(OW)):
        vals = []
        for u, v in itertools.product(range(k[0]), range(k[1])):
            r, s = i * stride[0] + u - pt, j * stride[1] + v - pl
            vals.append(int(x[n, c, r, s]) if 0 <= r < H and 0 <= s < W else pad_value)
        y[n, c, i, j] = fn(vals)
    return y


def rnd_div(s, shift, mode):
    from fractions import Fraction
    f = Fraction(s, 2 ** shift)
    if mode == "floor":
        return f.numerator // f.denominator
    if mode == "ceil":
        return -((-f.numerator) // f.denominator)
    return round(f)         # Python rounds half to even


conv_params = st.tuples(
    st.integers(1, 3), st.integers(1, 4), st.integers(3, 7), st.integers(1, 3),
    st.integers(1, 3), st.integers(0, 2), st.integers(2, 8), st.booleans(), st.integers(0, 2**31))


@settings(max_examples=40, deadline=None)
@given(conv_params)
def test_conv(params):
    C, O, H, k, s, p, bits, signed, seed = params
    rng = np.random.default_rng(seed)
    if k > H + 2 * p:
        return
    lo, hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, (2, C, H, H))
    w = rng.integers(-7, 8, (O, C, k, k))
    b = rng.integers(-100, 100, O)
    layer = Layer("c", "conv", ["x"], "y", {"kernel": (k, k), "stride": (s, s),
                                           "pads": (p, p, p, p), "weight_bits": 4},
                  {"weight": w, "bias": b})
    spec = TensorSpec((C, H, H), lo, hi)
    y = run_layer(layer, [x], [spec])
    np.testing.assert_array_equal(y, naive_conv(x, w, b, (s, s), (p, p, p, p)))
    out = infer_layer(layer, [spec])
    assert y.shape[1:] == out.shape and y.min() >= out.lo and y.max() <= out.hi


def test_conv_wide_accumulators_use_exact_paths():
    """Bounds beyond 2**24 and 2**53 take float64 and int64 paths, still exact."""
    rng = np.random.default_rng(0)
    for wmax, xmax in [(2**10, 2**16), (2**30, 2**30)]:
        x = rng.integers(-xmax, xmax, (1, 2, 4, 4))
        w = rng.integers(-wmax, wmax, (3, 2, 3, 3))
        layer = Layer("c", "conv", ["x"], "y", {"kernel": (3, 3), "stride": (1, 1),
                                               "pads": (1, 1, 1, 1), "weight_bits": 32},
                      {"weight": w})
        y = run_layer(layer, [x], [TensorSpec((2, 4, 4), -xmax, xmax)])
        np.testing.assert_array_equal(y, naive_conv(x, w, None, (1, 1), (1, 1, 1, 1)))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.integers(0, 2**31))
def test_dense(F, O, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 16, (3, F))
    w = rng.integers(-128, 128, (O, F))
    b = rng.integers(-1000, 1000, O)
    layer = Layer("d", "dense", ["x"], "y", {"weight_bits": 8}, {"weight": w, "bias": b})
    y = run_layer(layer, [x], [TensorSpec((F,), 0, 15)])
    ref = np.array([[int(b[o]) + sum(int(w[o, f]) * int(x[n, f]) for f in range(F))
                     for o in range(O)] for n in range(3)])
    np.testing.assert_array_equal(y, ref)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 15), st.booleans(), st.integers(0, 2**31))
def test_threshold(C, L, per_channel, seed):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(-50, 50, (C if per_channel else 1, L)), axis=1)
    x = rng.integers(-60, 60, (4, C, 3, 3))
    layer = Layer("t", "threshold", ["x"], "y", {"out_lo": -2, "out_hi": -2 + L},
                  {"thresholds": t})
    y = run_layer(layer, [x], [TensorSpec((C, 3, 3), -60, 60)])
    for n, c, i, j in itertools.product(range(4), range(C), range(3), range(3)):
        row = t[c if per_channel else 0]
        assert y[n, c, i, j] == -2 + sum(int(x[n, c, i, j]) >= int(T) for T in row)


@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (1, 1), (1, 1, 1, 1)),
                                   ((3, 2), (2, 1), (1, 0, 1, 0))])
def test_maxpool(k, s, p):
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 8, (2, 3, 7, 6))
    layer = Layer("m", "maxpool", ["x"], "y", {"kernel": k, "stride": s, "pads": p})
    y = run_layer(layer, [x], [TensorSpec((3, 7, 6), -8, 7)])
    np.testing.assert_array_equal(y, naive_pool(x, k, s, p, max, -10**9))


@pytest.mark.parametrize("rounding", ["floor", "round", "ceil"])
@pytest.mark.parametrize("k,shift", [((2, 2), 2), ((3, 3), 4), ((2, 2), 0), ((3, 3), 3)])
def test_avgpool(rounding, k, shift):
    rng = np.random.default_rng(2)
    x = rng.integers(-16, 16, (2, 3, 6, 6))
    layer = Layer("a", "avgpool", ["x"], "y", {"kernel": k, "stride": k, "pads": (0, 0, 0, 0),
                                              "shift": shift, "rounding": rounding,
                                              "out_lo": -8, "out_hi": 7})
    y = run_layer(layer, [x], [TensorSpec((3, 6, 6), -16, 15)])
    ref = naive_pool(x, k, k, (0, 0, 0, 0), lambda v: min(7, max(-8, rnd_div(sum(v), shift,
                                                                              rounding))), 0)
    np.testing.assert_array_equal(y, ref)


def test_elementwise_ops():
    rng = np.random.default_rng(3)
    a, b = rng.integers(-5, 5, (2, 3, 4, 4)), rng.integers(-5, 5, (2, 3, 4, 4))
    s = TensorSpec((3, 4, 4), -5, 4)
    np.testing.assert_array_equal(run_layer(Layer("a", "add", ["a", "b"], "y"), [a, b], [s, s]),
                                  a + b)
    np.testing.assert_array_equal(run_layer(Layer("r", "relu", ["a"], "y"), [a], [s]),
                                  np.where(a > 0, a, 0))
    cat = run_layer(Layer("c", "concat", ["a", "b"], "y"), [a, b], [s, s])
    assert cat.shape == (2, 6, 4, 4) and np.array_equal(cat[:, 3:], b)
    flat = run_layer(Layer("f", "flatten", ["a"], "y"), [a], [s])
    assert flat.shape == (2, 48) and flat[1, 17] == a[1, 1, 0, 1]


def test_bad_layers_are_rejected():
    with pytest.raises(IRError, match="unknown op 'gelu'"):
        Layer("x", "gelu", ["a"], "y")
    with pytest.raises(IRError, match="takes 2 input"):
        Layer("x", "add", ["a"], "y")
    with pytest.raises(IRError, match="missing attribute 'stride'"):
        Layer("x", "maxpool", ["a"], "y", {"kernel": (2, 2), "pads": (0, 0, 0, 0)})
    with pytest.raises(IRError, match="not integer"):
        Layer("x", "dense", ["a"], "y", {"weight_bits": 4}, {"weight": np.ones((2, 2))})
    layer = Layer("c", "conv", ["x"], "y", {"kernel": (3, 3), "stride": (1, 1),
                                           "pads": (0, 0, 0, 0), "weight_bits": 4},
                  {"weight": np.ones((2, 4, 3, 3), np.int64)})
    with pytest.raises(IRError, match=r"layer 'c' \(conv\): weight \(2, 4, 3, 3\) does not "
                                      r"match input channels 3"):
        infer_layer(layer, [TensorSpec((3, 8, 8), 0, 15)])
    with pytest.raises(IRError, match=r"layer 'd' \(dense\): weights do not fit weight_bits=3"):
        Layer("d", "dense", ["a"], "y", {"weight_bits": 3}, {"weight": np.full((2, 2), 4)})
