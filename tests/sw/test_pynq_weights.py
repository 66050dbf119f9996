"""The DRAM weight buffer (lcp.sw.pynq.weights): every DRAM layer's packed weights at an aligned
offset of one allocated buffer."""

import numpy as np

from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch
from lcp.hw.weightstream import DramConvPlan, DramDensePlan, pack_blocks
from lcp.sw.pynq.weights import ALIGN, WeightBuffer

from tests.hw.test_weightstream import _net


def test_buffer_holds_each_dram_layer_at_its_address():
    m = _net(wide=64)
    conv, dense = m.branches[0].layers[0].name, m.branches[0].layers[4].name
    f = Folding({conv: {"pe": 2, "simd": 4, "dram": 1}, dense: {"pe": 4, "simd": 8, "dram": 1}})
    g = lower_branch(m, 0, f)
    calls = []

    def allocate(shape, dtype):
        calls.append((shape, np.dtype(dtype)))
        return np.full(shape, 0xAA, dtype=dtype)

    wb = WeightBuffer(g, allocate=allocate)
    assert len(calls) == 1 and calls[0][1] == np.uint8
    plans = {n.plan.layer.name: n.plan for n in g.nodes
             if isinstance(n.plan, (DramConvPlan, DramDensePlan))}
    assert set(wb.addresses) == {conv, dense}
    for name, plan in plans.items():
        off = wb.offsets[name]
        img = pack_blocks(plan.mvu)
        assert off % ALIGN == 0 and img.size == plan.dram_bytes
        np.testing.assert_array_equal(wb.buffer[off:off + img.size], img)
    a, b = sorted(wb.offsets.values())
    assert b - a >= pack_blocks(plans[min(wb.offsets, key=wb.offsets.get)].mvu).size


def test_buffer_holds_the_reused_engines_image_at_base():
    from lcp.hw.reuse_program import ReusedProgram

    class Buf(np.ndarray):
        physical_address = 0x1800_0000

    prog = ReusedProgram(_net(wide=12), 2, 8)
    wb = WeightBuffer(prog, allocate=lambda shape, dtype: np.zeros(shape, dtype).view(Buf))
    img = prog.dram_image()
    assert wb.base == 0x1800_0000 and wb.addresses == {"reused": wb.base}
    np.testing.assert_array_equal(wb.buffer[:img.size], img)
    written = []
    wb.attach(type("E", (), {"set_weight_base": lambda self, a: written.append(a)})())
    assert written == [wb.base]
