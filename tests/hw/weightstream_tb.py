"""cocotb test of the DRAM dense engine (run by tests/hw/test_weightstream_rtl.py).

The DRAM model is cocotbext-axi's ``AxiRamRead`` on the engine's ``m_axi_*`` read channels,
holding the packed weights at ``base``. A source offers the input beats back to back from
cycle 0, the output is always ready; every beat's cycle is recorded
(``$LCP_WS_TB_DIR``: ``config.json``, ``weights.npy``, ``in_beats.npy`` in; ``out.json`` out).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiRamRead, AxiReadBus


@cocotb.test()
async def run_frames(dut):
    d = Path(os.environ["LCP_WS_TB_DIR"])
    cfg = json.loads((d / "config.json").read_text())
    beats = [int(v) for v in np.load(d / "in_beats.npy", allow_pickle=False)]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = AxiRamRead(AxiReadBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=1 << 20)
    ram.write(cfg["base"], np.load(d / "weights.npy", allow_pickle=False).tobytes())
    dut.w_base.value = cfg["base"]
    dut.i_stream__valid.value = 0
    dut.o_stream__ready.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    acc, outs, k, cycle = [], [], 0, 0
    n_out = cfg["out_beats"]
    while len(outs) < n_out and cycle < cfg["max_cycles"]:
        if k < len(beats):
            dut.i_stream__valid.value = 1
            dut.i_stream__payload.value = beats[k]
        else:
            dut.i_stream__valid.value = 0
        await ReadOnly()
        if k < len(beats) and int(dut.i_stream__ready.value):
            acc.append(cycle)
            k += 1
        if int(dut.o_stream__valid.value):
            outs.append((cycle, str(dut.o_stream__payload.value)))
        await RisingEdge(dut.clk)
        cycle += 1
    (d / "out.json").write_text(json.dumps({"acc": acc, "outs": outs}))
    assert len(outs) == n_out, f"{len(outs)} of {n_out} output beats in {cycle} cycles"
