"""Weights from DRAM: conv and dense engines whose weights stream in over an AXI4 read port.

A layer whose weight ROM does not fit the device (VGG16's 512-channel convolutions hold 2.4 M
weights each, more than the XC7Z020's 140 BRAM36) keeps its weights in DRAM and reads them once
per image through the Zynq's high-performance port. Its engine is *frame-buffered*: it takes
the whole input feature map into an on-chip buffer (small for the late layers where the big
weight matrices are), then computes the output channels block by block: block ``og`` (``PE``
output channels) needs ``PE x F`` weights, fetched into one half of a double-buffered tile memory
while the previous block computes. Each block loops over the ``P = OH*OW`` output positions (one
for a dense layer) and their ``F / SIMD`` steps, the same ``PE x SIMD`` datapath as
:class:`~lcp.hw.mvu.MatrixVectorUnit`. The results go into an output frame buffer that is sent
in the stream order (HWC, ``PE`` lanes) once the last block is done.

Cycle model (per image; :class:`HpPort` gives the port):

- input beats are taken as offered (one pixel, or ``SIMD`` features, per beat), once the
  previous image's blocks are done (one input frame buffer);
- the fetch of block 0 starts the cycle after the last input beat; ``fetch(k)`` takes
  :meth:`HpPort.fetch_cycles` of the block's beats; block ``k`` computes from
  ``max(fetched(k), computed(k-1))`` for ``P * F / SIMD`` cycles; the fetch of block ``k+1``
  starts at ``max(fetched(k), compute start(k))`` (double buffer);
- the output frame leaves one beat per cycle from ``PIPELINE_LATENCY`` cycles after the last
  block's last step.

Weight packing in DRAM: one step's ``PE x SIMD`` weights (``W`` bits) take ``ceil(W / 64)``
beats when ``W >= 64``, else ``64 // W`` steps share a beat (no word straddles two beats); the
blocks lie back to back, block after block in the order they are computed.

Port assumptions (:data:`ZYNQ_HP`, Zynq-7000 TRM UG585 ch. 5, "High-performance AXI
interfaces"): 64-bit data at the fabric clock (800 MB/s at 100 MHz, below the DDR3's 4.2 GB/s),
AXI3 bursts of at most 16 beats, up to 8 read commands outstanding, and a read latency (read
address accepted to first data beat) of 40 fabric cycles at 100 MHz, our assumption for an idle
DDR controller (the TRM gives no figure; 400 ns is the order of published measurements). With
8 bursts of 16 beats in flight the latency is hidden after the first burst.

Conv engines take this path only when ``SIMD`` divides the input channels (a step reads one
word of the input frame buffer). The chooser (:mod:`lcp.hw.chooser`) moves a layer here with
the folding key ``dram: 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lcp.ir import IRError, Layer, TensorSpec

from .axiread import AxiReadMaster, axi_read_signature
from .base import Resources, StreamFormat, bram36, stream_signature
from .mvu import PIPELINE_LATENCY, ConvPlan, DensePlan, MatrixVectorUnit, MvuParams
from .window import WindowGeometry

__all__ = ["HpPort", "ZYNQ_HP", "DramConvPlan", "DramDensePlan", "DramDenseEngine",
           "pack_blocks", "AXI_MASTER_COST"]


@dataclass(frozen=True)
class HpPort:
    """An AXI4 read port to DRAM: ``beat_bits`` data, bursts of at most ``burst`` beats,
    ``outstanding`` read commands in flight, ``latency`` cycles from a read address accepted
    to its first data beat."""

    beat_bits: int = 64
    burst: int = 16
    outstanding: int = 8
    latency: int = 40

    def fetch_cycles(self, beats: int) -> int:
        """Cycles from the first read address offered to the last data beat taken, for
        ``beats`` beats read in bursts of :attr:`burst` (the last one shorter)."""
        if beats <= 0:
            return 0
        bursts = math.ceil(beats / self.burst)
        # a burst's data can follow the previous one back to back when enough are in flight
        period = max(self.burst, math.ceil((self.latency + self.burst) / self.outstanding))
        last = beats - (bursts - 1) * self.burst
        return self.latency + (bursts - 1) * period + last

    def to_json(self) -> dict:
        return {"beat_bits": self.beat_bits, "burst": self.burst,
                "outstanding": self.outstanding, "latency": self.latency}


#: The Zynq-7000 HP port at the fabric clock (see the module docstring for the sources).
ZYNQ_HP = HpPort(beat_bits=64, burst=16, outstanding=8, latency=40)

#: Resources of the AXI4 read master and the beat-to-word converter (estimate).
AXI_MASTER_COST = Resources(lut=350, ff=450)


def word_beats(word_bits: int, beat_bits: int = 64) -> tuple[int, int]:
    """``(beats per word, words per beat)`` of the weight packing (one of them is 1)."""
    if word_bits >= beat_bits:
        return math.ceil(word_bits / beat_bits), 1
    return 1, beat_bits // word_bits


def block_beats(p: MvuParams, beat_bits: int = 64) -> int:
    """Beats of one block (``F / SIMD`` step words of ``PE x SIMD`` weights)."""
    bpw, wpb = word_beats(p.pe * p.simd * p.rom_bits, beat_bits)
    return p.fi * bpw if wpb == 1 else math.ceil(p.fi / wpb)


def pack_blocks(p: MvuParams, beat_bits: int = 64) -> np.ndarray:
    """The DRAM image of ``p``'s weights: ``uint8`` bytes, block after block (see the module
    docstring for the packing), two's complement ``rom_bits`` per weight, lane ``q*SIMD+s`` at
    bit ``(q*SIMD+s)*rom_bits`` of its word."""
    wb = p.rom_bits
    W = p.pe * p.simd * wb
    bpw, wpb = word_beats(W, beat_bits)
    words_per_beat_bits = beat_bits // wpb if wpb > 1 else beat_bits * bpw
    out = []
    for og in range(p.fo):
        beat_ints = []
        cur, n = 0, 0
        for ig in range(p.fi):
            t = p.tile(og, ig).reshape(-1)
            v = 0
            for k, w in enumerate(t):
                u = (int(w < 0) if p.w_bipolar else int(w) & ((1 << wb) - 1))
                v |= u << (k * wb)
            if wpb == 1:
                for b in range(bpw):
                    beat_ints.append((v >> (b * beat_bits)) & ((1 << beat_bits) - 1))
            else:
                cur |= v << (n * words_per_beat_bits)
                n += 1
                if n == wpb:
                    beat_ints.append(cur)
                    cur, n = 0, 0
        if n:
            beat_ints.append(cur)
        out += beat_ints
    nbytes = beat_bits // 8
    return np.frombuffer(b"".join(int(b).to_bytes(nbytes, "little") for b in out),
                         dtype=np.uint8).copy()


class _DramMvu:
    """Shared part of the two plans: ``self.mvu``, ``self.positions`` (output positions per
    image), ``self.port``, ``self.in_beats`` (input beats per image), ``self.fbuf_bits``."""

    fold_keys = ("pe", "simd", "dsp", "dram")
    port: HpPort = ZYNQ_HP

    @property
    def folding(self) -> dict:
        return {"pe": self.mvu.pe, "simd": self.mvu.simd, "dsp": self.mvu.dsp, "dram": 1}

    @property
    def block_beats(self) -> int:
        return block_beats(self.mvu, self.port.beat_bits)

    @property
    def dram_bytes(self) -> int:
        """Bytes of weights read from DRAM per image."""
        return self.mvu.fo * self.block_beats * self.port.beat_bits // 8

    def block_schedule(self, t0: int) -> tuple[int, int]:
        """``(compute start of block 0, compute end of the last block)`` when the input frame is
        complete at ``t0`` (the cycle after its last beat)."""
        p = self.mvu
        fetch = self.port.fetch_cycles(self.block_beats)
        comp = self.positions * p.fi
        f_start, c_end, first = t0, None, None
        for k in range(p.fo):
            f_done = f_start + fetch
            c_start = f_done if c_end is None else max(f_done, c_end)
            first = c_start if first is None else first
            c_end = c_start + comp
            f_start = max(f_done, c_start)
        return first, c_end

    def timing(self, offers):
        p = self.mvu
        off = np.asarray(offers[0], dtype=np.int64)
        n = self.in_beats
        frames = off.size // n
        acc = np.empty(off.size, dtype=np.int64)
        per_out = self.positions * p.fo
        outs = np.empty(frames * per_out, dtype=np.int64)
        free, t = -(1 << 60), -(1 << 60)
        for f in range(frames):
            for j in range(n):
                t = max(int(off[f * n + j]), t + 1, free)
                acc[f * n + j] = t
            _, c_end = self.block_schedule(t + 1)
            # the last step issues at c_end - 1; its beat is offered PIPELINE_LATENCY later
            first_out = c_end - 1 + PIPELINE_LATENCY + 1
            outs[f * per_out:(f + 1) * per_out] = first_out + np.arange(per_out)
            free = first_out + per_out           # input buffer reused after the drain
        return [acc], outs

    def busy(self) -> int:
        return self.block_schedule(0)[1] + self.positions * self.mvu.fo

    def _buffers(self) -> Resources:
        p = self.mvu
        W = p.pe * p.simd * p.rom_bits
        tile_r = (Resources(lut=10, bram=2 * bram36(W, p.fi)) if p.fi > 64
                  else Resources(lut=2 * W * math.ceil(p.fi / 64)))
        fb = self.fbuf_bits
        fbuf = bram36(fb[0], fb[1])
        ob = bram36(p.pe * p.acc_shape.width, self.positions * p.fo)
        # the datapath without its ROM and its window input mux (a step reads one word of
        # the frame buffer)
        mux = p.simd * p.xbits * (p.fi - 1) / 2 if p.fi > 1 and p.gather is None else 0.0
        mvu = p.resources() + p._rom(W) * -1 + Resources(lut=-mux)
        return mvu + tile_r + Resources(bram=fbuf + ob) + AXI_MASTER_COST

    def build(self):
        raise IRError(f"layer {self.layer.name!r}: the weights-from-DRAM engine is modelled "
                      f"(cycles, resources) but has no generator in this build yet")


class DramConvPlan(_DramMvu):
    """Convolution with weights from DRAM (frame-buffered, see the module docstring); input one
    pixel per beat (``C`` lanes), output ``PE`` lanes in HWC order."""

    kind = "conv_dram"

    @staticmethod
    def valid(layer: Layer, in_shape, pe: int, simd: int) -> bool:
        """``SIMD`` divides the input channels (one frame-buffer word per step) and the weights
        are folded (at least two steps)."""
        O, F = ConvPlan.mvu_shape(layer)
        return in_shape[0] % simd == 0 and pe * simd < O * F

    def __init__(self, layer: Layer, in_fmt: StreamFormat, out_spec: TensorSpec, *, pe: int = 1,
                 simd: int = 1, dsp: int | None = None, port: HpPort = ZYNQ_HP):
        base = ConvPlan(layer, in_fmt, out_spec, pe=pe, simd=simd, dsp=dsp)
        self.layer, self.geo, self.in_fmt, self.out_fmt = layer, base.geo, base.in_fmt, base.out_fmt
        self.mvu, self.port = base.mvu, port
        g: WindowGeometry = self.geo
        if g.C % simd:
            raise IRError(f"layer {layer.name!r}: SIMD={simd} must divide the {g.C} input "
                          f"channels for weights from DRAM")
        self.positions = g.OH * g.OW
        self.in_beats = g.H * g.W
        self.fbuf_bits = (simd * in_fmt.bits, g.H * g.W * g.C // simd)

    def resources(self) -> Resources:
        return self._buffers()


class DramDensePlan(_DramMvu):
    """Fully connected layer with weights from DRAM; input ``SIMD`` features per beat, output
    ``PE`` lanes."""

    kind = "dense_dram"

    @staticmethod
    def valid(layer: Layer, in_shape, pe: int, simd: int) -> bool:
        """The weights are folded (at least two steps)."""
        O, F = DensePlan.mvu_shape(layer)
        return pe * simd < O * F

    def __init__(self, layer: Layer, in_fmt: StreamFormat, out_spec: TensorSpec, *, pe: int = 1,
                 simd: int = 1, dsp: int | None = None, port: HpPort = ZYNQ_HP):
        base = DensePlan(layer, in_fmt, out_spec, pe=pe, simd=simd, dsp=dsp)
        self.layer, self.in_fmt, self.out_fmt = layer, base.in_fmt, base.out_fmt
        self.mvu, self.port = base.mvu, port
        self.positions = 1
        self.in_beats = self.mvu.fi
        self.fbuf_bits = (simd * in_fmt.bits, self.mvu.fi)

    def resources(self) -> Resources:
        return self._buffers()

    def build(self) -> "DramDenseEngine":
        return DramDenseEngine(self)


class DramDenseEngine(wiring.Component):
    """Dense engine with weights from DRAM (:class:`DramDensePlan`): the frame (``F`` features)
    is kept in registers, the double-buffered weight tiles in a memory fed by an
    :class:`~lcp.hw.axiread.AxiReadMaster`, the ``fo`` output beats in registers; the schedule
    is the cycle model's. ``w_base`` is the byte address of :func:`pack_blocks`'s image.

    The generator builds step words that pack a power of two per 64-bit beat (``PE * SIMD *
    wbits`` of 64, 32, 16, ... bits or any width whose ``64 // W`` is a power of two); others
    raise :class:`~lcp.ir.IRError`.

    Members
    -------
    i_stream : In(SIMD lanes); o_stream : Out(PE lanes); w_base : In(32); m_axi_* (AXI4 read)
    """

    def __init__(self, plan: DramDensePlan):
        self.plan = plan
        p = plan.mvu
        W = p.pe * p.simd * p.rom_bits
        wpb = plan.port.beat_bits // W if W <= plan.port.beat_bits else 0
        if plan.port.beat_bits != 64 or not wpb or wpb & (wpb - 1):
            raise IRError(f"layer {plan.layer.name!r}: the DRAM dense generator builds step "
                          f"words that pack a power of two per 64-bit beat, not {W} bits")
        self.wpb = wpb
        super().__init__({"i_stream": In(stream_signature(plan.in_fmt)),
                          "o_stream": Out(stream_signature(plan.out_fmt)),
                          "w_base": In(32), **axi_read_signature()})

    def elaborate(self, platform):
        m = Module()
        plan, p = self.plan, self.plan.mvu
        fo, fi, BB, wpb = p.fo, p.fi, plan.block_beats, self.wpb
        W = p.pe * p.simd * p.rom_bits
        sh = wpb.bit_length() - 1
        m.submodules.axi = axi = AxiReadMaster(plan.port.outstanding)
        for name, mem in axi_read_signature().items():
            if mem.flow == wiring.Out:
                m.d.comb += getattr(self, name).eq(getattr(axi, name))
            else:
                m.d.comb += getattr(axi, name).eq(getattr(self, name))
        m.submodules.mvu = mvu = MatrixVectorUnit(p, "window", weights="port")

        LOAD, RUN, DRAIN = 0, 1, 2
        state = Signal(range(3))
        xb = p.xbits
        frame = Signal(p.F * xb)
        cnt = Signal(range(max(fi, fo) + 1))
        i = self.i_stream
        m.d.comb += i.ready.eq(state == LOAD)
        with m.If(i.valid & i.ready):
            # shift right by SIMD elements, the new beat on top: beat 0 ends at the bottom
            m.d.sync += [frame.eq((frame >> (p.simd * xb))
                                  | (i.payload.as_value() << ((p.F - p.simd) * xb))),
                         cnt.eq(cnt + 1)]
            with m.If(cnt == fi - 1):
                m.d.sync += [cnt.eq(0), state.eq(RUN)]

        # -- weight fetch: block fk into half fk % 2 once block fk-1 is fetched and started
        fk = Signal(range(fo + 1))
        fetched = Signal(range(fo + 1))
        wcnt = Signal(range(max(BB, 2)))
        started = Signal(range(fo + 2))
        taken = Signal()
        fire0 = Signal()
        m.d.comb += [
            mvu.i_stream.valid.eq((state == RUN) & ~taken),
            mvu.i_stream.payload.eq(frame),
            mvu.w_ready.eq(fetched > mvu.w_og),
            fire0.eq(mvu.i_stream.valid & mvu.w_ready & (mvu.w_ig == 0)),
            axi.cmd.valid.eq((state == RUN) & (fk < fo) & (fetched == fk)
                             & ((fk == 0) | (started + fire0 >= fk))),
            axi.cmd.payload.addr.eq(self.w_base + fk * (BB * 8)),
            axi.cmd.payload.beats.eq(BB),
            axi.o_stream.ready.eq(1),
        ]
        with m.If(axi.cmd.valid & axi.cmd.ready):
            m.d.sync += fk.eq(fk + 1)
        with m.If(fire0):
            m.d.sync += started.eq(started + 1)
        with m.If(mvu.i_stream.valid & mvu.i_stream.ready):
            m.d.sync += taken.eq(1)

        m.submodules.tiles = tiles = Memory(shape=64, depth=2 * BB, init=[])
        wp = tiles.write_port()
        rp = tiles.read_port(domain="sync")
        m.d.comb += [wp.addr.eq(Mux(fetched[0], BB, 0) + wcnt),
                     wp.data.eq(axi.o_stream.payload), wp.en.eq(axi.o_stream.valid)]
        with m.If(axi.o_stream.valid):
            m.d.sync += wcnt.eq(wcnt + 1)
            with m.If(wcnt == BB - 1):
                m.d.sync += [wcnt.eq(0), fetched.eq(fetched + 1)]
        m.d.comb += rp.addr.eq(Mux(mvu.w_og[0], BB, 0) + (mvu.w_ig >> sh))
        if wpb > 1:
            sel = Signal(range(wpb))
            m.d.sync += sel.eq(mvu.w_ig[:sh])
            m.d.comb += mvu.w_data.eq(rp.data.word_select(sel, W))
        else:
            m.d.comb += mvu.w_data.eq(rp.data[:W])

        # -- outputs: one beat per block into registers, sent after the last block
        width = p.pe * p.acc_shape.width
        outs = Array(Signal(width, name=f"out{k}") for k in range(fo))
        oc = Signal(range(max(fo, 2)))
        m.d.comb += mvu.o_stream.ready.eq(1)
        with m.If(mvu.o_stream.valid):
            m.d.sync += [outs[oc].eq(mvu.o_stream.payload.as_value()), oc.eq(oc + 1)]
            with m.If(oc == fo - 1):
                m.d.sync += [oc.eq(0), state.eq(DRAIN), fk.eq(0), fetched.eq(0),
                             started.eq(0), taken.eq(0)]
        o = self.o_stream
        m.d.comb += [o.valid.eq(state == DRAIN), o.payload.eq(outs[cnt])]
        with m.If(o.valid & o.ready):
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == fo - 1):
                m.d.sync += [cnt.eq(0), state.eq(LOAD)]
        return m
