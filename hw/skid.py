"""A skid buffer: a stream link whose ``ready`` comes from a register.

An engine's input ``ready`` may depend on its output's ``ready`` in the same cycle (the
pointwise engines of :mod:`lcp.hw.pointwise` stall as a whole: ``en = ~o.valid | o.ready``);
chained over a whole LCP core, the ready signals made one combinational path from the AXI output
adapter back to the input adapter, the core's critical path on ASAP7 and OSU018 (adder-tree
registers could not shorten it).

:class:`SkidBuffer` cuts it: ``i.ready`` is the register ``~full``. A beat passes straight
through while the buffer is empty (no added cycle); when the consumer refuses a beat that was
accepted, the beat waits in the buffer and ``i.ready`` drops the next cycle. Throughput stays
one beat per cycle. On the links where the cycle model has every beat taken when offered (its
producer is not elastic, see :mod:`lcp.hw.graph`) the buffer never fills, so the model is
unchanged; under back-pressure it holds one beat.

Cost (:func:`skid_resources`): the beat register and its valid bit, and one multiplexer per bit.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .base import Resources

__all__ = ["SkidBuffer", "skid_resources"]


class SkidBuffer(wiring.Component):
    """Skid buffer on ``signature`` (a ``stream.Signature``): ``i_stream`` in, ``o_stream``
    out, same beats in the same order, ``i_stream.ready`` registered."""

    def __init__(self, signature: stream.Signature):
        super().__init__({"i_stream": In(signature), "o_stream": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        full = Signal()
        buf = Signal(i.payload.shape() if hasattr(i.payload, "shape") else len(i.payload))
        m.d.comb += [i.ready.eq(~full), o.valid.eq(full | i.valid),
                     o.payload.eq(Mux(full, buf, i.payload))]
        with m.If(~full & i.valid & ~o.ready):
            m.d.sync += [full.eq(1), buf.eq(i.payload)]
        with m.Elif(full & o.ready):
            m.d.sync += full.eq(0)
        return m


def skid_resources(bits: int) -> Resources:
    """Estimate of one :class:`SkidBuffer` of ``bits``-bit beats."""
    return Resources(lut=bits + 2, ff=bits + 1)
