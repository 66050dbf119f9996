"""The XC7Z020 worst-path estimate (lcp.synth.paths) on netlists Yosys' synth_xilinx made."""

import json
import math

from lcp.synth.paths import fmax_mhz, worst_path
from lcp.synth.tools import run_yosys_job

ADD = """module add{w}(input clk, input [{m}:0] a, b, output reg [{m}:0] y);
  reg [{m}:0] ra, rb;
  always @(posedge clk) begin ra <= a; rb <= b; y <= ra + rb; end
endmodule
"""
XOR = """module xor{n}(input clk, input [{m}:0] a, output reg y);
  reg [{m}:0] ra;
  always @(posedge clk) begin ra <= a; y <= ^ra; end
endmodule
"""


def _paths(tmp_path, text):
    (tmp_path / "d.v").write_text(text)
    stat = tmp_path / "stat.json"
    run_yosys_job("xilinx", {"family": "xc7", "files": [str(tmp_path / "d.v")],
                             "stat": str(stat)}, tmp_path)
    return {m.lstrip("\\"): v["path"] for m, v in json.loads(stat.read_text())["modules"].items()}


def test_carry_chain_length_and_lut_levels_of_synthesized_logic(tmp_path):
    p = _paths(tmp_path, ADD.format(w=16, m=15) + ADD.format(w=32, m=31)
               + XOR.format(n=6, m=5) + XOR.format(n=36, m=35))
    # a w-bit adder is one CARRY4 per 4 bits behind a LUT level, register to register
    for w in (16, 32):
        assert p[f"add{w}"]["carry4"] == math.ceil(w / 4)
        assert p[f"add{w}"]["lut_levels"] >= 1
        assert (p[f"add{w}"]["start"], p[f"add{w}"]["end"]) == ("FDRE", "FDRE")
    assert p["add32"]["delay_ps"] > p["add16"]["delay_ps"]
    assert fmax_mhz(p["add32"]) < fmax_mhz(p["add16"])
    # a 6-input XOR is one LUT6; 36 inputs need at least two levels of them (ABC9's
    # delay-driven mapping may take a third, faster-pin level)
    assert p["xor6"]["lut_levels"] == 1 and p["xor6"]["carry4"] == 0
    assert 2 <= p["xor36"]["lut_levels"] <= 4 and p["xor36"]["carry4"] == 0


def test_worst_path_follows_the_slowest_arc_and_counts_routing():
    delays = {"FDRE": {"arcs": {}, "comb": 0, "clk_q": 300, "setup": {"D": 10}},
              "LUT2": {"arcs": {("I0", "O"): 200, ("I1", "O"): 100}, "comb": 200,
                       "clk_q": 0, "setup": {}}}
    ff = {"port_directions": {"C": "input", "D": "input", "Q": "output"}}
    m = {"ports": {}, "cells": {
        "r0": {"type": "FDRE", **ff, "connections": {"C": [1], "D": [2], "Q": [3]}},
        "r1": {"type": "FDRE", **ff, "connections": {"C": [1], "D": [4], "Q": [5]}},
        "l0": {"type": "LUT2", "port_directions": {"I0": "input", "I1": "input",
                                                   "O": "output"},
               "connections": {"I0": [3], "I1": [5], "O": [6]}},
        "l1": {"type": "LUT2", "port_directions": {"I0": "input", "I1": "input",
                                                   "O": "output"},
               "connections": {"I0": [5], "I1": [6], "O": [4]}}}}
    p = worst_path(m, delays, net_ps=50)
    # r0 -> l0.I0 -> l1.I1 -> r1.D: 300 + (50 + 200) + (50 + 100) + 50 + 10
    assert p == {"delay_ps": 760, "lut_levels": 2, "carry4": 0, "muxf": 0, "start": "FDRE",
                 "end": "FDRE", "cells": ["FDRE r0", "LUT2 l0", "LUT2 l1", "FDRE r1"],
                 "dsp_unregistered": 0}


MUL = """module mul{r}(input clk, input [11:0] a, b, output {reg} [23:0] y);
  reg [11:0] ra, rb;
  {body}
endmodule
"""


def test_a_dsp_multiply_without_its_registers_is_reported(tmp_path):
    p = _paths(tmp_path, MUL.format(r=1, reg="reg", body="always @(posedge clk) begin "
                                    "ra <= a; rb <= b; y <= ra * rb; end")
               + MUL.format(r=0, reg="", body="always @(posedge clk) begin ra <= a; rb <= b; "
                                              "end\n  assign y = ra * rb;"))
    assert p["mul1"]["dsp_unregistered"] == 0
    assert p["mul0"]["dsp_unregistered"] == 1
