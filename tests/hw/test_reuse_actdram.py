"""The reused engine with its activations in DRAM (lcp.hw.reuse_actdram): the phases of
depthwise, strided, residual and pooling layers, its traffic and per-phase bounds, and the
choice between it and the on-chip program (lcp.hw.reuse.choose_reused)."""

import pytest

from lcp.hw.base import DEVICES, Resources
from lcp.hw.reuse import choose_reused
from lcp.hw.reuse_actdram import ActDramProgram
from lcp.hw.reuse_program import DRAIN, ReusedProgram
from lcp.ir import IRError

from tests.hw.irgen import Builder


def _mobile_res(hw=16):
    """A strided conv, a depthwise conv, a pointwise conv, a residual add, a global average
    pool and a dense layer: the layer kinds of MobileNet-v1 and ResNet-50."""
    b = Builder((3, hw, hw), seed=3)
    x = b.threshold(b.conv("input", 16, 3, stride=2, pad=1), 4)
    y = b.threshold(b.conv(x, 16, 3, pad=1, groups=16), 4)
    y = b.threshold(b.conv(y, 16, 1), 4)
    x = b.threshold(b.add(x, y), 4)
    x = b.flatten(b.avgpool(x, hw // 2, shift=6))
    b.dense(x, 10)
    return b.model()


def test_every_layer_has_a_phase_and_grouped_convs_keep_their_threshold():
    m = _mobile_res()
    prog = ActDramProgram.of(ReusedProgram(m, 4, 16))
    names = [[l.name for l in p.layers] for p in prog.phases]
    assert [n for p in names for n in p] == [l.name for l in m.branches[0].layers
                                             if l.op != "flatten"]
    kinds = {p.layers[0].op + ("g" if p.layers[0].attrs.get("groups", 1) > 1 else ""): p.kind
             for p in prog.phases}
    assert kinds == {"conv": "mac", "convg": "model", "add": "model", "threshold": "model",
                     "avgpool": "model", "dense": "model"}
    grouped = next(p for p in prog.phases if p.layers[0].attrs.get("groups", 1) > 1)
    assert [l.op for l in grouped.layers] == ["conv", "threshold"]
    with pytest.raises(IRError, match="activations in DRAM"):
        prog.check_buildable()


def test_traffic_and_per_phase_bounds():
    m = _mobile_res()
    chip = ReusedProgram(m, 4, 16)
    prog = ActDramProgram.of(chip)
    lat, per, dram = prog.cycles()
    assert lat == prog.in_words + sum(per.values()) + prog.out_words
    t = m.tensors
    beats = prog.act_beats(prog.in_spec.shape) + prog.act_beats(prog.out_spec.shape)
    for ph in prog.phases:
        name = "+".join(l.name for l in ph.layers)
        ins = [t[i].shape for i in ph.layers[0].inputs]
        in_b = sum(-(-prog.words(s) * prog.simd * prog.xbits // 64) for s in ins)
        out_b = -(-prog.words(t[ph.layers[-1].output].shape) * prog.simd * prog.xbits // 64)
        assert len(ins) == (2 if ph.layers[0].op == "add" else 1)
        if ph.kind == "mac":
            wt = prog.fo(ph) * prog.block_beats(ph)
            reads = min(wt + prog.fo(ph) * in_b, in_b + ph.OH * wt)
            comp = prog.port.fetch_cycles(prog.block_beats(ph)) + \
                prog.fo(ph) * ph.OH * ph.OW * prog.fi(ph)
            assert per[name] == max(comp, prog.port.fetch_cycles(reads), out_b) + DRAIN
            # the program on chip is never slower than its compute, the one in DRAM adds
            # no more than the port's time
            assert per[name] >= chip.phase_end(ph, 0) - prog.port.fetch_cycles(
                prog.block_beats(ph)) * prog.fo(ph)
        else:
            reads = prog._modelled(ph)[1] // 8 + in_b
            assert per[name] == max(chip._modelled(ph)[0] - DRAIN,
                                    prog.port.fetch_cycles(reads), out_b) + DRAIN
        beats += reads + out_b
    assert dram == 8 * beats
    # the weight image is the on-chip program's
    assert (prog.dram_image() == chip.dram_image()).all()


def test_line_buffers_instead_of_frame_buffers():
    m = _mobile_res(hw=64)
    chip = ReusedProgram(m, 4, 16)
    prog = ActDramProgram.of(chip)
    budget = DEVICES["xc7z020"]
    rc, rd = chip.resources(int(budget.dsp)), prog.resources(int(budget.dsp))
    assert rd.bram < rc.bram and rd.dsp == rc.dsp and rd.lut > rc.lut   # + the write master


def test_choose_reused_moves_activations_to_dram_only_when_they_do_not_fit():
    m = _mobile_res(hw=64)
    c = choose_reused(m, "xc7z020")
    assert c.activations == "chip" and c.buildable is False        # depthwise: modelled
    small = Resources(lut=53200, ff=106400, dsp=220, bram=3)
    c = choose_reused(m, small)
    assert c.activations == "dram" and c.resources.fits(small)
    prog = c.program(m)
    assert isinstance(prog, ActDramProgram) and prog.cycles()[0] == c.latency
    assert c.to_json()["activations"] == "dram" and c.to_json()["generator"] is False
