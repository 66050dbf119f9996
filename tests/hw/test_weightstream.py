"""Weights from DRAM (lcp.hw.weightstream): the HP port model, the DRAM image of the weights,
the frame-buffered engines' cycle model and the chooser moving big layers off chip."""

import numpy as np
import pytest

from lcp.hw.base import Resources
from lcp.hw.chooser import choose
from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch
from lcp.hw.weightstream import HpPort, ZYNQ_HP, DramConvPlan, DramDensePlan, pack_blocks

from tests.hw.irgen import Builder


def _net(wide=64):
    b = Builder((4, 8, 8), seed=7)
    x = b.threshold(b.conv("input", 8, 3, pad=1), 4)
    x = b.flatten(b.maxpool(x, 2))
    x = b.threshold(b.dense(x, wide), 4)
    b.dense(x, 5)
    return b.model()


def test_hp_port_bursts_and_latency():
    p = HpPort(beat_bits=64, burst=16, outstanding=8, latency=40)
    assert p.fetch_cycles(0) == 0
    assert p.fetch_cycles(1) == 41
    assert p.fetch_cycles(16) == 56
    assert p.fetch_cycles(160) == 40 + 160              # 8 bursts in flight hide the latency
    slow = HpPort(burst=16, outstanding=1, latency=40)   # one burst at a time
    assert slow.fetch_cycles(32) == 40 + 56 + 16
    assert ZYNQ_HP.beat_bits == 64 and ZYNQ_HP.burst == 16


@pytest.mark.parametrize("pe,simd", [(1, 1), (4, 2), (8, 16), (16, 4)])
def test_dram_image_unpacks_to_the_tiles(pe, simd):
    m = _net()
    f = Folding({"b0_dense5": {"pe": pe, "simd": simd, "dram": 1}})
    g = lower_branch(m, 0, f)
    (plan,) = [n.plan for n in g.nodes if isinstance(n.plan, DramDensePlan)]
    p = plan.mvu
    raw = pack_blocks(p)
    assert raw.size == plan.dram_bytes
    beats = np.frombuffer(raw.tobytes(), dtype="<u8")
    W = pe * simd * p.wbits
    words = []
    if W >= 64:
        per = -(-W // 64)
        for k in range(0, beats.size, per):
            words.append(sum(int(beats[k + j]) << (64 * j) for j in range(per)))
    else:
        wpb = 64 // W
        for og in range(p.fo):
            blk = beats[og * plan.block_beats:(og + 1) * plan.block_beats]
            ws = [(int(b) >> (W * j)) & ((1 << W) - 1) for b in blk for j in range(wpb)]
            words += ws[:p.fi]
    assert len(words) == p.fo * p.fi
    for k, v in enumerate(words):
        og, ig = divmod(k, p.fi)
        lanes = [(v >> (i * p.wbits)) & ((1 << p.wbits) - 1) for i in range(pe * simd)]
        lanes = [x - (1 << p.wbits) if x >> (p.wbits - 1) else x for x in lanes]
        assert lanes == list(p.tile(og, ig).reshape(-1))


def test_dram_cycle_model_overlaps_fetch_and_compute():
    m = _net()
    f = Folding({"b0_dense5": {"pe": 4, "simd": 8, "dram": 1}})
    g = lower_branch(m, 0, f)
    (plan,) = [n.plan for n in g.nodes if isinstance(n.plan, DramDensePlan)]
    p = plan.mvu
    first, end = plan.block_schedule(0)
    fetch = ZYNQ_HP.fetch_cycles(plan.block_beats)
    assert first == fetch
    # every block waits for the larger of its fetch and the previous block's compute
    assert end == fetch + (p.fo - 1) * max(fetch, p.fi) + p.fi
    assert g.lowered_timing.latency > end


def test_conv_dram_needs_simd_dividing_channels():
    m = _net()
    conv = m.branches[0].layers[0]
    assert DramConvPlan.valid(conv, (4, 8, 8), 2, 4)
    assert not DramConvPlan.valid(conv, (4, 8, 8), 2, 3)


def test_chooser_moves_the_big_layer_to_dram():
    m = _net(wide=256)
    # a budget one BRAM36 short of the smallest all-on-chip folding (the 256 x 128 weight ROM)
    onchip = lower_branch(m, 0, Folding({})).resources()
    tight = Resources(lut=8000, ff=16000, dsp=16, bram=onchip.bram - 1)
    # without the search (max_evals=1) the fitting step alone: the largest matrix to DRAM
    c = choose(m, budget=tight, scope="branch", max_evals=1)
    fl = c.folding.to_json()["layers"]
    assert fl["b0_dense5"].get("dram") == 1 and fl["b0_dense5"]["pe"] == 1
    assert c.resources.fits(tight)
    t = lower_branch(m, 0, c.folding).timing()
    assert (t.latency, t.interval) == (c.latency, c.interval)
    # with the search, a faster design that fits (the layer may come back on chip folded)
    full = choose(m, budget=tight, scope="branch")
    assert full.resources.fits(tight) and full.latency < c.latency
    # with room on chip, the faster on-chip engine is kept
    roomy = choose(m, budget="xc7z020", scope="branch")
    assert all(not v.get("dram") for v in roomy.folding.to_json()["layers"].values())
    assert roomy.latency < c.latency
