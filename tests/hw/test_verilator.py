"""Whole branches and LCP cores in Verilator, driven by the cocotb testbench :mod:`lcp.hw.tb`.

Each design is simulated back to back without pauses (the simulated latency and interval must
equal the cycle model's: the acceptance bound is 5 %) and once more with idle cycles on the input
and back-pressure on the output; the outputs must equal the golden reference bit for bit.
Builds are content-addressed (model, folding, generator sources), so re-runs reuse them.
"""

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.hw.folding import Folding
from lcp.hw.sim import simulate

from tests.hw.irgen import Builder

PAUSES = dict(src_pause=[1, 1, 1, 0], sink_pause=[0, 0, 0, 1, 1])


def branch_model():
    b = Builder((2, 8, 8), in_bits=8, seed=21)
    x = b.conv("input", 4, 3, pad=1)
    x = b.threshold(x, 4)
    x = b.maxpool(x, 2)
    y = b.conv(x, 4, 3, pad=1)
    y = b.threshold(y, 4)
    x = b.relu(b.add(x, y))
    x = b.flatten(x)
    x = b.dense(x, 12)
    x = b.threshold(x, 4)
    return b.model()


def core_model():
    b = Builder((1, 8, 8), in_bits=8, seed=22)
    outs = []
    for k in range(3):
        br = f"b{k}"
        x = b.conv("input", 2, 3, pad=1, br=br)
        x = b.threshold(x, 4, br=br)
        x = b.maxpool(x, 2, br=br)
        x = b.flatten(x, br=br)
        x = b.dense(x, 6, br=br)
        outs.append(b.threshold(x, 4, br=br, shared=True))
    b.dense(b.concat(outs), 5, br="merge")
    return b.model()


def _x(model, n, seed=0):
    s = model.input
    return np.random.default_rng(seed).integers(s.lo, s.hi + 1, size=(n, *s.shape))


def _check_timing(build, res):
    for got, want in ((res.latency, build.timing.latency), (res.interval, build.timing.interval)):
        assert abs(got - want) <= 0.05 * got, (got, want)
    assert res.latency == build.timing.latency and res.interval == build.timing.interval


def test_branch_exact_and_timed():
    m = branch_model()
    L = [l.name for l in m.branches[0].layers]
    fold = Folding({L[0]: {"pe": 2, "simd": 9}, L[3]: {"pe": 4, "simd": 12},
                    L[8]: {"pe": 4, "simd": 4}}, 32, 16)
    xq = _x(m, 4)
    want = Golden(m).run_branch(0, xq)
    build, res = simulate(m, xq, folding=fold, scope="branch", expected=want,
                          monitor_input=True)
    np.testing.assert_array_equal(res.outputs, want)
    assert res.mismatches == []
    _check_timing(build, res)
    res = simulate(m, xq, folding=fold, scope="branch", expected=want, **PAUSES)[1]
    np.testing.assert_array_equal(res.outputs, want)


def test_core_exact_and_timed():
    m = core_model()
    xq = _x(m, 5, seed=1)
    fold = None           # the default folding (shared with the `lcp run --backend sim` test)
    want = Golden(m).run_int(xq)
    build, res = simulate(m, xq, folding=fold, expected=want)
    np.testing.assert_array_equal(res.outputs, want)
    _check_timing(build, res)
    res = simulate(m, xq, folding=fold, expected=want, **PAUSES)[1]
    np.testing.assert_array_equal(res.outputs, want)


def mlp_core_model():
    """Branches of fully connected layers reading the whole image, several output passes each:
    the input adapter (two pixels per 16-bit word) is slower than the engines' first pass, so
    back-pressure reaches the AXI input (the LeNet-FC shape)."""
    b = Builder((1, 8, 8), in_bits=8, seed=23)
    outs = []
    for k in range(3):
        br = f"b{k}"
        x = b.flatten("input", br=br)
        x = b.dense(x, 8, br=br)
        outs.append(b.threshold(x, 4, br=br))
    b.dense(b.concat(outs), 5, br="merge")
    return b.model()


def test_input_bound_core_timed():
    m = mlp_core_model()
    dense = [l.name for br in m.branches for l in br.layers if l.op == "dense"]
    (merge,) = [l.name for l in m.merge.layers if l.op == "dense"]
    # 8 input beats of 8 pixels, 4 passes of 8 steps per image; the 16-bit input needs 32
    # cycles for the 8 beats, so each first pass waits for the input (48 cycles per image)
    fold = Folding({**{name: {"pe": 2, "simd": 8} for name in dense},
                    merge: {"pe": 5, "simd": 24}}, 16, 16)
    xq = _x(m, 4, seed=2)
    want = Golden(m).run_int(xq)
    build, res = simulate(m, xq, folding=fold, expected=want)
    np.testing.assert_array_equal(res.outputs, want)
    _check_timing(build, res)


def lanes_model():
    """The wider op set in one branch: bipolar-weight conv on an 8-bit input, sign, XNOR
    depthwise conv, sign, max pool of bipolar values, grouped integer conv on bipolar inputs,
    signed thresholds, and a scale-aligned add of two requantized paths."""
    b = Builder((4, 7, 7), in_bits=8, signed=True, seed=24)
    x = b.conv("input", 4, 3, pad=1, wbits="bipolar")
    x = b.sign(x)
    x = b.conv(x, 4, 3, pad=1, wbits="bipolar", groups=4)
    x = b.sign(x)
    x = b.maxpool(x, 2)
    y = b.conv(x, 6, 1, wbits=3, groups=2)
    y0 = b.threshold(y, 3, out_lo=-4)
    z = b.conv(x, 6, 3, pad=1, wbits=4, groups=2)
    z0 = b.threshold(z, 2, out_lo=-1)
    b.add(y0, z0, mul=(3, 2))
    return b.model()


def one_d_model():
    b = Builder((3, 20), in_bits=4, seed=25)
    x = b.conv("input", 6, 5, pad=2, groups=3)
    x = b.threshold(x, 3)
    x = b.maxpool(x, 2)
    x = b.conv(x, 4, 3, stride=2)
    x = b.threshold(x, 2, out_lo=-2)
    x = b.flatten(x)
    x = b.dense(x, 5)
    return b.model()


@pytest.mark.parametrize("which", ["lanes", pytest.param("one_d", marks=pytest.mark.slow)])
def test_wider_ops_exact_and_timed(which):
    """Grouped/depthwise, 1-bit lanes, scaled add, signed thresholds (and 1-D windows): exact
    and timed in Verilator, exact again with idles and back-pressure."""
    m = lanes_model() if which == "lanes" else one_d_model()
    s = m.input
    xq = np.random.default_rng(3).integers(s.lo, s.hi + 1, size=(3, *s.shape))
    want = Golden(m).run_branch(0, xq)
    L = [l for l in m.branches[0].layers if l.op in ("conv", "dense")]

    def upto(n, k):                  # largest divisor of n not above k
        return max(d for d in range(1, k + 1) if n % d == 0)
    fold = Folding({l.name: {"pe": upto(l.weight.shape[0], 2),
                             "simd": upto(int(np.prod(l.weight.shape[1:])), 3)} for l in L},
                   32, 16)
    build, res = simulate(m, xq, folding=fold, scope="branch", expected=want)
    np.testing.assert_array_equal(res.outputs, want)
    _check_timing(build, res)
    res = simulate(m, xq, folding=fold, scope="branch", expected=want, **PAUSES)[1]
    np.testing.assert_array_equal(res.outputs, want)
