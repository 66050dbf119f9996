"""The reused engine (:class:`lcp.hw.reuse_engine.ReusedEngine`) as the core of the PYNQ top:
the DMA's stream frames in and out, its weights and thresholds read from DRAM over the top's
AXI4 read master (the Zynq's HP0 port in the block design), at the address ``WEIGHT_BASE``
holds.

:class:`ReusedDesign` is what :class:`lcp.hw.pynq_top.PynqTop` wraps in place of a
:class:`~lcp.hw.graph.PlanGraph`: the stream formats of both ports, their DMA widths and
:meth:`ReusedDesign.top`, a :class:`ReusedCore` with the flat ports of a
:class:`~lcp.hw.graph.GraphTop` plus ``w_base`` and ``m_axi_*``
(:func:`lcp.hw.axiread.axi_read_signature`; ``reads_dram`` is true). Inside the core::

    s_axis -> AxisIn -> WordsIn -> ReusedEngine -> WordsOut -> AxisOut -> m_axis

:class:`~lcp.hw.plumbing.AxisIn` / :class:`~lcp.hw.plumbing.AxisOut` are the frame packing of
every other top (:mod:`lcp.frames`: the port's elements in ``(H, W, C)`` order, ``bits`` each);
:class:`WordsIn` / :class:`WordsOut` convert between those beats (``L`` elements of the port,
:func:`lanes_for`) and the engine's buffer words (``SIMD`` elements of ``xbits`` each, a pixel's
channels in ``ceil(C / SIMD)`` words, the last one zero-padded:
:meth:`~lcp.hw.reuse_program.ReusedProgram.pack_input`).

:func:`lcp.hw.pynq_top.generate_pynq_reused` writes the PYNQ top of such a design (and
``weights.bin``, the image the driver loads with ``LcpDriver.load_weights``).
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from lcp.ir import IRError

from .axiread import axi_read_signature
from .base import StreamFormat, stream_signature
from .plumbing import AxisIn, AxisOut, axis_top_members
from .pynq_regs import DMA_WIDTHS
from .reuse_engine import ReusedEngine
from .reuse_program import ReusedProgram

__all__ = ["ReusedDesign", "ReusedCore", "WordsIn", "WordsOut", "lanes_for"]


def lanes_for(C: int, simd: int) -> int:
    """Elements per stream beat of a port with ``C`` channels (or ``C`` elements) next to an
    engine of ``simd`` lanes: ``C`` when one word holds a pixel, else ``gcd(C, simd)`` (a beat
    never straddles two words)."""
    return C if C <= simd else math.gcd(C, simd)


def _group_beats(C: int, simd: int, L: int) -> list[int]:
    """Beats of ``L`` elements in each of a pixel's ``ceil(C / simd)`` words."""
    cg = -(-C // simd)
    return [min(simd, C - g * simd) // L for g in range(cg)]


class WordsIn(wiring.Component):
    """Beats of ``fmt`` (``L`` channels each, :func:`lanes_for`) -> the engine's words of
    ``simd`` elements of ``xbits`` (sign- or zero-extended as ``fmt``; unused lanes zero)."""

    def __init__(self, fmt: StreamFormat, simd: int, xbits: int):
        self.fmt, self.simd, self.xbits = fmt, int(simd), int(xbits)
        super().__init__({"i_stream": In(stream_signature(fmt)),
                          "o_stream": Out(stream.Signature(unsigned(simd * xbits)))})

    def elaborate(self, platform):
        m = Module()
        f, S, XB, L = self.fmt, self.simd, self.xbits, self.fmt.lanes
        C = f.shape[0] if len(f.shape) >= 2 else f.size
        beats = _group_beats(C, S, L)
        i, o = self.i_stream, self.o_stream
        g = Signal(range(max(len(beats), 2)))
        k = Signal(range(max(max(beats), 2)))
        acc, full = Signal(S * XB), Signal()
        ext = []
        for j in range(L):
            e = Signal(signed(XB) if f.signed else unsigned(XB), name=f"e{j}")
            m.d.comb += e.eq(i.payload[j])
            ext.append(e)
        part = Cat(*ext)
        last = Signal()
        m.d.comb += [o.payload.eq(acc), o.valid.eq(full),
                     i.ready.eq(~full | o.ready),
                     last.eq(k == Mux(g == len(beats) - 1, beats[-1], beats[0]) - 1)]
        with m.If(o.valid & o.ready):
            m.d.sync += full.eq(0)
        with m.If(i.valid & i.ready):
            for j in range(max(beats)):
                with m.If(k == j):
                    lo = j * L * XB
                    m.d.sync += acc.eq(Cat(acc[:lo], part) if lo else part)
            with m.If(last):
                m.d.sync += [k.eq(0), full.eq(1),
                             g.eq(Mux(g == len(beats) - 1, 0, g + 1))]
            with m.Else():
                m.d.sync += k.eq(k + 1)
        return m


class WordsOut(wiring.Component):
    """The engine's words -> beats of ``fmt`` (``L`` elements each, :func:`lanes_for`; each
    element the low ``fmt.bits`` of its ``xbits`` lane; the padding lanes are dropped)."""

    def __init__(self, fmt: StreamFormat, simd: int, xbits: int):
        self.fmt, self.simd, self.xbits = fmt, int(simd), int(xbits)
        super().__init__({"i_stream": In(stream.Signature(unsigned(simd * xbits))),
                          "o_stream": Out(stream_signature(fmt))})

    def elaborate(self, platform):
        m = Module()
        f, S, XB, L, B = self.fmt, self.simd, self.xbits, self.fmt.lanes, self.fmt.bits
        C = f.shape[0] if len(f.shape) >= 2 else f.size
        beats = _group_beats(C, S, L)
        i, o = self.i_stream, self.o_stream
        g = Signal(range(max(len(beats), 2)))
        k = Signal(range(max(max(beats), 2)))
        last = Signal()
        word = i.payload
        choices = [Cat(*[word[((j * L) + q) * XB:((j * L) + q) * XB + B] for q in range(L)])
                   for j in range(max(beats))]
        sel = choices[0]
        for j in range(1, len(choices)):
            sel = Mux(k == j, choices[j], sel)
        m.d.comb += [o.payload.eq(sel), o.valid.eq(i.valid),
                     last.eq(k == Mux(g == len(beats) - 1, beats[-1], beats[0]) - 1),
                     i.ready.eq(o.ready & last)]
        with m.If(o.valid & o.ready):
            with m.If(last):
                m.d.sync += [k.eq(0), g.eq(Mux(g == len(beats) - 1, 0, g + 1))]
            with m.Else():
                m.d.sync += k.eq(k + 1)
        return m


class ReusedCore(wiring.Component):
    """The reused engine between AXI4-Stream ports (see the module docstring); ports: those
    of :class:`~lcp.hw.graph.GraphTop`, ``w_base`` (In(32)) and ``m_axi_*``."""

    def __init__(self, design: "ReusedDesign"):
        self.design = design
        super().__init__({**axis_top_members(design.in_width, design.out_width),
                          "w_base": In(32), **axi_read_signature()})

    def elaborate(self, platform):
        m = Module()
        d = self.design
        P = d.program
        m.submodules.axis_in = ain = AxisIn(d.in_fmt, d.in_width)
        m.submodules.words_in = win = WordsIn(d.in_fmt, P.simd, P.xbits)
        m.submodules.engine = eng = ReusedEngine(P)
        m.submodules.words_out = wout = WordsOut(d.out_fmt, P.simd, P.xbits)
        m.submodules.axis_out = aout = AxisOut(d.out_fmt, d.out_width)
        wiring.connect(m, ain.o_stream, win.i_stream)
        wiring.connect(m, win.o_stream, eng.i_stream)
        wiring.connect(m, eng.o_stream, wout.i_stream)
        wiring.connect(m, wout.o_stream, aout.i_stream)
        m.d.comb += [
            ain.s_axis.tdata.eq(self.s_axis_tdata), ain.s_axis.tvalid.eq(self.s_axis_tvalid),
            ain.s_axis.tlast.eq(self.s_axis_tlast), self.s_axis_tready.eq(ain.s_axis.tready),
            self.m_axis_tdata.eq(aout.m_axis.tdata), self.m_axis_tvalid.eq(aout.m_axis.tvalid),
            self.m_axis_tlast.eq(aout.m_axis.tlast), aout.m_axis.tready.eq(self.m_axis_tready),
            eng.w_base.eq(self.w_base),
        ]
        for name, mem in axi_read_signature().items():
            if mem.flow == wiring.Out:
                m.d.comb += getattr(self, name).eq(getattr(eng, name))
            else:
                m.d.comb += getattr(eng, name).eq(getattr(self, name))
        return m


class ReusedDesign:
    """A :class:`~lcp.hw.reuse_program.ReusedProgram` with its DMA stream widths: the design
    :class:`lcp.hw.pynq_top.PynqTop` wraps (``in_fmt``, ``out_fmt``, ``in_width``,
    ``out_width``, :meth:`top`; ``reads_dram``).

    Raises
    ------
    IRError
        when the program has no generator (:meth:`ReusedProgram.check_buildable`), a width is
        not a DMA width or a port's elements are wider than the engine's.
    """

    reads_dram = True

    def __init__(self, program: ReusedProgram, in_width: int = 64, out_width: int = 64):
        program.check_buildable()
        for what, w in (("in_width", in_width), ("out_width", out_width)):
            if w not in DMA_WIDTHS:
                raise IRError(f"{what} {w} is not an AXI DMA stream width here ({DMA_WIDTHS})")
        self.program = program
        self.in_width, self.out_width = int(in_width), int(out_width)
        fmts = []
        for spec in (program.in_spec, program.out_spec):
            C = spec.shape[0] if len(spec.shape) >= 2 else math.prod(spec.shape)
            fmt = StreamFormat.of(spec, lanes_for(C, program.simd))
            if fmt.bits > program.xbits:
                raise IRError(f"tensor {spec.name!r}: {fmt.bits}-bit elements do not fit the "
                              f"reused engine's {program.xbits}-bit lanes")
            fmts.append(fmt)
        self.in_fmt, self.out_fmt = fmts

    def top(self) -> ReusedCore:
        return ReusedCore(self)

    def to_json(self) -> dict:
        """The design's description in ``lcp_engine.json`` (its ``folding`` entry)."""
        P = self.program
        return {"engine": "reused", "pe": P.pe, "simd": P.simd, "xbits": P.xbits,
                "in_width": self.in_width, "out_width": self.out_width,
                "weights_bytes": int(P.dram_bytes_image)}

    def model_cycles(self) -> dict:
        """The cycle model of one image (the engine takes one image at a time: the interval is
        the latency), in the keys the driver reads."""
        lat, per, dram = self.program.cycles()
        return {"latency_cycles": int(lat), "interval_cycles": int(lat), "phases": per,
                "dram_bytes_per_image": int(dram)}
