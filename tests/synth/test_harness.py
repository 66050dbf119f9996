"""The FPGA I/O harness (:mod:`lcp.synth.harness`): three pins, the core's logic all kept."""

import json

import pytest

from lcp.synth.design import from_component
from lcp.synth.harness import harness_verilog
from lcp.synth.tools import run_yosys_job

from .designs import MacChain


def _cells(stat: str) -> dict:
    st = json.loads(open(stat).read())
    return {t.lstrip("\\"): k for t, k in st["design"]["num_cells_by_type"].items()}


def test_harnessed_core_keeps_its_logic(tmp_path):
    d = from_component(MacChain(2, 8), tmp_path / "rtl", "chain")
    runs = {}
    for name, harness in (("bare", None), ("harnessed", str(tmp_path / "h.v"))):
        w = tmp_path / name
        r = run_yosys_job("ecp5", {"files": [str(f) for f in d.files], "top": d.top,
                                   "json": str(w / "n.json"), "stat": str(w / "s.json"),
                                   "dsp": True, "harness": harness}, w)
        net = json.loads((w / "n.json").read_text())
        tops = [m for m in net["modules"].values() if m["attributes"].get("top")]
        runs[name] = (r, _cells(w / "s.json"), tops[0]["ports"])
    (_, bare, bare_ports), (r, held, ports) = runs["bare"], runs["harnessed"]
    h = r["harness"]
    assert sorted(ports) == ["clk", "din", "dout"]
    assert len(bare_ports) == 8                   # two streams (3 ports each), clk, rst
    assert h["in_bits"] == 2 * 4 + 3 and h["out_bits"] == 4 + 2      # data, valid, ready (rst)
    # every core flip-flop is still there (a register loading an input straight from the shift
    # register may merge with the shift register's next bit), and all its logic
    assert bare["TRELLIS_FF"] + h["ff"] - h["in_bits"] <= held["TRELLIS_FF"]
    assert held["TRELLIS_FF"] <= bare["TRELLIS_FF"] + h["ff"]
    assert held["LUT4"] >= bare["LUT4"]
    assert held.get("CCU2C", 0) == bare.get("CCU2C", 0)
    assert held.get("MULT18X18D", 0) == bare.get("MULT18X18D", 0)
    assert held.get("DCCA", 0) == 1 + bare.get("DCCA", 0)          # the reset on a global


def test_harness_errors_name_the_module():
    with pytest.raises(ValueError, match="'core' has no clock input 'clk'"):
        harness_verilog("core", [("a", 1, "in"), ("y", 1, "out")])
    with pytest.raises(ValueError, match="'core' has no output"):
        harness_verilog("core", [("clk", 1, "in"), ("a", 1, "in")])
    with pytest.raises(ValueError, match="port 'b' is neither"):
        harness_verilog("core", [("clk", 1, "in"), ("b", 2, "inout"), ("y", 1, "out")])
