"""The DRAM dense engine in Verilator (cocotb, cocotbext-axi's AxiRamRead as the DRAM):
bit-exact against golden and cycle-exact against its cycle model, on a reduced-size VGG16-like
classifier layer (a 2x2x32 feature map flattened into a 128 -> 64 dense layer, 4-bit weights)."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

from lcp.golden import Golden
from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch
from lcp.hw.weightstream import DramDensePlan, HpPort, pack_blocks

from tests.hw.irgen import Builder

ROOT = Path(__file__).resolve().parents[2]
#: cocotbext-axi's AxiRamRead as a port: it streams bursts back to back; 3 cycles from the
#: read command to its first data beat (the read master's address register and the RAM model's
#: response), a property of the DRAM model like the Zynq HP port's 40.
AXIRAM = HpPort(beat_bits=64, burst=16, outstanding=8, latency=3)


def _classifier():
    b = Builder((32, 2, 2), in_bits=4, seed=17)
    x = b.flatten("input")
    b.dense(x, 64)
    return b.model()


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


@pytest.mark.slow
@pytest.mark.parametrize("pe,simd", [(4, 4), (2, 4)])
def test_dram_dense_engine_is_bit_and_cycle_exact(tmp_path, pe, simd):
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    m = _classifier()
    dense = m.branches[0].layers[-1]                 # the dense layer (after the flatten)
    g = lower_branch(m, 0, Folding({dense.name: {"pe": pe, "simd": simd, "dram": 1}}))
    (node,) = [n for n in g.nodes if isinstance(n.plan, DramDensePlan)]
    plan = DramDensePlan(dense, node.plan.in_fmt, m.tensors[dense.output], pe=pe, simd=simd,
                         port=AXIRAM)
    top = "lcp_dram_dense"
    src = tmp_path / f"{top}.v"
    src.write_text(verilog.convert(plan.build(), name=top, emit_src=False))
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    _compile(top, src, sim_dir)

    rng = np.random.default_rng(5)
    frames = 3
    xq = rng.integers(0, 16, size=(frames, *m.input.shape))
    flat = xq.reshape(frames, -1)                  # the flatten's input is the image
    beats = plan.in_fmt.to_stream(flat)            # (N, fi, SIMD) in stream order
    xb = plan.mvu.xbits
    words = [sum((int(v) & ((1 << xb) - 1)) << (k * xb) for k, v in enumerate(b))
             for fr in beats for b in fr]
    np.save(tmp_path / "in_beats.npy", np.array(words, dtype=object).astype(np.uint64))
    np.save(tmp_path / "weights.npy", pack_blocks(plan.mvu))
    n_out = frames * plan.mvu.fo
    (tmp_path / "config.json").write_text(json.dumps(
        {"base": 0x1000, "out_beats": n_out, "max_cycles": 20_000}))
    env = {"LCP_WS_TB_DIR": str(tmp_path), "COCOTB_LOG_LEVEL": "WARNING",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    xml = tmp_path / "results.xml"
    try:
        get_runner("verilator").test(test_module="tests.hw.weightstream_tb", hdl_toplevel=top,
                                     hdl_toplevel_lang="verilog", build_dir=sim_dir,
                                     test_dir=tmp_path, extra_env=env, results_xml=str(xml),
                                     log_file=tmp_path / "sim.log")
    except SystemExit:
        pass
    total, failed = get_results(xml)
    assert total == 1 and failed == 0, (tmp_path / "sim.log").read_text()[-3000:]
    res = json.loads((tmp_path / "out.json").read_text())

    # bit-exact: the output beats, PE lanes of acc bits, against golden
    acc_w = plan.mvu.acc_shape.width
    lanes = []
    for _, bits in res["outs"]:
        v = int(bits, 2)
        for q in range(pe):
            e = (v >> (q * acc_w)) & ((1 << acc_w) - 1)
            lanes.append(e - (1 << acc_w) if e >> (acc_w - 1) else e)
    got = plan.out_fmt.from_stream(np.array(lanes).reshape(frames, -1))
    gold = Golden(m).run_branch(0, xq)
    np.testing.assert_array_equal(got, gold.reshape(got.shape))

    # cycle-exact: the model fed with the beats' offers (all at cycle 0: back to back)
    accs, outs = plan.timing([np.zeros(len(words), dtype=np.int64)])
    assert list(accs[0]) == res["acc"]
    assert list(outs) == [c for c, _ in res["outs"]]
