"""Each layer engine in Amaranth's simulator: random shapes, bit widths and foldings.

Every case is a one-branch IR model (random weights and thresholds) around the engine under
test, lowered to its plan graph (AXI adapters included) and simulated with one testbench per
side. Outputs must equal the golden reference; without pauses the simulated cycles of every
image must equal the cycle model's exactly, and with idle cycles and back-pressure the outputs
must still be exact.
"""

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.hw.base import divisors
from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch
from lcp.ir import IRError

from tests.hw.amsim import simulate_graph
from tests.hw.irgen import Builder

PAUSES = dict(src_pause=[1, 1, 1, 0], sink_pause=[0, 1, 1, 0, 0])


def _inputs(model, n, seed=0):
    rng = np.random.default_rng(seed)
    s = model.input
    if s.bipolar:
        return 2 * rng.integers(0, 2, size=(n, *s.shape)) - 1
    return rng.integers(s.lo, s.hi + 1, size=(n, *s.shape))


def check(model, folding, n=2, seed=0, pauses=True, timing=True):
    """Golden == simulation (with and without pauses); model cycles == simulated cycles."""
    xq = _inputs(model, n, seed)
    want = Golden(model).run_branch(0, xq)
    g = lower_branch(model, 0, folding)
    t = g.timing(frames=n)
    got, stamps = simulate_graph(g, xq)
    np.testing.assert_array_equal(got, want)
    if timing:
        assert stamps["first_in"] == 0
        assert stamps["last_out"] == t.last_out
    if pauses:
        got, _ = simulate_graph(g, xq, **PAUSES)
        np.testing.assert_array_equal(got, want)
    return g


def _rand_fold(rng, O, F, name):
    return {name: {"pe": int(rng.choice(divisors(O))), "simd": int(rng.choice(divisors(F)))}}


CONV_CASES = [
    # C, H, W, O, k, stride, pads, in_bits, signed, wbits
    (1, 6, 6, 2, 3, 1, (1, 1, 1, 1), 8, False, 4),
    (2, 5, 7, 3, 3, 2, (1, 0, 1, 2), 4, True, 3),
    (3, 6, 5, 4, 1, 1, (0, 0, 0, 0), 2, False, 2),
    (2, 7, 7, 2, 5, 1, (2, 2, 2, 2), 5, True, 8),
    (4, 6, 6, 3, 2, 2, (0, 0, 1, 1), 3, False, 4),
    (1, 5, 8, 5, 4, 3, (2, 1, 0, 3), 8, True, 6),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv(case):
    C, H, W, O, k, s, pads, ib, sg, wb = CONV_CASES[case]
    rng = np.random.default_rng(case)
    b = Builder((C, H, W), in_bits=ib, signed=sg, seed=case)
    x = b.conv("input", O, k, stride=s, pads=pads, wbits=wb)
    m = b.model()
    F = C * k * k
    # the window output in two registers (pingpong, FPGA builds) in every other folding, the
    # line buffer's write registered (lb_reg, FPGA builds) in every other pair
    fold = _rand_fold(rng, O, F, x)
    fold[x]["pingpong"] = case % 2
    fold[x]["lb_reg"] = case // 2 % 2
    check(m, Folding(fold, int(rng.choice([8, 16, 32, 64])), 16))
    const = {"pe": O, "simd": F, "pingpong": 1 - case % 2,       # a window every cycle
             "lb_reg": 1 - case // 2 % 2}
    check(m, Folding({x: const}, 64, 64), n=2, pauses=False)


@pytest.mark.parametrize("seed", range(4))
def test_dense_after_flatten(seed):
    rng = np.random.default_rng(seed)
    C, H, W = int(rng.integers(1, 4)), int(rng.integers(2, 5)), int(rng.integers(2, 5))
    O = int(rng.integers(2, 9))
    b = Builder((C, H, W), in_bits=int(rng.integers(2, 9)), signed=bool(seed % 2), seed=seed)
    f = b.flatten("input")
    d = b.dense(f, O, wbits=int(rng.integers(2, 9)), bias=bool(seed % 3))
    m = b.model()
    check(m, Folding(_rand_fold(rng, O, C * H * W, d), 16, 32))


@pytest.mark.parametrize("seed", range(3))
def test_dense_chain_pe_simd(seed):
    """conv -> pool -> flatten (HWC order) -> dense -> threshold -> dense."""
    rng = np.random.default_rng(10 + seed)
    b = Builder((2, 6, 6), seed=seed)
    x = b.conv("input", 3, 3, pad=1)
    x = b.threshold(x, 3)
    x = b.maxpool(x, 2)
    x = b.flatten(x)
    d0 = b.dense(x, 6)
    x = b.threshold(d0, 4)
    d1 = b.dense(x, 4)
    m = b.model()
    fold = {**_rand_fold(rng, 6, 27, d0), **_rand_fold(rng, 4, 6, d1),
            **_rand_fold(rng, 3, 18, m.branches[0].layers[0].name)}
    check(m, Folding(fold, 32, 8))


def chain_model():
    """conv (2x6x6 -> 4) -> threshold -> flatten -> dense (144 -> 6) -> threshold -> dense (4):
    the model and its three MVU layers' names."""
    b = Builder((2, 6, 6), seed=3)
    c = b.conv("input", 4, 3, pad=1, wbits=4)
    x = b.threshold(c, 3)
    x = b.flatten(x)
    d0 = b.dense(x, 6, wbits=6)
    x = b.threshold(d0, 4)
    d1 = b.dense(x, 4)
    return b.model(), (c, d0, d1)


@pytest.mark.parametrize("tree_k,ram_reg,load_always", [(1, 0, 0), (2, 0, 0), (2, 1, 1),
                                                         (1, 2, 1)])
def test_pipelined_adder_trees(tree_k, ram_reg, load_always):
    """Adder trees registered every ``tree_k`` levels (constant, LUT, DSP and folded lanes),
    with ``ram_reg`` also the memory reads (one or two registers), with ``load_always`` the
    operand register loaded every cycle and the conv's window output in two registers (FPGA
    builds): outputs exact, model cycles == simulated cycles, the latency grown by the added
    stages."""
    m, (c, d0, d1) = chain_model()
    flat = {c: {"pe": 4, "simd": 18}, d0: {"pe": 3, "simd": 8, "dsp": 12}, d1: {"pe": 4, "simd": 6}}
    extra = {k: v for k, v in (("ram_reg", ram_reg), ("load_always", load_always)) if v}
    piped = {k: {**v, "tree_k": tree_k, **extra} for k, v in flat.items()}
    piped[c]["pingpong"] = load_always
    g0 = lower_branch(m, 0, Folding(flat, 32, 8))
    g = check(m, Folding(piped, 32, 8))
    mvus = [n.plan.mvu for n in g.nodes if hasattr(n.plan, "mvu")]
    stages = [p.tree_stages for p in mvus]
    assert all(s >= 1 for s in stages) and len(stages) == 3
    # the conv and dense1 are fully unrolled (constants, no memory); dense0 reads its ROM
    assert [p.ram_stages for p in mvus] == [0, ram_reg, 0]
    assert g.nodes[[n.plan.layer.name if hasattr(n.plan, "layer") else None
                    for n in g.nodes].index(c)].plan.pingpong == load_always
    assert g.timing(frames=1).latency == g0.timing(frames=1).latency + sum(stages) + ram_reg


@pytest.mark.parametrize("bits,shared,lanes", [(1, False, 1), (3, True, 2), (4, False, 4),
                                               (5, False, 2), (2, True, 1)])
def test_threshold(bits, shared, lanes):
    b = Builder((4, 3, 3), in_bits=6, signed=True, seed=bits)
    x = b.conv("input", 4, 1, wbits=3)
    t = b.threshold(x, bits, shared=shared)
    m = b.model()
    check(m, Folding({x: {"pe": lanes, "simd": 4}}, 16, 8))


def test_threshold_8bit_on_vector():
    """255 thresholds per channel, per-channel rows in the permuted order of a flatten."""
    b = Builder((2, 2, 2), in_bits=8, seed=3)
    f = b.flatten("input")
    b.threshold(f, 8)
    m = b.model()
    check(m, Folding({}, 8, 16), pauses=False)


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (2, 1, 0)])
def test_maxpool(k, stride, pad):
    b = Builder((3, 6, 7), in_bits=5, signed=True, seed=k + stride)
    b.maxpool("input", k, stride, pad)
    m = b.model()
    check(m, Folding({}, 16, 24))


@pytest.mark.parametrize("shape,k,stride,pad", [((2, 4, 2), 2, 1, 0), ((3, 5, 3), 3, 1, 1),
                                                ((2, 6, 9), 3, 2, 1)])
@pytest.mark.parametrize("lb_reg", [1, 2])
def test_line_buffer_late_write(shape, k, stride, pad, lb_reg):
    """``lb_reg``: the line buffer written a cycle late (1: registered enable, address and
    word, read on the advance only) or read through registers (2: two asynchronous reads, the
    registered advance picks one), down to a two-word buffer (a 2-wide image, 2x2 window): a
    convolution, a max pool and an average pool exact with idles and back-pressure, and the
    cycles those of the model (and of the plain line buffer)."""
    b = Builder(shape, in_bits=4, signed=True, seed=sum(shape) + k)
    c = b.conv("input", 3, k, stride=stride, pad=pad, wbits=3)
    x = b.threshold(c, 3)
    mp = b.maxpool("input", k, 1, 0)
    ap = b.avgpool("input", k, stride, pad, shift=2, rounding="round", out_bits=4)
    b.concat([b.flatten(x), b.flatten(mp), b.flatten(ap)], br="b0")
    m = b.model()
    late = {c: {"lb_reg": lb_reg, "pingpong": 1}, mp: {"lb_reg": lb_reg}, ap: {"lb_reg": lb_reg}}
    g = check(m, Folding(late, 16, 8))
    g0 = lower_branch(m, 0, Folding({c: {"pingpong": 1}}, 16, 8))
    assert g.timing(frames=2).last_out == g0.timing(frames=2).last_out
    assert g.resources().ff > g0.resources().ff
    assert next(n.plan for n in g.nodes if n.name == c).folding["lb_reg"] == lb_reg


def test_line_buffer_mode_is_checked():
    b = Builder((2, 5, 5), in_bits=4, seed=1)
    mp = b.maxpool("input", 2, 1, 0)
    m = b.model()
    with pytest.raises(IRError, match=f"layer '{mp}': lb_reg is 3"):
        lower_branch(m, 0, Folding({mp: {"lb_reg": 3}}, 8, 8))


@pytest.mark.parametrize("rounding,shift,pad", [("floor", 2, 0), ("round", 3, 1), ("ceil", 1, 1),
                                                ("round", 0, 0)])
def test_avgpool(rounding, shift, pad):
    b = Builder((2, 5, 5), in_bits=4, seed=shift)
    b.avgpool("input", 3, 2, pad, shift=shift, rounding=rounding, out_bits=4)
    m = b.model()
    check(m, Folding({}, 8, 8))


def test_relu_and_residual_add():
    """A residual block: the skip path is buffered by a FIFO the cycle model sizes."""
    b = Builder((3, 6, 6), in_bits=8, signed=True, seed=7)
    x = b.conv("input", 4, 3, pad=1)
    x = b.threshold(x, 3)
    y = b.conv(x, 4, 3, pad=1)
    y = b.threshold(y, 3)
    z = b.add(x, y)
    r = b.relu(b.conv(z, 2, 1, wbits=3))
    m = b.model()
    L = [l.name for l in m.branches[0].layers]
    g = check(m, Folding({L[0]: {"pe": 2, "simd": 27}, L[2]: {"pe": 4, "simd": 12}}, 24, 8))
    assert any(l.fifo for l in g.links if g.nodes[l.src].kind == "fork")
    check(m, Folding({}, 64, 8), n=1, pauses=False)


def test_multi_consumer_flatten_and_concat_in_branch():
    """A tensor used twice (broadcast), concat of two 1-D vectors, dense on the result."""
    b = Builder((2, 4, 4), in_bits=4, seed=11)
    x = b.conv("input", 2, 3, pad=1)
    x = b.threshold(x, 2)
    f = b.flatten(x)
    a = b.dense(f, 3)
    d = b.dense(f, 5)
    a = b.threshold(a, 3)
    c = b.threshold(d, 3)
    cat = b.concat([a, c], br="b0")
    b.dense(cat, 4)
    m = b.model()
    check(m, Folding({d: {"pe": 5, "simd": 2, "dsp": 3}, c: {"lanes": 1}}, 16, 16))


@pytest.mark.parametrize("shared", [True, False])
def test_threshold_input_registered(shared):
    """``in_reg``: the threshold engine compares a registered copy of its input (constants and
    ROM thresholds): outputs exact with back-pressure, one cycle more in the model and in
    simulation."""
    b = Builder((4, 3, 3), in_bits=6, signed=True, seed=11)
    x = b.conv("input", 4, 1, wbits=3)
    t = b.threshold(x, 3, shared=shared)
    m = b.model()
    fold = {x: {"pe": 2, "simd": 4}}
    g0 = check(m, Folding(fold, 16, 8))
    g1 = check(m, Folding({**fold, t: {"in_reg": 1}}, 16, 8))
    assert g1.timing(frames=2).latency == g0.timing(frames=2).latency + 1
