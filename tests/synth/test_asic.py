"""ASIC flow on small streaming engines: area, timing, gate-level activity and power."""

import random
from pathlib import Path

import pytest

from lcp.synth.asic import asic_flow, sta_timing, synth_asic
from lcp.synth.design import from_component
from lcp.synth.gatesim import Stimulus
from lcp.synth.libs import get_library
from lcp.synth.tools import have_tool

from .designs import MacChain, reference

REPO = Path(__file__).resolve().parents[2]
ASAP7 = REPO.parent / "shared" / "pdk" / "asap7"
OSU = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")

pytestmark = [
    pytest.mark.skipif(not OSU.exists(), reason="qflow-tech-osu018 not installed (make apt)"),
    pytest.mark.skipif(not have_tool("sta"), reason="opensta not installed (make apt)"),
]

DEPTH = 8


def _stimulus(lanes: int, images: int = 6) -> tuple[Stimulus, list[int]]:
    rnd = random.Random(0)
    beats = [rnd.getrandbits(4 * lanes) for _ in range(images * DEPTH)]
    return (Stimulus(beats, [False] * len(beats), images=images, out_beats=images,
                     source="random", expected=reference(beats, lanes, DEPTH)),
            reference(beats, lanes, DEPTH))


@pytest.fixture(scope="module")
def osu_nets(tmp_path_factory):
    """MacChain with 1 and 4 lanes mapped to OSU 0.18 um at 100 MHz."""
    tmp = tmp_path_factory.mktemp("osu")
    lib = get_library("osu018")
    out = {}
    for lanes in (1, 4):
        d = from_component(MacChain(lanes, DEPTH), tmp / f"rtl{lanes}", f"chain{lanes}")
        out[lanes] = (d, synth_asic(d, lib, 100.0, tmp / f"syn{lanes}"))
    return out


def test_area_grows_with_lanes(osu_nets):
    a1 = osu_nets[1][1]
    a4 = osu_nets[4][1]
    assert a4.area_um2 > 2 * a1.area_um2
    assert a4.groups["mac"]["area_um2"] > 2 * a1.groups["mac"]["area_um2"]
    # the post-processing engine does not depend on the lanes
    assert a4.groups["post"]["area_um2"] == pytest.approx(a1.groups["post"]["area_um2"], rel=0.2)
    # per-engine areas add up to the total; every cell belongs to an engine
    assert set(a4.groups) >= {"mac", "post"}
    assert {g for _, g, _ in a4.cells.values()} <= set(a4.groups)


def test_slack_sign_flips_with_a_too_fast_clock(osu_nets, tmp_path):
    net = osu_nets[4][1]
    slow = sta_timing(net, 10.0, tmp_path)
    fast = sta_timing(net, 2000.0, tmp_path)
    assert slow["worst_slack_ns"] > 0 and slow["met"]
    assert fast["worst_slack_ns"] < 0 and not fast["met"]
    # Fmax does not depend on the clock it is measured at (same paths, same delays)
    assert slow["fmax_mhz"] == pytest.approx(fast["fmax_mhz"], rel=0.02)
    assert 10 < slow["fmax_mhz"] < 2000
    assert fast["critical_path"]["from_group"] in ("mac", "post")


@pytest.fixture(scope="module")
def osu_report(tmp_path_factory):
    d = from_component(MacChain(4, DEPTH), tmp_path_factory.mktemp("rtl"), "chain")
    stim, _ = _stimulus(4)
    return asic_flow(d, "osu018", clock_mhz=100.0, workdir=tmp_path_factory.mktemp("flow"),
                     stimulus=stim)


def test_gate_level_simulation_is_bit_exact(osu_report):
    sim = osu_report["simulation"]
    assert sim["outputs_match"] is True and sim["output_words"] == 6
    assert osu_report["activity"]["pins_without_activity"] == 0
    assert 0.01 < osu_report["activity"]["mean_rate"] < 1.0


def test_power_breakdown_adds_up(osu_report):
    t = osu_report["totals"]
    assert t["total_w"] == pytest.approx(t["internal_w"] + t["switching_w"] + t["leakage_w"])
    for k in ("internal_w", "switching_w", "leakage_w", "total_w"):
        assert t[k] > 0
        assert sum(g[k] or 0 for g in osu_report["groups"].values()) == pytest.approx(t[k])
    assert t["latency_cycles"] == DEPTH + 1            # 8 beats in, then the two engines
    assert t["energy_nj"] == pytest.approx(
        t["total_w"] * t["cycles_per_inference"] / 100e6 * 1e9)
    # the MAC engine dominates
    g = osu_report["groups"]
    assert g["mac"]["total_w"] > 5 * g["post"]["total_w"]


def test_replay_at_uniform_activity_reproduces_opensta(osu_nets, tmp_path):
    """Scaling every pin by the activity of its net gives back OpenSTA's own figures when every
    net has OpenSTA's reference activity."""
    from lcp.synth.asic import _GLOBAL_ACT

    res = _replay_matches_opensta(osu_nets[4][1], 100.0, tmp_path, lambda n: _GLOBAL_ACT)
    assert res["pins_without_activity"] == 0


def _replay_matches_opensta(net, clock_mhz, tmp_path, rate):
    """Replay with every net at ``rate(net)`` transitions per cycle; check it against
    OpenSTA's own per-instance totals at its reference activity; return the replay."""
    from lcp.synth.activity import Activity
    from lcp.synth.asic import _power_replay, _read_instances
    from lcp.synth.gatesim import GateSim

    names = {n for _, _, conns in net.cells.values() for n in conns.values() if n}
    act = Activity(t0=0, t1=1000, period=10)
    for n in names:
        act.toggles[n] = int(rate(n) * act.cycles)
        act.high[n] = 50
    sim = GateSim(act, 1, 100, [], None, 1, tmp_path / "none.vcd", 0.0)
    res = _power_replay(net, clock_mhz, tmp_path, sim)
    ref = _read_instances(tmp_path / "power_ref_instances.txt")
    assert res["internal_w"] == pytest.approx(sum(v[0] for v in ref.values()), rel=0.01)
    assert res["switching_w"] == pytest.approx(sum(v[1] for v in ref.values()), rel=0.01)
    return res


def test_simulated_power_differs_from_opensta_propagation(osu_report):
    p = osu_report["opensta_propagated"]
    assert p["total_w"] > 0 and "independent-input" in p["method"]
    assert p["total_w"] != pytest.approx(osu_report["totals"]["total_w"], rel=1e-3)


def test_unmeasured_is_explicit(osu_report):
    whats = {u["what"] for u in osu_report["unmeasured"]}
    if not have_tool("openroad"):
        assert "placement" in whats
    assert osu_report["openroad"] is None or isinstance(osu_report["openroad"], dict)


def test_vectorless_without_stimulus(tmp_path):
    d = from_component(MacChain(1, DEPTH), tmp_path / "rtl", "chain")
    r = asic_flow(d, "osu018", clock_mhz=50.0, workdir=tmp_path / "w", stimulus=None)
    assert r["simulation"] is None
    assert r["totals"]["latency_us"] is None and r["totals"]["energy_nj"] is None
    whats = {u["what"]: u["why"] for u in r["unmeasured"]}
    assert "vectorless" in whats["activity"] and "latency_us" in whats
    assert r["totals"]["total_w"] > 0


def test_timing_failure_is_reported(tmp_path):
    d = from_component(MacChain(4, DEPTH), tmp_path / "rtl", "chain")
    r = asic_flow(d, "osu018", clock_mhz=3000.0, workdir=tmp_path / "w", stimulus=None)
    assert r["totals"]["timing_met"] is False
    why = {u["what"]: u["why"] for u in r["unmeasured"]}["timing"]
    assert "timing not met at 3000 MHz" in why and "Fmax" in why


@pytest.mark.skipif(not ASAP7.is_dir(), reason="../shared/pdk/asap7 not present")
def test_asap7_flow_with_qn_flops(tmp_path):
    d = from_component(MacChain(2, DEPTH), tmp_path / "rtl", "chain")
    stim, _ = _stimulus(2, images=3)
    r = asic_flow(d, "asap7", clock_mhz=800.0, pdk_dir=ASAP7, workdir=tmp_path / "w",
                  stimulus=stim)
    assert r["simulation"]["outputs_match"] is True
    assert r["totals"]["flops"] > 0
    cells = (tmp_path / "w" / "synth" / "netlist.v").read_text()
    assert "DFFHQNx1_ASAP7_75t_R" in cells and "DFFHQx4" not in cells
    assert 1 < r["totals"]["area_um2"] < 1000          # 7 nm: tens of um2
    assert r["totals"]["total_w"] > 0 and r["clock_mhz"] == 800.0


def test_no_net_drives_more_than_16_loads_but_the_clock(osu_nets):
    from collections import Counter
    net = osu_nets[4][1]
    ins = {n: set(c.inputs) for n, c in net.lib.cells.items()}
    fan = Counter(n for t, _, conns in net.cells.values() for p, n in conns.items()
                  if p in ins[t] and n and not n.startswith("1'b"))
    assert max(v for k, v in fan.items() if k != "clk") <= 16
    assert fan["clk"] == len(net.flops)                      # ideal clock: no tree


@pytest.mark.skipif(not ASAP7.is_dir(), reason="../shared/pdk/asap7 not present")
def test_asap7_clock_gating_is_exact_and_saves_clock_power(tmp_path):
    """Flip-flops that load rarely (the accumulator's output register loads once per DEPTH
    beats) get an integrated clock gate; the gate-level simulation (with the ICG's latch model)
    still gives the reference outputs, and the gated clock pins switch at the gated rate."""
    stim, _ = _stimulus(2, images=4)
    reps = {}
    for gate in (False, True):
        d = from_component(MacChain(2, DEPTH), tmp_path / f"rtl{gate}", "chain")
        reps[gate] = asic_flow(d, "asap7", clock_mhz=800.0, pdk_dir=ASAP7,
                               workdir=tmp_path / f"w{gate}", stimulus=stim, clock_gating=gate)
    off, on = reps[False]["totals"], reps[True]["totals"]
    assert off["clock_gating"]["icgs"] == 0 and off["clock_gating"]["gated_flops"] == 0
    assert on["clock_gating"]["icgs"] >= 1
    assert on["clock_gating"]["gated_flops"] >= 16      # at least the 16-bit output register
    assert reps[True]["simulation"]["outputs_match"] is True
    assert reps[True]["activity"]["pins_without_activity"] == 0
    assert reps[True]["activity"]["pins_off_reference"] == 0
    netlist = (tmp_path / "wTrue" / "synth" / "netlist.v").read_text()
    assert "ICGx1_ASAP7_75t_R" in netlist
    # only the ungated flip-flops and the clock gates load the free-running clock
    assert on["clock_net_w"] < off["clock_net_w"]
    assert on["total_w"] < off["total_w"]


@pytest.mark.skipif(not ASAP7.is_dir(), reason="../shared/pdk/asap7 not present")
def test_replay_with_gated_clocks_reproduces_opensta(tmp_path):
    """OpenSTA gives the clock's activity to every pin of the clock network (through the clock
    gates and their buffers): with those nets at 2 transitions per cycle and every other net at
    the reference activity, the replay gives back OpenSTA's figures."""
    from lcp.synth.asic import _GLOBAL_ACT, _clock_nets

    d = from_component(MacChain(2, DEPTH), tmp_path / "rtl", "chain")
    net = synth_asic(d, get_library("asap7", ASAP7), 800.0, tmp_path / "syn")
    clocks = _clock_nets(net)
    assert len(clocks) > 1                                  # clk and at least one gated clock
    ties = {n for t, _, conns in net.cells.values() if t.startswith("TIE") for n in conns.values()}
    res = _replay_matches_opensta(
        net, 800.0, tmp_path,
        lambda n: 0.0 if n in ties else 2.0 if n in clocks else _GLOBAL_ACT)
    assert res["pins_off_reference"] == 0


def test_gate_sim_compiles_a_netlist_once(osu_nets, tmp_path, monkeypatch):
    """The compiled simulation is reused for new beats of the same length (same netlist and
    testbench): no Verilator run the second time, and the new outputs are still exact."""
    from lcp.synth.gatesim import cell_models, gate_sim
    monkeypatch.setenv("LCP_CACHE_DIR", str(tmp_path / "cache"))
    lib = get_library("osu018")
    net = osu_nets[1][1]
    models = cell_models(lib)
    rnd = random.Random(1)
    runs = []
    for k in range(2):
        beats = [rnd.getrandbits(4) for _ in range(2 * DEPTH)]
        stim = Stimulus(beats, [False] * len(beats), images=2, out_beats=2, source="random",
                        expected=reference(beats, 1, DEPTH))
        sim = gate_sim(net.sim_netlist, models, net.top, stim, tmp_path / f"run{k}")
        runs.append(sim)
        assert sim.outputs_match
    assert (tmp_path / "run0" / "verilator.log").exists()
    assert not (tmp_path / "run1" / "verilator.log").exists()
    assert runs[0].outputs != runs[1].outputs
