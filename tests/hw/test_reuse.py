"""The reused engine's cycle model (lcp.hw.reuse) and the choice between it and the dataflow
design."""

import math

import pytest

from lcp.hw.base import DEVICES, Resources
from lcp.hw.mvu import PIPELINE_LATENCY
from lcp.hw.reuse import choose_reused, reused_cycles, reused_resources, serve
from lcp.hw.weightstream import ZYNQ_HP
from lcp.ir import IRError

from tests.hw.test_weightstream import _net


def test_dense_layer_cycles_follow_the_block_schedule():
    m = _net(wide=64)
    lat, per, dram = reused_cycles(m, 4, 8)
    dense = m.branches[0].layers[4]
    O, F = dense.weight.shape
    fo, fi = math.ceil(O / 4), math.ceil(F / 8)
    wb = 4 if dense.weight.min() >= -8 and dense.weight.max() <= 7 else None
    assert wb is not None
    beats = math.ceil((4 * F * wb + 4 * max(8, 0)) / 64)   # weights and (at least) 8-bit biases
    fetch = ZYNQ_HP.fetch_cycles(beats)
    # weight-bound: every block waits for its fetch (fetch > compute)
    assert per[dense.name] >= fetch * fo + fi + PIPELINE_LATENCY
    assert lat == pytest.approx(sum(per.values()), rel=0.2)
    assert dram >= O * F * wb // 8


def test_more_lanes_never_slower_and_cost_more():
    m = _net(wide=64)
    budget = DEVICES["xc7z020"]
    small, big = reused_cycles(m, 1, 1)[0], reused_cycles(m, 8, 8)[0]
    assert big < small
    assert reused_resources(m, 8, 8, budget).lut > reused_resources(m, 1, 1, budget).lut


def test_choose_reused_respects_the_budget():
    m = _net(wide=64)
    c = choose_reused(m, "xc7z020")
    assert c.resources.fits(DEVICES["xc7z020"])
    with pytest.raises(IRError, match="not even a 1x1 reused engine"):
        choose_reused(m, Resources(lut=100, ff=100, dsp=0, bram=0))


def test_serve_takes_the_faster_and_keeps_the_other():
    m = _net(wide=64)
    s = serve(m, "xc7z020")
    alt = s["alternative"]
    assert s["latency"] <= alt["latency"]
    assert {s["engine"], alt["engine"]} == {"dataflow", "reused"}
