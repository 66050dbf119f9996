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

:class:`RegisterSlice` cuts both directions: ``o.valid`` and ``o.payload`` come from a register
as well as ``i.ready`` (a two-beat queue, the AXI "register slice" of Xilinx' IP). A beat
offered at cycle ``t`` is offered to the consumer at ``t + 1``; beat ``k`` is taken at
``t_k = max(offer_k, t_{k-1} + 1, a_{k-2} + 1)``, where ``a_j`` is the cycle the consumer took
beat ``j`` (:func:`slice_taken`, the cycle model's rule). Where a route between two engines,
not the engines' logic, misses the clock (:func:`lcp.hw.delay.link_register`) every link gets
one (the folding's ``link_reg``).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .base import Resources
from .plumbing import _run_max

__all__ = ["SkidBuffer", "skid_resources", "RegisterSlice", "slice_resources", "slice_taken"]


def _beat(i):
    return Signal(i.payload.shape() if hasattr(i.payload, "shape") else len(i.payload))


class SkidBuffer(wiring.Component):
    """Skid buffer on ``signature`` (a ``stream.Signature``): ``i_stream`` in, ``o_stream``
    out, same beats in the same order, ``i_stream.ready`` registered."""

    def __init__(self, signature: stream.Signature):
        super().__init__({"i_stream": In(signature), "o_stream": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        full = Signal()
        buf = _beat(i)
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


class RegisterSlice(wiring.Component):
    """Register slice on ``signature``: ``i_stream`` in, ``o_stream`` out, same beats in the
    same order, one cycle later; ``o_stream.valid``, ``o_stream.payload`` and
    ``i_stream.ready`` are registers (an output register and a skid register behind it)."""

    def __init__(self, signature: stream.Signature):
        super().__init__({"i_stream": In(signature), "o_stream": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        out, skid = _beat(i), _beat(i)
        out_valid, skid_valid = Signal(), Signal()
        m.d.comb += [i.ready.eq(~skid_valid), o.valid.eq(out_valid), o.payload.eq(out)]
        with m.If(o.ready | ~out_valid):           # the output register is free next cycle
            m.d.sync += [out.eq(Mux(skid_valid, skid, i.payload)),
                         out_valid.eq(skid_valid | i.valid), skid_valid.eq(0)]
        with m.Elif(i.valid & ~skid_valid):
            m.d.sync += [skid.eq(i.payload), skid_valid.eq(1)]
        return m


def slice_resources(bits: int) -> Resources:
    """Estimate of one :class:`RegisterSlice` of ``bits``-bit beats: two beat registers and
    the output register's multiplexer."""
    return Resources(lut=bits + 3, ff=2 * bits + 2)


def slice_taken(offered: np.ndarray, accepted: np.ndarray) -> np.ndarray:
    """Cycles at which a :class:`RegisterSlice` takes its beats, offered at ``offered`` (one
    per cycle at most), when its consumer takes them at ``accepted``: room for a beat once the
    beat two ahead of it has left."""
    offered = np.asarray(offered, dtype=np.int64)
    room = np.full(offered.size, -(1 << 60), dtype=np.int64)
    room[2:] = np.asarray(accepted, dtype=np.int64)[:-2] + 1
    return _run_max(np.maximum(offered, room))
