"""The reused engine's program (lcp.hw.reuse_program): its DRAM image, its cycle model's
structure, the generator's limits; the choice between it and the dataflow design
(lcp.hw.reuse). Bit- and cycle-exactness in Verilator: tests/hw/test_reuse_rtl.py (slow)."""

import numpy as np
import pytest

from lcp.hw.base import DEVICES, Resources
from lcp.hw.reuse import choose_reused, reused_cycles, reused_resources, serve
from lcp.hw.reuse_engine import ReusedEngine
from lcp.hw.reuse_program import DRAIN, ReusedProgram
from lcp.ir import IRError

from tests.hw.test_weightstream import _net


def _decode(prog, ph, og):
    """Weights ``(PE, CG*SIMD, KH, KW)`` and thresholds ``(PE, levels)`` of one block."""
    v = int.from_bytes(prog.block_image(ph, og), "little")
    PE, S, wb, tb = prog.pe, prog.simd, prog.wbits, prog.tbits
    CG = prog.cg(ph.C)
    w = np.zeros((PE, CG * S, ph.KH, ph.KW), dtype=np.int64)
    pos = 0
    for kh in range(ph.KH):
        for kw in range(ph.KW):
            for g in range(CG):
                for q in range(PE):
                    for s in range(S):
                        e = (v >> (pos + (q * S + s) * wb)) & ((1 << wb) - 1)
                        w[q, g * S + s, kh, kw] = e - (1 << wb) if e >> (wb - 1) else e
                pos += prog.step_beats * 64
    t = np.zeros((PE, prog.levels), dtype=np.int64)
    for q in range(PE):
        for k in range(prog.levels):
            e = (v >> (pos + (q * prog.levels + k) * tb)) & ((1 << tb) - 1)
            t[q, k] = e - (1 << tb) if e >> (tb - 1) else e
    return w, t


@pytest.mark.parametrize("pe,simd", [(2, 8), (4, 4), (8, 16)])
def test_dram_image_holds_weights_and_bias_folded_thresholds(pe, simd):
    m = _net(wide=12)
    prog = ReusedProgram(m, pe, simd)
    img = prog.dram_image()
    assert img.size == prog.dram_bytes_image
    for ph in (p for p in prog.phases if p.kind == "mac"):
        conv, thr = ph.layers
        assert prog.offset(ph) % 4096 == 0
        O = ph.O
        for og in range(prog.fo(ph)):
            w, t = _decode(prog, ph, og)
            rows = slice(og * pe, min((og + 1) * pe, O))
            n = rows.stop - rows.start
            np.testing.assert_array_equal(w[:n, :ph.C], ph.weight[rows])
            assert not w[n:].any() and not w[:, ph.C:].any()       # padding is zero
            bias = conv.params["bias"][rows]
            want = np.broadcast_to(thr.params["thresholds"], (O, 15))[rows] - bias[:, None]
            lim = 1 << (prog.abits - 1)
            np.testing.assert_array_equal(t[:n], np.clip(want, -lim, lim))
            b = prog.block_image(ph, og)
            off = prog.offset(ph) + og * len(b)
            assert bytes(img[off:off + len(b)]) == b


def test_cycle_model_structure():
    m = _net(wide=64)
    prog = ReusedProgram(m, 4, 16)
    lat, per, dram = prog.cycles()
    assert lat == prog.in_words + sum(per.values()) + prog.out_words
    for ph in prog.phases:
        name = "+".join(l.name for l in ph.layers)
        if ph.kind == "pool":
            assert per[name] == ph.OH * ph.OW * prog.cg(ph.C) * 4 + DRAIN
        if ph.kind == "mac":
            fetch = prog.port.fetch_cycles(prog.block_beats(ph))
            comp = ph.OH * ph.OW * prog.fi(ph)
            fo = prog.fo(ph)
            # never faster than the fetches or the steps alone, never slower than both in turn
            assert max(fo * comp, fo * fetch) <= per[name] - DRAIN <= fo * (comp + fetch) \
                + fo * DRAIN
    assert dram >= sum(p.weight.size for p in prog.phases if p.kind == "mac") * 4 // 8
    # reused_cycles is the program's model
    assert reused_cycles(m, 4, 16) == (lat, per, dram)


def test_generator_refuses_what_it_does_not_build():
    m = _net(wide=64)               # its last dense has no threshold: a modelled phase
    prog = ReusedProgram(m, 4, 16)
    assert [p.kind for p in prog.phases] == ["mac", "pool", "mac", "model"]
    with pytest.raises(IRError, match="b0_dense.*not followed by its threshold"):
        ReusedEngine(prog)
    with pytest.raises(IRError, match="PE to divide SIMD"):
        ReusedProgram(m, 8, 4).check_buildable()
    with pytest.raises(IRError, match="multiple of 64"):
        ReusedProgram(m, 1, 8).check_buildable()


def test_more_lanes_faster_and_cost_more_until_simd_outgrows_the_channels():
    m = _net(wide=64)               # 4 and 8 channels: SIMD above 8 fetches padding
    budget = DEVICES["xc7z020"]
    lat = {ps: reused_cycles(m, *ps)[0] for ps in [(2, 8), (4, 8), (8, 8), (8, 64)]}
    assert lat[(8, 8)] < lat[(4, 8)] < lat[(2, 8)]
    assert lat[(8, 64)] > lat[(8, 8)]
    assert reused_resources(m, 8, 8, budget).lut > reused_resources(m, 2, 8, budget).lut


def test_choose_reused_respects_the_budget():
    m = _net(wide=64)
    c = choose_reused(m, "xc7z020")
    assert c.resources.fits(DEVICES["xc7z020"])
    assert c.simd % c.pe == 0 and (c.pe * c.simd * 4) % 64 == 0
    with pytest.raises(IRError, match="no reused engine"):
        choose_reused(m, Resources(lut=100, ff=100, dsp=0, bram=0))


def test_serve_takes_the_faster_and_keeps_the_other():
    m = _net(wide=64)
    s = serve(m, "xc7z020")
    alt = s["alternative"]
    assert s["latency"] <= alt["latency"]
    assert {s["engine"], alt["engine"]} == {"dataflow", "reused"}


def test_compile_falls_back_to_the_reused_engine_and_writes_its_build(tmp_path, monkeypatch,
                                                                      capsys):
    """`lcp compile --budget` on a device too small for any dataflow design: the reused
    engine's Verilog and DRAM image land in the build folder."""
    import json

    from lcp.ir import save
    from lcp.sw.cli import main

    from tests.hw.test_reuse_rtl import vgg_like

    m = vgg_like()
    save(m, tmp_path / "m")
    monkeypatch.setitem(DEVICES, "tiny", Resources(lut=4400, ff=20000, dsp=4, bram=4))
    code = main(["compile", str(tmp_path / "m.json"), "-o", str(tmp_path / "b"),
                 "--budget", "tiny", "--branch", "0"])
    out = capsys.readouterr().out
    assert code in (0, None), out
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["engine"] == "reused" and "no dataflow design fits tiny" in out
    assert "even the smallest folding" in rep["dataflow"]
    prog = ReusedProgram(m, rep["pe"], rep["simd"])
    assert rep["latency"] == prog.cycles()[0]
    assert (tmp_path / "b" / "weights.bin").read_bytes() == prog.dram_image().tobytes()
    assert "module lcp_reused" in (tmp_path / "b" / "lcp_reused.v").read_text()
