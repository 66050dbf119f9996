"""The stream adapters of the reused engine's PYNQ core (lcp.hw.pynq_reused) in Amaranth's
simulator: WordsIn turns the DMA port's beats into exactly the engine's input words
(ReusedProgram.pack_input) and WordsOut turns words back into the port's beats, for a pixel in
one word, channels in whole words and channels in a padded last word, unsigned and signed."""

import numpy as np
import pytest
from lcp.hw.pynq_reused import ReusedDesign, WordsIn, WordsOut, lanes_for
from lcp.hw.reuse_program import ReusedProgram

from tests.hw.amsim import stream_run
from tests.hw.irgen import Builder


@pytest.mark.parametrize("shape,simd,signed", [((3, 2, 2), 8, False), ((16, 2, 1), 8, True),
                                               ((12, 1, 2), 8, False), ((10,), 4, True)])
def test_words_in_and_out_match_the_engines_packing(shape, simd, signed):
    b = Builder(shape, in_bits=6, signed=signed, seed=1)
    b.threshold(b.dense(b.flatten("input") if len(shape) > 1 else "input", 4), bits=4)
    m = b.model()
    prog = ReusedProgram(m, 64 // (4 * simd), simd)       # 4-bit weights: one beat per step
    d = ReusedDesign(prog)
    fmt = d.in_fmt
    C = shape[0]
    assert fmt.lanes == lanes_for(C, simd)
    xq = np.random.default_rng(2).integers(m.input.lo, m.input.hi + 1, size=(3, *shape))
    # the port's beats: elements in (H, W, C) order, `lanes` per beat
    flat = xq.reshape(3, -1)[:, fmt.perm].reshape(-1, fmt.lanes)
    beats = [[int(v) for v in row] for row in flat]
    want = prog.pack_input(xq)
    bits = prog.simd * prog.xbits
    got = stream_run(WordsIn(fmt, simd, prog.xbits), {"i_stream": beats},
                     {"o_stream": len(want)}, src_pause=[0, 1, 0], sink_pause=[0, 0, 1])
    assert [sum(bit << k for k, bit in enumerate(w)) for w in got["o_stream"]] == want
    back = stream_run(WordsOut(fmt, simd, prog.xbits),
                      {"i_stream": [[(w >> k) & 1 for k in range(bits)] for w in want]},
                      {"o_stream": len(beats)}, src_pause=[0, 0, 1], sink_pause=[1, 0])
    assert back["o_stream"] == beats
