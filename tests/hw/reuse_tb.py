"""cocotb test of the reused engine (run by tests/hw/test_reuse_rtl.py).

The DRAM model is cocotbext-axi's ``AxiRamRead`` on the engine's ``m_axi_*`` read channels,
holding the program's DRAM image at ``base``. A source offers the input words back to back from
cycle 0, the output is always ready; every beat's cycle is recorded (``$LCP_REUSE_TB_DIR``:
``config.json``, ``weights.npy``, ``in_words.json`` in; ``out.json`` out).
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
    d = Path(os.environ["LCP_REUSE_TB_DIR"])
    cfg = json.loads((d / "config.json").read_text())
    words = [int(v) for v in json.loads((d / "in_words.json").read_text())]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = AxiRamRead(AxiReadBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                     size=cfg["ram_bytes"])
    ram.write(cfg["base"], np.load(d / "weights.npy", allow_pickle=False).tobytes())
    dut.w_base.value = cfg["base"]
    dut.i_stream__valid.value = 0
    dut.o_stream__ready.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    acc, outs, k, cycle = [], [], 0, 0
    n_out = cfg["out_words"]
    while len(outs) < n_out and cycle < cfg["max_cycles"]:
        if k < len(words):
            dut.i_stream__valid.value = 1
            dut.i_stream__payload.value = words[k]
        else:
            dut.i_stream__valid.value = 0
        await ReadOnly()
        if k < len(words) and int(dut.i_stream__ready.value):
            acc.append(cycle)
            k += 1
        if int(dut.o_stream__valid.value):
            outs.append((cycle, str(dut.o_stream__payload.value)))
        await RisingEdge(dut.clk)
        cycle += 1
    (d / "out.json").write_text(json.dumps({"acc": acc, "outs": outs}))
    assert len(outs) == n_out, f"{len(outs)} of {n_out} output words in {cycle} cycles"
