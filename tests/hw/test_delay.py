"""Per-target delay model and the pipelined folding it gives ``lcp compile --clock-mhz``."""

from dataclasses import replace

import pytest

from lcp.hw.build import generate, pipelined
import numpy as np

from lcp.hw.delay import (ASIC_TARGETS, DELAY_NS, DSP_PATH_NS, LINK_PATH_NS, THRESHOLD_PATH_NS,
                          XC7_FIT, keeps_dsp, link_register, ram_register, threshold_in_register,
                          tree_levels_per_stage)
from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch

from tests.hw.irgen import Builder


def test_levels_shrink_with_the_clock_and_the_process():
    for t in DELAY_NS:
        ks = [tree_levels_per_stage(t, f) for f in (25, 100, 400, 1600)]
        assert ks == sorted(ks, reverse=True) and ks[-1] >= 1
    assert tree_levels_per_stage("asap7", 1000) > tree_levels_per_stage("osu018", 1000)
    assert tree_levels_per_stage("xc7z020", 100) == tree_levels_per_stage("xc7", 100)
    with pytest.raises(ValueError, match="unknown timing target 'tsmc5'"):
        tree_levels_per_stage("tsmc5", 100)


def test_xc7_delays_cover_the_measured_paths():
    """The 7-series figures are the synthesized paths' line, rounded up to cover each one."""
    d = DELAY_NS["xc7"]
    levels = np.array([p[1] for p in XC7_FIT])
    ns = np.array([p[2] for p in XC7_FIT])
    slope, _ = np.polyfit(levels, ns, 1)
    assert d["level"] >= slope
    assert np.all(d["overhead"] + d["level"] * levels >= ns)
    assert tree_levels_per_stage("xc7", 100) * d["level"] + d["overhead"] <= 10.0


def test_clock_pipelines_the_mvus_and_the_latency_follows(tmp_path):
    b = Builder((2, 6, 6), seed=1)
    c = b.conv("input", 4, 3, pad=1)
    x = b.threshold(c, 3)
    m = b.model()
    fold = Folding({c: {"pe": 4, "simd": 18}}, 32, 8)
    assert pipelined(m, fold, 2).layer(c) == {"pe": 4, "simd": 18, "tree_k": 2}
    assert "tree_k" not in pipelined(m, fold, 2).layer(x)         # thresholds take none
    flat = generate(m, tmp_path / "a", folding=fold, verilog=False)
    fast = generate(m, tmp_path / "b", folding=fold, verilog=False, clock_mhz=4000,
                    tech="asap7")
    st = fast.folding.layer(c)["tree_k"]
    assert st == tree_levels_per_stage("asap7", 4000)
    mvu = [n.plan.mvu for n in fast.graph.nodes if hasattr(n.plan, "mvu")][0]
    assert fast.timing.latency == flat.timing.latency + mvu.tree_stages > flat.timing.latency


def test_asic_targets_build_dsp_lanes_as_plain_multipliers(tmp_path):
    """Standard cells have no DSP slices: an ASIC build keeps the folding's PE x SIMD but no
    packed DSP lanes; an FPGA build keeps them."""
    b = Builder((2, 6, 6), seed=1)
    c = b.conv("input", 4, 3, pad=1)
    b.threshold(c, 3)
    m = b.model()
    fold = Folding({c: {"pe": 2, "simd": 18, "dsp": 4}}, 32, 8)     # weights in a ROM
    for tech in ASIC_TARGETS:
        asic = generate(m, tmp_path / tech, folding=fold, verilog=False, clock_mhz=400,
                        tech=tech)
        assert asic.folding.layer(c)["dsp"] == 0
        assert {k: asic.folding.layer(c)[k] for k in ("pe", "simd")} == {"pe": 2, "simd": 18}
        assert not _mvu(asic).dsp_pairs()
        assert _mvu(asic).load_always == 0              # its clock gates close on it
    fpga = generate(m, tmp_path / "xc7", folding=fold, verilog=False, clock_mhz=100, tech="xc7")
    assert fpga.folding.layer(c)["dsp"] == 4 and _mvu(fpga).dsp_pairs()


def _mvu(build):
    return [n.plan.mvu for n in build.graph.nodes if hasattr(n.plan, "mvu")][0]


def test_ecp5_drops_the_dsp_lanes_whose_path_misses_the_clock(tmp_path):
    """A MULT18X18D path slower than the period: the build keeps PE x SIMD, no DSP lanes, and
    a folding chosen for an ECP5 budget spends none of its multipliers."""
    ns = DSP_PATH_NS["ecp5"]
    slow, fast = 0.9e3 / ns, 1.1e3 / ns
    assert keeps_dsp("ecp5", slow) and not keeps_dsp("ecp5", fast)
    assert keeps_dsp("xc7z020", 100) and not keeps_dsp("asap7", None)
    # a DP16KD read leaves no time for a product at 100 MHz: its own register; a RAMB36 does
    # and on ECP5 a second one: the route from the DP16KD column takes a cycle of its own
    assert ram_register("ecp5", 100) == 2 and ram_register("ecp5", 50) == 0
    assert not ram_register("xc7", 100)
    assert not ram_register("asap7", 1000)
    b = Builder((2, 6, 6), seed=1)
    c = b.conv("input", 4, 3, pad=1)
    b.threshold(c, 3)
    m = b.model()
    fold = Folding({c: {"pe": 2, "simd": 18, "dsp": 4}}, 32, 8)
    keep = generate(m, tmp_path / "s", folding=fold, verilog=False, clock_mhz=slow, tech="ecp5")
    assert keep.folding.layer(c)["dsp"] == 4 and _mvu(keep).dsp_pairs()
    drop = generate(m, tmp_path / "f", folding=fold, verilog=False, clock_mhz=fast, tech="ecp5")
    assert drop.folding.layer(c)["dsp"] == 0 and not _mvu(drop).dsp_pairs()
    assert _mvu(drop).ram_stages == int(ram_register("ecp5", fast))
    assert _mvu(drop).load_always == 1                  # FPGA: no operand load enable
    # memory reads registered: the line buffer's too (lb_reg 2), not where they are not
    assert drop.folding.layer(c)["lb_reg"] == 2 and "lb_reg" not in keep.folding.layer(c)
    for tech, clock in (("xc7", 100), ("asap7", 1000)):
        other = generate(m, tmp_path / tech, folding=fold, verilog=False, clock_mhz=clock,
                         tech=tech)
        assert "lb_reg" not in other.folding.layer(c)
    b = Builder((2, 6, 6), seed=1)
    c = b.conv("input", 4, 3, pad=1, wbits=8)           # 8 x 8-bit products: DSP lanes
    b.threshold(c, 3)
    m = b.model()
    by_clock = {clock: generate(m, tmp_path / f"b{clock}", budget="lfe5u-25f", target=100,
                                verilog=False, clock_mhz=clock, tech="ecp5")
                for clock in (slow, fast)}
    assert by_clock[slow].resources.dsp > 0
    chosen = by_clock[fast]
    assert chosen.resources.dsp == 0
    assert chosen.timing.latency <= 100
    assert all(not chosen.folding.layer(n.layer).get("dsp") for n in chosen.graph.nodes
               if hasattr(n.plan, "mvu"))


def test_threshold_input_register_where_its_path_misses_the_clock(tmp_path):
    """A threshold stage slower than the period (ECP5 at 100 MHz): the build registers the
    threshold engines' input (one cycle more) and gives FPGA convolutions two window output
    registers; a slower clock or another target compares the input as it arrives."""
    ns = THRESHOLD_PATH_NS["ecp5"]
    assert threshold_in_register("ecp5", 1.1e3 / ns)
    assert not threshold_in_register("ecp5", 0.9e3 / ns)
    assert not threshold_in_register("xc7", 100) and not threshold_in_register("asap7", 1000)
    b = Builder((2, 6, 6), seed=1)
    c = b.conv("input", 4, 3, pad=1)
    t = b.threshold(c, 3)
    m = b.model()
    fold = Folding({c: {"pe": 2, "simd": 18}}, 32, 8)
    fast = generate(m, tmp_path / "f", folding=fold, verilog=False, clock_mhz=100, tech="ecp5")
    slow = generate(m, tmp_path / "s", folding=fold, verilog=False, clock_mhz=50, tech="ecp5")
    asic = generate(m, tmp_path / "a", folding=fold, verilog=False, clock_mhz=100, tech="osu018")
    assert fast.folding.layer(t) == {"in_reg": 1} and slow.folding.layer(t) == {}
    plain = Folding({**fast.folding.layers, t: {}}, 32, 8, link_reg=fast.folding.link_reg)
    assert fast.timing.latency == lower_branch(m, 0, plain).timing(frames=3).latency + 1
    assert fast.folding.layer(c)["pingpong"] == 1 and "pingpong" not in asic.folding.layer(c)


def test_links_registered_where_their_route_misses_the_clock(tmp_path):
    """A route between engines slower than the period (ECP5 at 100 MHz): the build puts a
    register slice on every link (``link_reg``), one cycle per slice more in the model; a
    slower clock or a target without the figure keeps the skid buffers."""
    ns = LINK_PATH_NS["ecp5"]
    assert link_register("ecp5", 1.1e3 / ns) and not link_register("ecp5", 0.9e3 / ns)
    assert not link_register("xc7", 100) and not link_register("asap7", 1000)
    b = Builder((2, 6, 6), seed=1)
    c = b.conv("input", 4, 3, pad=1)
    b.threshold(c, 3)
    m = b.model()
    fold = Folding({c: {"pe": 2, "simd": 18}}, 32, 8)
    fast = generate(m, tmp_path / "f", folding=fold, verilog=False, clock_mhz=100, tech="ecp5")
    slow = generate(m, tmp_path / "s", folding=fold, verilog=False, clock_mhz=50, tech="ecp5")
    xc7 = generate(m, tmp_path / "x", folding=fold, verilog=False, clock_mhz=100, tech="xc7")
    assert fast.folding.link_reg == 1 and slow.folding.link_reg == xc7.folding.link_reg == 0
    assert fast.report["graph"]["register_slices"] == sum(map(fast.graph.slice,
                                                              fast.graph.links)) > 0
    plain = lower_branch(m, 0, replace(fast.folding, link_reg=0))
    slices = fast.report["graph"]["register_slices"]
    assert plain.timing().latency < fast.timing.latency <= plain.timing().latency + slices
