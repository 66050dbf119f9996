"""Grouped and depthwise convolution streamed in channel groups (FINN's depthwise
ConvolutionInputGenerator + VectorVectorActivation).

A grouped convolution (``groups`` = G, ``Cg = C / G`` input and ``Og = O / G`` output channels
per group; depthwise: ``Cg = 1``) never mixes groups, so its window need not carry all ``C``
channels at once. With ``PE`` output lanes, ``B = PE / gcd(PE, Og)`` groups (the fewest whose
``B * Og`` outputs are a multiple of ``PE``) make one *beat*: ``Bc = B * Cg`` input channels.
A pixel arrives as ``nb = G / B`` beats of ``Bc`` channels (HWC order, so the producer needs no
reordering), and the window unit emits, per output pixel, ``nb`` windows of ``KH x KW x Bc``
elements in ``(ky, kx, c)`` order, one per beat. The MVU spends ``(B * Og / PE) * (F / SIMD)``
steps on each (``F = Cg * KH * KW``) with one gather for every beat, so the engine's width
scales with ``PE x SIMD``, not with ``C * KH * KW`` (a depthwise layer of 1024 channels with
``PE = 1`` carries 9 elements, not 9216).

:class:`GroupedWindowEngine` keeps the ``KH - 1`` previous rows in a line buffer memory of
``cols * nb`` words (one per column and beat) and the ``KW - 1`` previous columns of each beat's
window in a second memory of ``nb`` words (the shift register of :class:`WindowEngine`, one per
channel group); both are read one cycle ahead (the next beat's address is known), so one beat
advances per cycle. When ``nb == 1`` (``B = G``, e.g. a fully unrolled layer) it is
:class:`~lcp.hw.window.WindowEngine` itself.

Cycle model: :func:`~lcp.hw.window.window_scan` over ``nb`` positions per pixel (each position
of the scan is one beat), the consumer spending ``(B * Og / PE) * (F / SIMD)`` steps per window.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lcp.ir import IRError, Layer, TensorSpec

from .base import Resources, StreamFormat, stream_signature
from .mvu import ConvPlan, MatrixVectorUnit, MvuParams
from .window import (WindowEngine, WindowGeometry, _counter, _line_buffer, _line_buffer_cost,
                     _scan_control, lb_mode, window_scan)

__all__ = ["GroupedConvPlan", "GroupedConvEngine", "GroupedWindowEngine", "group_beat"]


def group_beat(layer: Layer, pe: int) -> tuple[int, int]:
    """``(B, Bc)``: groups and input channels per beat of a grouped conv with ``pe`` lanes."""
    w = layer.weight
    G = int(layer.attrs.get("groups", 1))
    Og, Cg = int(w.shape[0]) // G, int(w.shape[1])
    B = max(int(pe), 1) // math.gcd(max(int(pe), 1), Og)
    if G % B:
        raise IRError(f"layer {layer.name!r}: PE={pe} does not divide the {w.shape[0]} outputs")
    return B, B * Cg


class _BeatScan:
    """The window scan of ``geo`` with each position repeated ``nb`` times (one per beat)."""

    def __init__(self, geo: WindowGeometry, nb: int):
        real, emit = geo.positions_table()
        self._table = np.repeat(real, nb), np.repeat(emit, nb)

    def positions_table(self):
        return self._table


class GroupedWindowEngine(wiring.Component):
    """Window unit on beats of ``Bc = in_fmt.lanes`` channels (``nb = C / Bc`` beats per pixel):
    one ``ArrayLayout(element, KH*KW*Bc)`` window in ``(ky, kx, c)`` order per emitting beat.

    Parameters
    ----------
    geo : WindowGeometry
        Geometry over all ``C`` channels.
    in_fmt : StreamFormat
        3-D input (HWC order), ``lanes`` dividing ``C``.
    pad : int
        Value of padding elements.
    lb_reg : int
        The line buffer's write or read registered (as :class:`~lcp.hw.window.WindowEngine`'s).
    """

    def __init__(self, geo: WindowGeometry, in_fmt: StreamFormat, *, pad: int,
                 lb_reg: int = 0):
        self.geo, self.in_fmt, self.pad = geo, in_fmt, int(pad)
        self.lb_reg = lb_mode(lb_reg, geo.name)
        self.bc = in_fmt.lanes
        if geo.C % self.bc:
            raise IRError(f"layer {geo.name!r}: {self.bc} lanes do not divide {geo.C} channels")
        self.nb = geo.C // self.bc
        self.out_layout = data.ArrayLayout(in_fmt.element, geo.kh * geo.kw * self.bc)
        super().__init__({"i_stream": In(stream_signature(in_fmt)),
                          "o_stream": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        g, bc, nb = self.geo, self.bc, self.nb
        kh, kw = g.kh, g.kw
        elem = self.in_fmt.element
        i, o = self.i_stream, self.o_stream

        c, c_next, step_c = _counter(m, g.cols, "c")
        r, r_next, step_r = _counter(m, g.rows, "r")
        j, j_next, step_j = _counter(m, nb, "j")          # beat (channel group) of the position
        a, a_next, step_a = _counter(m, g.cols * nb, "a")  # line buffer address: c * nb + j
        last_j = j == nb - 1
        last_c = c == g.cols - 1

        row_ok, col_real, col_first, real, emit, adv, advance = _scan_control(m, g, i, o)
        advance(adv & last_j, c_next, adv & last_j & last_c, r_next)
        step_j(adv)
        step_a(adv)
        step_c(adv & last_j)
        step_r(adv & last_j & last_c)

        nwin = Signal(self.out_layout)

        def at(ky, kx, ch):
            return (ky * kw + kx) * bc + ch

        if kh > 1:      # word a: this beat's channels of rows r-1 .. r-kh+1 at column c
            rd = _line_buffer(m, elem, bc, kh, g.cols * nb, adv, a, a_next, i.payload,
                              self.lb_reg)
        if kw > 1:      # word j: columns 1 .. kw-1 of beat j's last window
            m.submodules.cols = cm = Memory(
                shape=data.ArrayLayout(elem, kh * (kw - 1) * bc), depth=nb, init=[])
            cw = cm.write_port()
            cr = cm.read_port(domain="sync", transparent_for=(cw,))
            m.d.comb += [cr.addr.eq(Mux(adv, j_next, j)), cr.en.eq(1),
                         cw.addr.eq(j), cw.en.eq(adv)]

        padv = self.pad
        for ky in range(kh):
            keep = row_ok[ky] & col_real
            for ch in range(bc):
                src = i.payload[ch] if ky == kh - 1 else rd.data[(kh - 2 - ky) * bc + ch]
                m.d.comb += nwin[at(ky, kw - 1, ch)].eq(Mux(keep, src, padv))
                for kx in range(kw - 1):
                    m.d.comb += [
                        nwin[at(ky, kx, ch)].eq(
                            Mux(col_first, padv, cr.data[(ky * (kw - 1) + kx) * bc + ch])),
                        cw.data[(ky * (kw - 1) + kx) * bc + ch].eq(nwin[at(ky, kx + 1, ch)])]

        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(adv):
            with m.If(emit):
                m.d.sync += [o.valid.eq(1), o.payload.eq(nwin)]
        return m


class GroupedConvPlan(ConvPlan):
    """Grouped or depthwise convolution (``groups > 1``): channel-grouped window unit + MVU; in
    ``Bc`` lanes (:func:`group_beat`), out ``PE`` lanes (HWC order)."""

    @staticmethod
    def demand(model, layer, fold):
        return group_beat(layer, fold.get("pe", 1))[1]

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        src = low.adapt(srcs[0], cls.demand(low.model, layer, fold), layer.name)
        return cls(layer, src[2], out_spec, pe=fold.get("pe", 1), simd=fold.get("simd", 1),
                   dsp=fold.get("dsp"), tree_k=fold.get("tree_k", 0),
                   ram_reg=fold.get("ram_reg", 0), load_always=fold.get("load_always", 0),
                   pingpong=fold.get("pingpong", 0), lb_reg=fold.get("lb_reg", 0)), [src]

    def __init__(self, layer: Layer, in_fmt: StreamFormat, out_spec: TensorSpec, *, pe: int = 1,
                 simd: int = 1, dsp: int | None = None, tree_k: int = 0, ram_reg: int = 0,
                 load_always: int = 0, pingpong: int = 0, lb_reg: int = 0):
        self.layer = layer
        self.geo = g = WindowGeometry(layer, in_fmt.shape)
        self.groups = G = int(layer.attrs.get("groups", 1))
        B, self.bc = group_beat(layer, pe)
        self.nb = G // B
        # two output registers in the whole-pixel window unit only (the grouped one's output
        # is a beat's channel group, its enable a smaller net)
        self.pingpong = int(bool(pingpong)) if self.nb == 1 else 0
        self.lb_reg = lb_mode(lb_reg, layer.name)
        self.in_fmt = in_fmt.with_lanes(self.bc)
        w = layer.weight                       # O, C/G, KH, KW -> O, (ky, kx, c)
        if w.ndim == 3:
            w = w[:, :, None, :]
        O, Cg = int(w.shape[0]), int(w.shape[1])
        Og = O // G
        wmat = w.transpose(0, 2, 3, 1).reshape(O, -1)
        # beat row r (group r // Og of the beat) reads tap t, channel k at t * Bc + grp * Cg + k
        taps = np.arange(g.kh * g.kw)[:, None] * self.bc
        grp = (np.arange(B * Og) // Og) * Cg
        gather = (taps[None, :, :] + grp[:, None, None]
                  + np.arange(Cg)[None, None, :]).reshape(B * Og, -1)
        self.mvu = MvuParams(layer, wmat, layer.bias, in_fmt.lo, in_fmt.hi, out_spec, pe, simd,
                             dsp, gather=gather, x_bipolar=in_fmt.bipolar,
                             x_zeros=any(layer.attrs["pads"]),
                             n_in=g.kh * g.kw * self.bc, tree_k=tree_k,
                             ram_reg=ram_reg, load_always=load_always)
        self.out_fmt = StreamFormat.of(out_spec, pe)

    @property
    def beat_steps(self) -> int:
        """MVU steps per window beat: ``(B * Og / PE) * (F / SIMD)``."""
        return self.mvu.beat_fo * self.mvu.fi

    def timing(self, offers):
        g, p = self.geo, self.mvu
        frames = offers[0].size // (g.H * g.W * self.nb)
        acc, _, starts = window_scan(_BeatScan(g, self.nb), offers[0], frames, self.beat_steps,
                                     1 + self.pingpong)
        ob = np.arange(p.beat_fo, dtype=np.int64) * p.fi + p.fi - 1 + p.latency
        return [acc], (starts[:, None] + ob[None, :]).reshape(-1)

    def busy(self) -> int:
        """Cycles per image when the input is never late: beats scanned or MVU steps."""
        g = self.geo
        return max(g.positions * self.nb, g.OH * g.OW * self.mvu.steps)

    def resources(self) -> Resources:
        g, bits, bc = self.geo, self.in_fmt.bits, self.bc
        lb = _line_buffer_cost((g.kh - 1) * bc * bits, g.cols * self.nb, self.lb_reg)
        if self.nb == 1:                       # WindowEngine: shift and output registers
            return (lb + self.mvu.resources() + self.pingpong_cost()
                    + Resources(lut=g.window * bits / 2 + 40, ff=2 * g.window * bits + 32))
        win = g.kh * g.kw * bc * bits
        cols = _line_buffer_cost(g.kh * (g.kw - 1) * bc * bits, self.nb)
        return (lb + cols + self.mvu.resources()
                + Resources(lut=win / 2 + 60, ff=win + 48))

    def build(self) -> "GroupedConvEngine":
        return GroupedConvEngine(self)


class GroupedConvEngine(wiring.Component):
    """Grouped convolution engine (:class:`GroupedConvPlan`): ``i_stream`` beats of ``Bc``
    channels, ``o_stream`` PE channels."""

    def __init__(self, plan: GroupedConvPlan):
        self.plan = plan
        super().__init__({"i_stream": In(stream_signature(plan.in_fmt)),
                          "o_stream": Out(stream_signature(plan.out_fmt))})

    def elaborate(self, platform):
        m = Module()
        p = self.plan
        if p.nb == 1:
            win = WindowEngine(p.geo, p.in_fmt, pad=0, mode="window", pingpong=p.pingpong,
                               lb_reg=p.lb_reg)
        else:
            win = GroupedWindowEngine(p.geo, p.in_fmt, pad=0, lb_reg=p.lb_reg)
        m.submodules.window = win
        m.submodules.mvu = mvu = MatrixVectorUnit(p.mvu, "window")
        wiring.connect(m, wiring.flipped(self.i_stream), win.i_stream)
        wiring.connect(m, win.o_stream, mvu.i_stream)
        wiring.connect(m, mvu.o_stream, wiring.flipped(self.o_stream))
        return m
