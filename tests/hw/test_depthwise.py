"""The channel-grouped window of grouped and depthwise convolution (:mod:`lcp.hw.depthwise`) in
Amaranth's simulator: several beats per pixel (``nb > 1``), outputs == golden with and without
idles and back-pressure, model cycles == simulated cycles; the window carries ``KH*KW*Bc``
elements, not ``KH*KW*C``."""

import pytest

from lcp.hw.depthwise import GroupedConvPlan
from lcp.hw.folding import Folding

from tests.hw.irgen import Builder
from tests.hw.test_engines import check

CASES = [
    # C, H, W, O, groups, k, stride, pad, pe, simd, beats per pixel
    (8, 5, 6, 8, 8, 3, 1, 1, 2, 3, 4),      # depthwise, 2 channels per beat
    (6, 7, 5, 6, 6, 3, 2, 1, 1, 9, 6),      # depthwise stride 2, one channel per beat
    (4, 5, 5, 8, 4, 3, 1, 0, 1, 1, 4),      # channel multiplier 2: 2 outputs per beat
    (8, 4, 5, 4, 4, 2, 1, 0, 2, 4, 2),      # 4 groups of 2 channels, 2x2 kernel
    (6, 4, 4, 6, 3, 1, 1, 0, 2, 2, 3),      # pointwise grouped (no line buffer, no columns)
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_grouped_window_beats(case):
    C, H, W, O, G, k, s, p, pe, simd, nb = CASES[case]
    b = Builder((C, H, W), in_bits=4, signed=bool(case % 2), seed=700 + case)
    x = b.conv("input", O, k, stride=s, pad=p, wbits=4, groups=G)
    m = b.model()
    piped = ({"tree_k": 1, "ram_reg": 1, "load_always": 1, "lb_reg": 1} if case % 2 else {})
    # (as on an FPGA)
    fold = Folding({x: {"pe": pe, "simd": simd, **piped}}, 16, 32)
    g = check(m, fold)
    plan = next(n.plan for n in g.nodes if isinstance(n.plan, GroupedConvPlan))
    assert plan.mvu.ram_stages == (1 if piped else 0)
    assert plan.nb == nb
    assert plan.mvu.n_in == k * k * C // nb


def test_depthwise_1d_beats():
    """A depthwise Conv1d: one shift register per channel group, no line buffer."""
    b = Builder((6, 10), in_bits=3, seed=710)
    x = b.conv("input", 6, 3, pad=1, groups=6)
    m = b.model()
    check(m, Folding({x: {"pe": 2, "simd": 1}}, 16, 16))


@pytest.mark.parametrize("pe,simd", [(4, 3), (4, 18)])
def test_grouped_whole_pixel_window_queue(pe, simd):
    """Grouped conv whose groups all fit one beat (the whole-pixel window unit) with the
    two-window output queue (pingpong, FPGA builds): exact with pauses, model == simulation."""
    b = Builder((4, 5, 5), in_bits=4, signed=True, seed=720 + simd)
    x = b.conv("input", 4, 3, pad=1, wbits=4, groups=2)
    m = b.model()
    g = check(m, Folding({x: {"pe": pe, "simd": simd, "pingpong": 1}}, 16, 32))
    plan = next(n.plan for n in g.nodes if isinstance(n.plan, GroupedConvPlan))
    assert plan.nb == 1 and plan.pingpong == 1
