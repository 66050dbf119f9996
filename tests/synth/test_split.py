"""Per-engine synthesis units: the split flow maps the same cells as one whole-design job, and
a second run takes every unit from the cache."""

import json

from lcp.synth.design import from_component
from lcp.synth.fpga import xilinx_counts, xilinx_flow
from lcp.synth.split import PLACEHOLDER, split_modules, split_units
from lcp.synth.tools import run_yosys_job

from .designs import MacChain


def test_units_cover_every_module_once(tmp_path):
    d = from_component(MacChain(2, 8), tmp_path / "rtl", "chain")
    mods = split_modules(d.files[0].read_text())
    units = split_units(d.files, "chain")
    assert units[-1].is_top and units[-1].modules == ["chain"]
    covered = [m for u in units for m in u.modules]
    assert sorted(covered) == sorted(mods)
    for u in units[:-1]:
        assert f"module \\{PLACEHOLDER}" in u.text or f"module {PLACEHOLDER}" in u.text
        assert u.root not in u.text                    # renamed throughout its subtree


def test_split_flow_matches_whole_design_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("LCP_HW_CACHE", str(tmp_path / "cache"))
    d = from_component(MacChain(2, 8), tmp_path / "rtl", "chain")
    first = xilinx_flow(d, workdir=tmp_path / "w1", dsp="yes")
    whole = tmp_path / "whole"
    run_yosys_job("xilinx", {"files": [str(d.files[0])], "top": "chain", "dsp": True,
                             "stat": str(whole / "stat.json")}, whole)
    stat = json.loads((whole / "stat.json").read_text())["design"]["num_cells_by_type"]
    ref = {t.lstrip("\\"): k for t, k in stat.items() if not t.startswith("$")}
    mine, theirs = first["totals"], xilinx_counts(ref)
    # ABC maps a renamed module a few LUTs differently (names order its netlist); every
    # register, DSP and carry chain is the same
    for k in ("ff", "dsp", "bram36", "carry4", "lut_memory"):
        assert mine[k] == theirs[k], k
    assert abs(mine["lut"] - theirs["lut"]) <= 0.03 * theirs["lut"]
    assert first["profile"]["synthesized"] == len(split_units(d.files, "chain"))
    again = xilinx_flow(d, workdir=tmp_path / "w2", dsp="yes")
    assert again["profile"]["synthesized"] == 0
    assert again["cells"] == first["cells"] and again["groups"] == first["groups"]
