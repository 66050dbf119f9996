"""The reused engine's program: a branch as a sequence of phases on one ``PE x SIMD`` engine,
its exact cycle model and its DRAM image (the generator is :mod:`lcp.hw.reuse_engine`).

A branch (a chain of layers) becomes *phases*, each run to completion before the next:

- ``mac``: a ``conv`` or ``dense`` layer with the ``threshold`` that follows it (the
  requantizer is fused: its thresholds, minus the layer's bias, come from DRAM with the
  weights). A dense layer after ``flatten`` of a ``(C, H, W)`` tensor is the convolution with an
  ``H x W`` kernel and no padding (the flatten is free); a dense layer on a vector ``(F,)`` is
  a 1x1 convolution of ``(F, 1, 1)``.
- ``pool``: a ``maxpool`` without padding.

Memory layout. Tensors live in two on-chip activation buffers (ping, pong): ``(C, H, W)`` in HWC
order, channels padded to ``CG = ceil(C / SIMD)`` words of ``SIMD`` elements of ``xbits`` bits
(two's complement) per pixel, word ``(h * W + w) * CG + g``. The input image arrives in that
layout on the input stream (one word per beat) into buffer 0; phase ``i`` reads buffer
``i % 2`` and writes the other; the result leaves from the last one, one word per beat.

A ``mac`` phase computes ``fo = ceil(O / PE)`` blocks of ``PE`` output channels; block ``og``
loops over the ``P = OH * OW`` output positions and, per position, over ``fi = KH * KW * CG``
steps ``(kh, kw, g)`` (one activation word, zero outside the image, times one step word of
``PE x SIMD`` weights). A block's DRAM data: ``fi`` step words of ``PE * SIMD * wbits`` bits
(``R = PE * SIMD * wbits / 64`` beats each, lane ``q * SIMD + s`` at bit ``(q * SIMD + s) *
wbits``), then the ``PE x levels`` thresholds (``tbits`` each, lane ``q`` level ``k`` at bit
``(q * levels + k) * tbits``), padded to whole bursts of 16 beats (``block_beats``). A phase's
blocks lie back to back from its 4 KiB-aligned ``offset`` in the image (:meth:`dram_image`).

Cycle model (:meth:`ReusedProgram.timing`; :class:`~lcp.hw.weightstream.HpPort` gives the
fetch time, first read command to the cycle the block is usable):

- input words are taken as offered (one per cycle), once the previous result has left; the
  first phase starts the cycle after the last one;
- ``mac`` phase from ``T``: ``f_start(0) = T``, ``f_done(k) = f_start(k) +
  fetch_cycles(block_beats)``, ``c_start(k) = max(f_done(k), c_end(k-1))``, ``c_end(k) =
  c_start(k) + P * fi``; ``f_start(1) = f_done(0)`` and ``f_start(k) = max(f_done(k-1),
  c_end(k-2) + DRAIN)`` (block ``k`` overwrites block ``k-2``'s tile and thresholds); the
  next phase starts at ``c_end(fo-1) + DRAIN``;
- ``pool`` phase from ``T``: ``P * CG * KH * KW`` reads, one per cycle; next phase at
  ``T + reads + DRAIN``;
- the result's words leave at ``T + 1, T + 2, ...`` (``T``: the cycle the last phase ends).

Layers the generator has no phase for (``add``, ``concat``, grouped convolutions with their
threshold fused, ``avgpool``, ``relu``, a ``threshold`` not after a conv/dense) are *modelled*
phases: one pass over their input at ``SIMD`` elements per cycle (parameters fetched first), as
in the LCP paper's design; :meth:`ReusedProgram.check_buildable` names the first one. When the
activations do not fit on chip, :mod:`lcp.hw.reuse_actdram` keeps them in DRAM.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from lcp.ir import IRError, Model, bits_for_range
from lcp.ops.linear import acc_range

from .base import Resources, bram36
from .mvu import lut_mult_cost
from .plans import DenseOp, plan_for
from .pointwise import ThresholdPlan
from .window import MaxPoolPlan
from .weightstream import AXI_MASTER_COST, ZYNQ_HP, HpPort

__all__ = ["Phase", "ReusedProgram", "DRAIN", "BURST_BEATS", "ALIGN", "CONTROL_COST"]

#: Cycles from a phase's last issued step to the cycle its last result can be read (read,
#: multiply-add, accumulate, requantize-and-write).
DRAIN = 3
#: Blocks are padded to whole bursts (AXI bursts never cross a 4 KiB boundary).
BURST_BEATS = 16
#: Alignment of each phase's weights in the DRAM image.
ALIGN = 4096
#: Control, address generation and sequencing logic (estimate).
CONTROL_COST = Resources(lut=2500, ff=2000)


def _sbits(lo: int, hi: int) -> int:
    """Bits of a two's complement word holding ``[lo, hi]`` (a sign bit only when needed)."""
    b, _ = bits_for_range(lo, hi)
    return b


@dataclass
class Phase:
    """One phase of the program (see the module docstring). ``kind``: ``mac``, ``pool`` or
    ``model`` (no generator: modelled cycles ``cycles`` only)."""

    kind: str
    layers: list
    C: int = 1
    H: int = 1
    W: int = 1
    O: int = 1
    OH: int = 1
    OW: int = 1
    KH: int = 1
    KW: int = 1
    SH: int = 1
    SW: int = 1
    PT: int = 0
    PL: int = 0
    x_signed: bool = False
    out_lo: int = 0
    weight: np.ndarray | None = None          # (O, C, KH, KW)
    thresholds: np.ndarray | None = None      # (O, levels), bias folded in, clamped
    cycles: int = 0                           # modelled phases only
    dram: int = 0                             # modelled phases only: bytes per image
    why: str = ""
    extra: dict = field(default_factory=dict)


class ReusedProgram:
    """A branch (``scope="branch"``, branch ``index``) of ``model`` as phases on a ``pe x
    simd`` reused engine (see the module docstring).

    Members
    -------
    phases : list of Phase
    xbits, wbits, abits, tbits, levels : int
        activation element, weight, accumulator and threshold bits; thresholds per channel.
    """

    #: Where the activation tensors live (:mod:`lcp.hw.reuse_actdram`: ``"dram"``).
    activations = "chip"

    def __init__(self, model: Model, pe: int, simd: int, *, scope: str = "branch",
                 index: int = 0, port: HpPort = ZYNQ_HP):
        self.model, self.pe, self.simd, self.port = model, int(pe), int(simd), port
        if scope == "branch":
            layers = list(model.branches[index].layers)
        else:
            layers = [l for b in model.branches for l in b.layers] + list(model.merge.layers)
        self.layers = layers
        self.in_spec = model.tensors[layers[0].inputs[0]]
        self.phases: list[Phase] = []
        self._compile(layers)
        self._widths()

    def resized(self, pe: int, simd: int) -> "ReusedProgram":
        """The same program on a ``pe x simd`` engine (the phases are shared)."""
        other = copy.copy(self)
        other.pe, other.simd = int(pe), int(simd)
        return other

    def offset(self, ph: Phase) -> int:
        """Byte offset of ``mac`` phase ``ph``'s blocks in the DRAM image."""
        off = 0
        for p in self.phases:
            if p is ph:
                return off
            if p.kind == "mac":
                off += -(-self.fo(p) * self.block_beats(p) * 8 // ALIGN) * ALIGN
        raise ValueError("not a phase of this program")

    @property
    def dram_bytes_image(self) -> int:
        """Bytes of the DRAM image."""
        return sum(-(-self.fo(p) * self.block_beats(p) * 8 // ALIGN) * ALIGN
                   for p in self.phases if p.kind == "mac")

    # -- compilation ---------------------------------------------------------------------
    def _compile(self, layers) -> None:
        t = self.model.tensors
        geo = self._geo(self.in_spec.shape)
        k = 0
        while k < len(layers):
            l = layers[k]
            spec = t[l.inputs[0]] if l.inputs[0] in t else None
            nxt = layers[k + 1] if k + 1 < len(layers) else None
            cls = plan_for(l)
            fused = (nxt is not None and plan_for(nxt) is ThresholdPlan
                     and nxt.inputs == [l.output])
            if getattr(cls, "passthrough", False):
                k += 1
                continue
            if getattr(cls, "parallel", False) and fused and int(l.attrs.get("groups", 1)) == 1 \
                    and len(geo) == 3:
                self.phases.append(self._mac(l, nxt, geo, spec))
                geo = self._geo(t[nxt.output].shape)
                k += 2
                continue
            if cls is MaxPoolPlan and len(t[l.output].shape) == 3 \
                    and not any(l.attrs["pads"]):
                C, H, W = t[l.inputs[0]].shape
                _, OH, OW = t[l.output].shape
                (KH, KW), (SH, SW) = l.attrs["kernel"], l.attrs["stride"]
                self.phases.append(Phase("pool", [l], C=C, H=H, W=W, O=C, OH=OH, OW=OW,
                                         KH=KH, KW=KW, SH=SH, SW=SW,
                                         x_signed=spec.lo < 0))
                geo = self._geo(t[l.output].shape)
                k += 1
                continue
            why = (", not followed by its threshold" if getattr(cls, "parallel", False)
                   and not fused else "")
            why += (f", groups={l.attrs.get('groups')}" if int(l.attrs.get("groups", 1)) != 1
                    else "")
            # a grouped conv keeps its threshold fused (requantized as its outputs leave)
            own = [l, nxt] if getattr(cls, "parallel", False) and fused else [l]
            self.phases.append(Phase("model", own, why=f"layer {l.name!r} ({l.op}{why})"))
            geo = self._geo(t[own[-1].output].shape) if own[-1].output in t else geo
            k += len(own)

    @staticmethod
    def _geo(shape) -> tuple:
        return tuple(shape) if len(shape) == 3 else (math.prod(shape), 1, 1) \
            if len(shape) == 1 else tuple(shape)

    def _mac(self, l, thr, geo, spec) -> Phase:
        t = self.model.tensors
        C, H, W = geo
        w = np.asarray(l.weight, dtype=np.int64)
        O = w.shape[0]
        if plan_for(l) is DenseOp:
            w = w.reshape(O, C, H, W)
            OH = OW = 1
            KH, KW, SH, SW, PT, PL = H, W, 1, 1, 0, 0
        else:
            _, OH, OW = t[l.output].shape
            (KH, KW), (SH, SW) = l.attrs["kernel"], l.attrs["stride"]
            PT, PL = l.attrs["pads"][0], l.attrs["pads"][1]
        bias = l.params.get("bias")
        bias = np.zeros(O, dtype=np.int64) if bias is None else np.asarray(bias, np.int64)
        th = np.asarray(thr.params["thresholds"], dtype=np.int64)
        th = np.broadcast_to(th, (O, th.shape[1])) - bias[:, None]
        lo, hi = acc_range(w, None, spec.lo, spec.hi)
        ph = Phase("mac", [l, thr], C=C, H=H, W=W, O=O, OH=OH, OW=OW, KH=KH, KW=KW, SH=SH,
                   SW=SW, PT=PT, PL=PL, x_signed=spec.lo < 0,
                   out_lo=int(thr.attrs["out_lo"]), weight=w, thresholds=th)
        ph.extra["acc"] = (int(lo.min()), int(hi.max()))
        return ph

    def _widths(self) -> None:
        macs = [p for p in self.phases if p.kind == "mac"]
        tensors = [self.in_spec] + [self.model.tensors[p.layers[-1].output]
                                    for p in self.phases if p.kind != "model"]
        self.xbits = max([_sbits(s.lo, s.hi) for s in tensors] + [2])
        self.wbits = max([_sbits(min(int(p.weight.min()), -1), int(p.weight.max()))
                          for p in macs] + [2])
        self.abits = max([_sbits(*p.extra["acc"]) + 1 for p in macs] + [8])
        self.tbits = self.abits + 1
        self.levels = max([p.thresholds.shape[1] for p in macs] + [1])
        amin, amax = -(1 << (self.abits - 1)), 1 << (self.abits - 1)
        for p in macs:
            # clamped: below the accumulator range always counted, above it never
            th = np.clip(p.thresholds, amin, amax)
            pad = np.full((th.shape[0], self.levels - th.shape[1]), amax, dtype=np.int64)
            p.thresholds = np.concatenate([th, pad], axis=1)

    # -- geometry ------------------------------------------------------------------------
    def cg(self, C: int) -> int:
        return -(-C // self.simd)

    def fo(self, ph: Phase) -> int:
        return -(-ph.O // self.pe)

    def fi(self, ph: Phase) -> int:
        return ph.KH * ph.KW * self.cg(ph.C)

    @property
    def step_bits(self) -> int:
        return self.pe * self.simd * self.wbits

    @property
    def step_beats(self) -> int:
        return -(-self.step_bits // 64)

    @property
    def thr_beats(self) -> int:
        return -(-self.pe * self.levels * self.tbits // 64)

    def block_beats(self, ph: Phase) -> int:
        n = self.fi(ph) * self.step_beats + self.thr_beats
        return -(-n // BURST_BEATS) * BURST_BEATS

    def words(self, shape) -> int:
        C, H, W = self._geo(shape)
        return H * W * self.cg(C)

    @property
    def in_words(self) -> int:
        return self.words(self.in_spec.shape)

    @property
    def out_spec(self):
        return self.model.tensors[self.layers[-1].output]

    @property
    def out_words(self) -> int:
        return self.words(self.out_spec.shape)

    def check_buildable(self) -> None:
        """:class:`~lcp.ir.IRError` naming the first layer the generator has no phase for,
        or a ``PE x SIMD`` it does not build."""
        if self.simd % self.pe or self.step_bits % 64:
            raise IRError(f"reused engine {self.pe}x{self.simd}: the generator needs PE to "
                          f"divide SIMD and PE*SIMD*{self.wbits} weight bits a multiple of 64")
        for p in self.phases:
            if p.kind == "model":
                raise IRError(f"{p.why}: the reused engine's generator runs conv/dense + "
                              f"threshold and maxpool (no padding) phases only")

    def buildable(self) -> bool:
        try:
            self.check_buildable()
        except IRError:
            return False
        return True

    # -- cycle model ---------------------------------------------------------------------
    def phase_end(self, ph: Phase, T: int) -> int:
        """The cycle the phase after ``ph`` starts, ``ph`` starting at ``T``."""
        if ph.kind == "pool":
            return T + ph.OH * ph.OW * self.cg(ph.C) * ph.KH * ph.KW + DRAIN
        if ph.kind == "model":
            return T + self._modelled(ph)[0]
        fetch = self.port.fetch_cycles(self.block_beats(ph))
        comp = ph.OH * ph.OW * self.fi(ph)
        f_done, c_end = [], []
        for k in range(self.fo(ph)):
            if k == 0:
                fs = T
            elif k == 1:
                fs = f_done[0]
            else:
                fs = max(f_done[k - 1], c_end[k - 2] + DRAIN)
            f_done.append(fs + fetch)
            c_end.append(max(f_done[k], c_end[k - 1] if k else 0) + comp)
        return c_end[-1] + DRAIN

    def _modelled(self, ph: Phase) -> tuple[int, int]:
        """``(cycles, DRAM bytes)`` of a phase the generator does not build: one pass over
        the input at SIMD per cycle after its parameters' fetch."""
        l = ph.layers[0]
        t = self.model.tensors
        if getattr(plan_for(l), "parallel", False):
            O, F = plan_for(l).mvu_shape(l)
            out = t[l.output]
            positions = math.prod(out.shape[1:]) if len(out.shape) > 1 else 1
            beats = -(-(self.pe * F * self.wbits + self.pe * self.abits) // 64)
            fo, fi = -(-O // self.pe), -(-F // self.simd)
            fetch = self.port.fetch_cycles(beats)
            f_start, c_end = 0, 0
            for k in range(fo):
                f_done = f_start + fetch
                c_start = max(f_done, c_end)
                c_end = c_start + positions * fi
                f_start = max(f_done, c_start)
            return c_end + DRAIN, fo * beats * 8
        n_in = sum(math.prod(t[i].shape) for i in l.inputs if i in t)
        pbits = sum(int(np.asarray(v).size) * self.abits for v in l.params.values())
        pbeats = -(-pbits // 64)
        return self.port.fetch_cycles(pbeats) + -(-n_in // self.simd) + DRAIN, pbeats * 8

    def timing(self, offers) -> tuple[list, np.ndarray]:
        """``([input take cycles], output cycles)`` for input words offered at ``offers[0]``
        (any number of whole images, one image at a time)."""
        off = np.asarray(offers[0], dtype=np.int64)
        n, n_out = self.in_words, self.out_words
        frames = off.size // n
        acc = np.empty(off.size, dtype=np.int64)
        outs = np.empty(frames * n_out, dtype=np.int64)
        free, t = 0, -(1 << 60)
        for f in range(frames):
            for j in range(n):
                t = max(int(off[f * n + j]), t + 1, free)
                acc[f * n + j] = t
            T = t + 1
            for ph in self.phases:
                T = self.phase_end(ph, T)
            outs[f * n_out:(f + 1) * n_out] = T + 1 + np.arange(n_out)
            free = T + n_out + 1
            t = free - 1
        return [acc], outs

    def cycles(self) -> tuple[int, dict, int]:
        """``(latency, per-phase cycles, DRAM bytes per image)``: first input word taken to
        last output word, back-to-back input."""
        per, T = {}, self.in_words
        dram = 0
        for ph in self.phases:
            T2 = self.phase_end(ph, T)
            per["+".join(l.name for l in ph.layers)] = T2 - T
            T = T2
            if ph.kind == "mac":
                dram += self.fo(ph) * self.block_beats(ph) * 8
            elif ph.kind == "model":
                dram += self._modelled(ph)[1]
        return T + self.out_words, per, dram

    # -- resources -----------------------------------------------------------------------
    def resources(self, dsp_budget: int) -> Resources:
        """Estimate: the ``PE x SIMD`` multipliers (DSP48 up to the budget, LUT multipliers
        for the rest), adder trees, accumulators and requantizer comparators, the two
        activation buffers, the double-buffered weight tile and thresholds, the AXI4 read
        master and the control."""
        lanes = self.pe * self.simd
        xb = self.xbits + 1                   # operands sign-extended per phase
        dsp = min(lanes, int(dsp_budget))
        mult = (lanes - dsp) * lut_mult_cost(self.wbits, xb)
        tree = self.pe * max(self.simd - 1, 0) * (self.wbits + xb + math.log2(max(self.simd,
                                                                                   2)) / 2)
        acc = 2 * self.pe * self.abits
        requant = self.pe * self.levels * self.tbits / 2 + self.pe * self.levels
        act = self.act_buffers()
        fi_max = max([self.fi(p) for p in self.phases if p.kind == "mac"] + [1])
        tile = bram36(self.step_bits, 2 * fi_max)
        thr_ff = 2 * self.thr_beats * 64
        return (Resources(lut=mult + tree + acc + requant + self.simd * xb * 2,
                          ff=lanes * (self.wbits + xb) + acc + thr_ff, dsp=dsp,
                          bram=act + tile) + AXI_MASTER_COST + CONTROL_COST)

    def act_buffers(self) -> float:
        """BRAM36 of the on-chip activation buffers: two (ping, pong) as deep as the largest
        tensor, a third where a layer reads two tensors (a residual add keeps its shortcut)."""
        tensors = [self.in_spec.shape] + [self.model.tensors[p.layers[-1].output].shape
                                          for p in self.phases]
        depth = max(self.words(s) for s in tensors)
        n = 3 if any(len(l.inputs) > 1 for l in self.layers) else 2
        return n * bram36(self.simd * self.xbits, depth)

    # -- DRAM image ----------------------------------------------------------------------
    def block_image(self, ph: Phase, og: int) -> bytes:
        """The DRAM bytes of block ``og`` of a ``mac`` phase (see the module docstring)."""
        PE, S, wb, tb, L = self.pe, self.simd, self.wbits, self.tbits, self.levels
        C, CG = ph.C, self.cg(ph.C)
        wpad = np.zeros((PE, CG * S, ph.KH, ph.KW), dtype=np.int64)
        rows = ph.weight[og * PE:(og + 1) * PE]
        wpad[:rows.shape[0], :C] = rows
        bits = 0
        pos = 0
        for kh in range(ph.KH):
            for kw in range(ph.KW):
                for g in range(CG):
                    lanes = wpad[:, g * S:(g + 1) * S, kh, kw].reshape(-1)   # q * S + s
                    v = 0
                    for j, x in enumerate(lanes):
                        v |= (int(x) & ((1 << wb) - 1)) << (j * wb)
                    bits |= v << pos
                    pos += self.step_beats * 64
        th = np.full((PE, L), 1 << (self.abits - 1), dtype=np.int64)
        trows = ph.thresholds[og * PE:(og + 1) * PE]
        th[:trows.shape[0]] = trows
        v = 0
        for j, x in enumerate(th.reshape(-1)):
            v |= (int(x) & ((1 << tb) - 1)) << (j * tb)
        bits |= v << pos
        return bits.to_bytes(self.block_beats(ph) * 8, "little")

    def dram_image(self) -> np.ndarray:
        """The whole DRAM image (``uint8``): every ``mac`` phase's blocks from its offset."""
        img = bytearray(self.dram_bytes_image)
        for ph in self.phases:
            if ph.kind != "mac":
                continue
            for og in range(self.fo(ph)):
                b = self.block_image(ph, og)
                o = self.offset(ph) + og * len(b)
                img[o:o + len(b)] = b
        return np.frombuffer(bytes(img), dtype=np.uint8).copy()

    # -- stream packing ------------------------------------------------------------------
    def pack_input(self, xq: np.ndarray) -> list[int]:
        """Input words of images ``xq`` ``(N, C, H, W)`` (or ``(N, F)``) in the buffer
        layout."""
        return [w for x in np.asarray(xq) for w in self._pack(x)]

    def _pack(self, x) -> list[int]:
        C, H, W = self._geo(x.shape)
        x = np.asarray(x, dtype=np.int64).reshape(C, H, W)
        CG, S, xb = self.cg(C), self.simd, self.xbits
        out = []
        for h in range(H):
            for w in range(W):
                for g in range(CG):
                    v = 0
                    for s in range(S):
                        c = g * S + s
                        if c < C:
                            v |= (int(x[c, h, w]) & ((1 << xb) - 1)) << (s * xb)
                    out.append(v)
        return out

    def unpack_output(self, words: list[int]) -> np.ndarray:
        """Result tensors ``(N, *shape)`` from the output words."""
        shape = tuple(self.out_spec.shape)
        C, H, W = self._geo(shape)
        CG, S, xb = self.cg(C), self.simd, self.xbits
        n = len(words) // self.out_words
        e = np.array([[(int(v) >> (s * xb)) & ((1 << xb) - 1) for s in range(S)] for v in words],
                     dtype=np.int64).reshape(n, H, W, CG * S)[..., :C]
        if self.out_spec.lo < 0:
            e = np.where(e >> (xb - 1) != 0, e - (1 << xb), e)
        return e.transpose(0, 3, 1, 2).reshape(n, *shape)
