"""The PYNQ top: register map as data, argument checks, and cocotb + Verilator runs of
tests/hw/pynq_top_tb.py (AXI4-Lite through cocotbext-axi's master, DMA-style streams with idle
cycles and back-pressure, error flags)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.hw.build import lower
from lcp.hw.plumbing import pack_frames
from lcp.hw import pynq_axil, pynq_regs
from lcp.hw.pynq_axil import RegisterFile, register_values, regmap_json, regmap_markdown
from lcp.hw.pynq_regs import AXIL_ADDR_WIDTH, ID_MAGIC, EngineInfo
from lcp.hw.pynq_top import PynqTop

from tests.pynq_common import tiny_build, tiny_folding, tiny_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    m = tiny_model()
    g = lower(m, tiny_folding(32))
    return m, g, EngineInfo.of(m, g)


def test_register_file_checks_its_argument():
    with pytest.raises(TypeError, match=r"^Engine info must be an EngineInfo, not 3$"):
        RegisterFile(info=3)


def test_top_checks_its_arguments(tiny):
    m, g, info = tiny
    with pytest.raises(TypeError,
                       match=r"^Graph must be a PlanGraph or a ReusedDesign, not None$"):
        PynqTop(graph=None, info=info)
    with pytest.raises(TypeError, match=r"^Engine info must be an EngineInfo, not 'x'$"):
        PynqTop(graph=g, info="x")
    with pytest.raises(TypeError):
        PynqTop(g, info)                                   # keyword-only
    g48 = lower(m, tiny_folding(48))
    with pytest.raises(ValueError, match=r"^The input stream width must be one of \(32, 64\) "
                                         r"\(an AXI DMA stream port\), not 48$"):
        PynqTop(graph=g48, info=EngineInfo.of(m, g48))


def test_register_offsets_are_distinct_and_fit():
    used = {}
    for r in RegisterFile.MAP:
        for k in range(r.count):
            off = r.offset + 4 * k
            assert off not in used, f"{r.name} overlaps {used[off]}"
            assert off < 1 << AXIL_ADDR_WIDTH
            used[off] = r.name
        assert sum(f.width for f in r.fields) <= 32


def test_docstring_table_lists_every_register():
    """The table in the module docstring names every register at its offset."""
    doc = pynq_axil.__doc__
    rows = dict(re.findall(r"^(0x[0-9A-F]{3})\s+([A-Z_0-9./]+)", doc, re.M))
    for r in RegisterFile.MAP:
        key = f"0x{r.offset:03X}"
        assert key in rows, f"{r.name} at {key} missing from the docstring table"
        assert rows[key].split("/")[0].split("..")[0].startswith(r.name.split("_")[0]), \
            (r.name, rows[key])
    md = regmap_markdown()
    assert md.count("\n") == len(RegisterFile.MAP) + 1


def test_register_values(tiny):
    m, g, info = tiny
    v = register_values(info)
    assert v[0x000] == ID_MAGIC
    assert "".join(f"{v[0x40 + 4 * k]:08x}" for k in range(8)) == m.digest()
    assert [v[0x64], v[0x68], v[0x6C]] == [1, 6, 6]
    assert v[0x60] & 0xFF == 8 and (v[0x60] >> 16) == 32 and (v[0x60] >> 12) & 0xF == 3
    assert v[0x7C] == 3 and v[0x80] == 0
    lo = v[0x88] - (1 << 32) if v[0x88] >= 1 << 31 else v[0x88]
    assert lo == m.tensors[m.output].lo
    assert v[0x38] == info.inp.words and v[0x3C] == info.out.words
    j = regmap_json(info)
    assert j["values"]["0x000"] == ID_MAGIC and j["vlnv"] == pynq_regs.VLNV


def test_driver_vlnv_matches():
    from lcp.sw.pynq import driver as pynq_driver
    assert pynq_driver.VLNV == pynq_regs.VLNV


def test_cocotb_registers_and_streams(tmp_path):
    """Every cocotb test in tests/hw/pynq_top_tb.py passes on the Verilated top."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    from lcp.hw.sim import verilator_env
    from lcp.sw.pynq.simtb import compile_top, sim_dir

    b = tiny_build(32)
    compile_top(b.dir)
    m = tiny_model()
    rng = np.random.default_rng(3)
    xq = rng.integers(0, 256, size=(6, 1, 6, 6))
    y = Golden(m).run_int(xq)
    g = lower(m, b.folding)
    inp = np.frombuffer(b"".join(pack_frames(xq, g.in_fmt, 32)), np.uint8).reshape(6, -1)
    out = np.frombuffer(b"".join(pack_frames(y, g.out_fmt, 32)), np.uint8).reshape(6, -1)
    np.save(tmp_path / "in_frames.npy", inp)
    np.save(tmp_path / "out_frames.npy", out)
    (tmp_path / "expected.json").write_text(json.dumps(
        {"consts": {str(k): v for k, v in register_values(b.info).items()},
         "in_width": 32, "out_width": 32}))
    verilator_env()
    env = {"LCP_PYNQ_TB_DIR": str(tmp_path), "COCOTB_LOG_LEVEL": "WARNING",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    xml = tmp_path / "results.xml"
    try:
        get_runner("verilator").test(
            test_module="tests.hw.pynq_top_tb", hdl_toplevel="lcp_pynq",
            hdl_toplevel_lang="verilog", build_dir=sim_dir(b.dir), test_dir=tmp_path,
            extra_env=env, results_xml=str(xml), log_file=tmp_path / "sim.log")
    except SystemExit:          # the runner exits on a failed cocotb test: report it below
        pass
    total, failed = get_results(xml)
    log = (tmp_path / "sim.log").read_text()[-4000:]
    assert total == 7 and failed == 0, log
