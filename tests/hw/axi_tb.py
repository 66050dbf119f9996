"""cocotb harness of the engines that read DRAM (the DRAM dense engine, the reused engine), and
its runner.

The DRAM model is cocotbext-axi's ``AxiRamRead`` on the engine's ``m_axi_*`` read channels,
holding the weight image at ``base``. A source offers the input words back to back from cycle 0,
the output is always ready; every beat's cycle is recorded. Files in ``$LCP_AXI_TB_DIR``:
``config.json`` (``base``, ``ram_bytes``, ``out_words``, ``max_cycles``), ``weights.npy`` and
``in_words.json`` (decimal strings) in, ``out.json`` (``acc``: the cycles inputs were taken,
``outs``: (cycle, bits) of every output word) out. :func:`run` compiles and runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiRamRead, AxiReadBus

ROOT = Path(__file__).resolve().parents[2]


@cocotb.test()
async def run_frames(dut):
    d = Path(os.environ["LCP_AXI_TB_DIR"])
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


def _compile(top: str, src: Path, sim_dir: Path):
    from lcp.hw.sim import verilator_env
    import cocotb_tools.config as cfg
    verilator_env()
    libs = cfg.libs_dir
    cmd = ["verilator", "-cc", "--exe", "-Mdir", str(sim_dir), "--top-module", top, "--vpi",
           "--public-flat-rw", "--prefix", "Vtop", "-o", top,
           "-LDFLAGS", f"-Wl,-rpath,{libs} -L{libs} -lcocotbvpi_verilator", "-Wno-fatal",
           "--timescale", "1ns/1ps", str(cfg.share_dir / "lib" / "verilator" / "verilator.cpp"),
           str(src)]
    subprocess.run(cmd, check=True, cwd=sim_dir, capture_output=True)
    subprocess.run(["make", "-j", "2", "-C", str(sim_dir), "-f", "Vtop.mk",
                    "CFG_CXXFLAGS_PCH_I=-include"], check=True, capture_output=True)


def run(tmp_path: Path, top: str, verilog_text: str, words: list[int], weights: np.ndarray,
        *, base: int, out_words: int, max_cycles: int, ram_bytes: int | None = None) -> dict:
    """Compile ``verilog_text`` (top module ``top``) with Verilator, run :func:`run_frames` on
    ``words`` with ``weights`` at ``base`` in the DRAM model; return ``out.json``."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    src = tmp_path / f"{top}.v"
    src.write_text(verilog_text)
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    _compile(top, src, sim_dir)
    (tmp_path / "in_words.json").write_text(json.dumps([str(int(w)) for w in words]))
    np.save(tmp_path / "weights.npy", weights)
    (tmp_path / "config.json").write_text(json.dumps(
        {"base": base, "ram_bytes": ram_bytes or base + weights.nbytes + (1 << 20),
         "out_words": out_words, "max_cycles": max_cycles}))
    env = {"LCP_AXI_TB_DIR": str(tmp_path), "COCOTB_LOG_LEVEL": "WARNING",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    xml = tmp_path / "results.xml"
    try:
        get_runner("verilator").test(test_module="tests.hw.axi_tb", hdl_toplevel=top,
                                     hdl_toplevel_lang="verilog", build_dir=sim_dir,
                                     test_dir=tmp_path, extra_env=env, results_xml=str(xml),
                                     log_file=tmp_path / "sim.log")
    except SystemExit:
        pass
    total, failed = get_results(xml)
    assert total == 1 and failed == 0, (tmp_path / "sim.log").read_text()[-3000:]
    return json.loads((tmp_path / "out.json").read_text())
