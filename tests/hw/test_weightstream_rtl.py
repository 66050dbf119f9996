"""The DRAM dense engine in Verilator (cocotb, cocotbext-axi's AxiRamRead as the DRAM):
bit-exact against golden and cycle-exact against its cycle model, on a reduced-size VGG16-like
classifier layer (a 2x2x32 feature map flattened into a 128 -> 64 dense layer, 4-bit weights)."""


import numpy as np
import pytest
from amaranth.back import verilog

from lcp.golden import Golden
from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch
from lcp.hw.weightstream import DramDensePlan, HpPort, pack_blocks

from tests.hw import axi_tb
from tests.hw.irgen import Builder

#: cocotbext-axi's AxiRamRead as a port: it streams bursts back to back; 3 cycles from the
#: read command to its first data beat (the read master's address register and the RAM model's
#: response), a property of the DRAM model like the Zynq HP port's 40.
AXIRAM = HpPort(beat_bits=64, burst=16, outstanding=8, latency=3)


def _classifier():
    b = Builder((32, 2, 2), in_bits=4, seed=17)
    x = b.flatten("input")
    b.dense(x, 64)
    return b.model()


@pytest.mark.slow
@pytest.mark.parametrize("pe,simd", [(4, 4), (2, 4)])
def test_dram_dense_engine_is_bit_and_cycle_exact(tmp_path, pe, simd):
    m = _classifier()
    dense = m.branches[0].layers[-1]                 # the dense layer (after the flatten)
    g = lower_branch(m, 0, Folding({dense.name: {"pe": pe, "simd": simd, "dram": 1}}))
    (node,) = [n for n in g.nodes if isinstance(n.plan, DramDensePlan)]
    plan = DramDensePlan(dense, node.plan.in_fmt, m.tensors[dense.output], pe=pe, simd=simd,
                         port=AXIRAM)
    rng = np.random.default_rng(5)
    frames = 3
    xq = rng.integers(0, 16, size=(frames, *m.input.shape))
    flat = xq.reshape(frames, -1)                  # the flatten's input is the image
    beats = plan.in_fmt.to_stream(flat)            # (N, fi, SIMD) in stream order
    xb = plan.mvu.xbits
    words = [sum((int(v) & ((1 << xb) - 1)) << (k * xb) for k, v in enumerate(b))
             for fr in beats for b in fr]
    top = "lcp_dram_dense"
    res = axi_tb.run(tmp_path, top, verilog.convert(plan.build(), name=top, emit_src=False),
                     words, pack_blocks(plan.mvu), base=0x1000,
                     out_words=frames * plan.mvu.fo, max_cycles=20_000)

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
