"""The reused engine (lcp.hw.reuse_engine) in Amaranth's simulator with a small AXI read slave
as the DRAM (tests/hw/reuse_amsim.py): a reduced-size VGG16 (tests/hw/test_reuse_rtl.py's
``vgg_like``) bit-exact against golden and cycle-exact against the program's cycle model.
The same in Verilator with cocotbext-axi's AxiRamRead: tests/hw/test_reuse_rtl.py (slow)."""

import numpy as np

from lcp.golden import Golden
from lcp.hw.reuse_program import ReusedProgram
from lcp.hw.weightstream import HpPort

from tests.hw.reuse_amsim import simulate_reused
from tests.hw.test_reuse_rtl import vgg_like


def test_small_vgg_on_the_reused_engine_is_bit_and_cycle_exact():
    m = vgg_like()
    latency = 5
    # the read master offers its first address the cycle after the command: one more cycle
    prog = ReusedProgram(m, 2, 8, port=HpPort(latency=latency + 1))
    xq = np.random.default_rng(5).integers(0, 256, size=(2, *m.input.shape))
    words = prog.pack_input(xq)
    taken, got = simulate_reused(prog, words, prog.dram_image(), latency=latency)
    gold = Golden(m).run_branch(0, xq)
    assert len({tuple(g.reshape(-1)) for g in gold}) == len(gold)
    np.testing.assert_array_equal(prog.unpack_output([w for _, w in got]), gold)
    acc, outs = prog.timing([np.zeros(len(words), dtype=np.int64)])
    assert list(acc[0]) == taken
    assert list(outs) == [c for c, _ in got]
