"""The reused engine (lcp.hw.reuse_engine) in Verilator, cocotbext-axi's AxiRamRead as the DRAM:
a reduced-size VGG16 (the same layer kinds: 3x3 convolutions with their thresholds, 2x2 max
pools, flatten, two dense layers; 3x8x8 input, 8-16 channels) is bit-exact against golden and
cycle-exact against the program's cycle model."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

from lcp.golden import Golden
from lcp.hw.reuse_engine import ReusedEngine
from lcp.hw.reuse_program import ReusedProgram
from lcp.hw.weightstream import HpPort

from tests.hw.irgen import Builder
from tests.hw.test_weightstream_rtl import AXIRAM, _compile

ROOT = Path(__file__).resolve().parents[2]


def vgg_like(seed: int = 17, hw: int = 8):
    """VGG16's layer kinds at a reduced size: conv-conv-pool-conv-pool-dense-dense, every
    conv/dense followed by its 4-bit threshold (shared per tensor like the zoo's convs, per
    channel for the first dense)."""
    b = Builder((3, hw, hw), in_bits=8, seed=seed)
    x = b.threshold(b.conv("input", 8, 3, pad=1), shared=True)
    x = b.threshold(b.conv(x, 8, 3, pad=1), shared=True)
    x = b.maxpool(x, 2)
    x = b.threshold(b.conv(x, 16, 3, pad=1), shared=True)
    x = b.flatten(b.maxpool(x, 2))
    x = b.threshold(b.dense(x, 16))
    x = b.threshold(b.dense(x, 10), shared=True)
    return calibrate(b.model(), seed)


def calibrate(m, seed: int):
    """Thresholds at the quantiles of their input on random images (random thresholds over the
    whole accumulator range would send almost every image to the same output)."""
    rng = np.random.default_rng(seed)
    xq = rng.integers(m.input.lo, m.input.hi + 1, size=(64, *m.input.shape))
    for l in m.branches[0].layers:
        if l.op != "threshold":
            continue
        trace = {}
        Golden(m).run_branch(0, xq, trace=trace)
        v = trace[l.inputs[0]]
        t = l.params["thresholds"]
        q = np.linspace(0, 1, t.shape[1] + 2)[1:-1]
        if t.shape[0] == 1:
            t[...] = np.quantile(v, q).astype(np.int64)[None]
        else:
            t[...] = np.quantile(v.reshape(len(v), t.shape[0], -1).transpose(1, 0, 2)
                                 .reshape(t.shape[0], -1), q, axis=1).T.astype(np.int64)
    return m


def run_reused(tmp_path: Path, m, pe: int, simd: int, frames: int, port: HpPort = AXIRAM):
    """Build, simulate ``frames`` random images; ``(program, inputs, outputs, result)``."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    prog = ReusedProgram(m, pe, simd, port=port)
    top = "lcp_reused"
    src = tmp_path / f"{top}.v"
    src.write_text(verilog.convert(ReusedEngine(prog), name=top, emit_src=False))
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    _compile(top, src, sim_dir)
    rng = np.random.default_rng(5)
    xq = rng.integers(m.input.lo, m.input.hi + 1, size=(frames, *m.input.shape))
    words = prog.pack_input(xq)
    (tmp_path / "in_words.json").write_text(json.dumps([str(w) for w in words]))
    img = prog.dram_image()
    np.save(tmp_path / "weights.npy", img)
    base = 0x10000
    _, outs = prog.timing([np.zeros(len(words), dtype=np.int64)])
    (tmp_path / "config.json").write_text(json.dumps(
        {"base": base, "ram_bytes": base + img.size + 4096, "out_words": len(outs),
         "max_cycles": int(outs[-1]) + 1000}))
    env = {"LCP_REUSE_TB_DIR": str(tmp_path), "COCOTB_LOG_LEVEL": "WARNING",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    xml = tmp_path / "results.xml"
    try:
        get_runner("verilator").test(test_module="tests.hw.reuse_tb", hdl_toplevel=top,
                                     hdl_toplevel_lang="verilog", build_dir=sim_dir,
                                     test_dir=tmp_path, extra_env=env, results_xml=str(xml),
                                     log_file=tmp_path / "sim.log")
    except SystemExit:
        pass
    total, failed = get_results(xml)
    assert total == 1 and failed == 0, (tmp_path / "sim.log").read_text()[-3000:]
    res = json.loads((tmp_path / "out.json").read_text())
    return prog, xq, words, res


@pytest.mark.slow
@pytest.mark.parametrize("pe,simd", [(2, 8), (4, 4)])
def test_reused_engine_runs_a_small_vgg_bit_and_cycle_exact(tmp_path, pe, simd):
    m = vgg_like()
    prog, xq, words, res = run_reused(tmp_path, m, pe, simd, frames=3)
    got = prog.unpack_output([int(b, 2) for _, b in res["outs"]])
    gold = Golden(m).run_branch(0, xq)
    assert len({tuple(g.reshape(-1)) for g in gold}) == len(gold)     # the images differ
    np.testing.assert_array_equal(got, gold.reshape(got.shape))
    accs, outs = prog.timing([np.zeros(len(words), dtype=np.int64)])
    assert list(accs[0]) == res["acc"]
    assert list(outs) == [c for c, _ in res["outs"]]
