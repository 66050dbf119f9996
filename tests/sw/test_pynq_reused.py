"""The reused engine served through the PYNQ path: its PYNQ top (lcp.hw.pynq_top.
generate_pynq_reused) on the simulated board, the weights loaded by the driver into the
simulated DDR and read by the engine's AXI4 read master from the address in WEIGHT_BASE
(answered from that DDR by the testbench), images in and results out over the DMA model:
results equal golden bit for bit, and without the weights loaded they do not."""

from __future__ import annotations

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.hw.pynq_top import generate_pynq_reused
from lcp.hw.reuse_program import ReusedProgram
from lcp.sw.pynq.driver import LcpDriver
from lcp.sw.pynq.sim import SimBoard

from tests.hw.test_reuse_rtl import vgg_like
from tests.hw.test_weightstream_rtl import AXIRAM


@pytest.mark.slow
@pytest.mark.parametrize("pe,simd,width", [(2, 8, 64), (4, 4, 32)])
def test_reused_engine_serves_its_weights_from_ddr_on_the_simulated_board(tmp_path, pe, simd,
                                                                           width):
    m = vgg_like()
    b = generate_pynq_reused(m, tmp_path / "build", pe, simd, in_width=width,
                             out_width=width)
    assert "m_axi_araddr" in b.verilog.read_text()
    board = SimBoard(b.dir)
    ol = board.overlay()
    soc = board.doc["soc"]
    drv = LcpDriver(getattr(ol, soc["engine"]["instance"]), getattr(ol, soc["dma"]["instance"]),
                    doc=board.doc, model=m, allocate=board.allocate, batch=4, timeout=600,
                    owner=board)
    try:
        prog = ReusedProgram(m, pe, simd)
        wb = drv.load_weights(prog)
        assert drv.engine.read("WEIGHT_BASE") == wb.base
        xq = np.random.default_rng(3).integers(m.input.lo, m.input.hi + 1,
                                               size=(6, *m.input.shape))
        gold = Golden(m).run_branch(0, xq)
        assert len({tuple(g.reshape(-1)) for g in gold}) > 1            # the images differ
        got = drv.run_int(xq)
        np.testing.assert_array_equal(got, gold.reshape(got.shape))
        # one image at a time: the engine's cycle model with the testbench's DRAM responder
        # (cocotbext-axi's AXI slave, as AXIRAM) per image, plus the stream adapters' few
        # cycles of latency per image
        lat = ReusedProgram(m, pe, simd, port=AXIRAM).cycles()[0]
        busy = drv.last_call["busy_cycles"]
        assert len(xq) * lat <= busy <= len(xq) * (lat + 16), (busy, lat)
        print(f"reused {pe}x{simd}: {len(xq)} images bit-exact, busy {busy} cycles, "
              f"model {lat} per image (Zynq HP: {b.report['model_cycles']['latency_cycles']}), "
              f"weights {wb.nbytes} bytes at 0x{wb.base:08X}")
        # the weights really come from the buffer: zeroed, the results change
        wb.buffer[:] = 0
        wb.buffer.flush()
        assert not np.array_equal(drv.run_int(xq), got)
    finally:
        drv.close()
