"""Element-wise and merging engines: threshold (requantization), ReLU, residual add, concat.

All take one beat per cycle and have one output register (an output beat is offered the cycle
after its input beats are taken; the threshold engine registers its comparisons too, so its
beat comes two cycles after, three with its input registered: fold key ``in_reg``,
:func:`lcp.hw.delay.threshold_in_register`). Lanes and stream order pass through unchanged.

Threshold: ``y = out_lo + #{k : x >= T[c, k]}`` per element. Thresholds shared by all channels,
or constant per lane (the channel of each lane never changes), are constants compared in logic;
otherwise one ROM word per beat position of the channel cycle holds every lane's thresholds.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lcp.ir import IRError, Layer, TensorSpec

from .base import (Resources, StreamFormat, bram36, const_mul_terms, csd_digits, element_shape,
                   stream_signature, tree_sum)
from .plumbing import _run_max

__all__ = ["MAX_THRESHOLDS", "ThresholdPlan", "ThresholdEngine", "ReluPlan", "ReluEngine",
           "AddPlan", "AddEngine", "ConcatPlan", "ConcatEngine"]

#: Most thresholds per channel (an 8-bit output) the threshold engine is generated for.
MAX_THRESHOLDS = 255


# -- threshold -------------------------------------------------------------------------------

class _PerElementPlan:
    """What the per-element plans share: the output keeps the input's stream order and lanes
    (a folding that asks for other lanes has the input re-laned first); no demand on the
    producer."""

    fold_keys = ("lanes",)
    parallel = passthrough = False
    narrowable = True

    @staticmethod
    def demand(model, layer, fold):
        return None

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        src = srcs[0]
        if fold.get("lanes") and fold["lanes"] != src[2].lanes:
            src = low.adapt(src, int(fold["lanes"]), layer.name)
        return cls(layer, src[2], out_spec), [src]

    def __init__(self, layer: Layer, in_fmt: StreamFormat, out_spec: TensorSpec):
        self.layer = layer
        self.in_fmt = in_fmt
        self.out_fmt = StreamFormat(in_fmt.shape, out_spec.lo, out_spec.hi, in_fmt.lanes,
                                    in_fmt.perm, out_spec.bipolar)


class ThresholdPlan(_PerElementPlan):
    """Requantization by thresholds (see the module docstring). ``in_reg``: the input beat is
    registered before the comparisons (one more cycle of latency): the comparators' carry
    chains then start at a flip-flop, not behind the producer's output multiplexer."""

    kind = "threshold"
    ops = ("threshold",)
    fold_keys = ("lanes", "in_reg")

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        plan, links = super().lower(low, layer, srcs, fold, out_spec)
        plan.in_reg = int(bool(fold.get("in_reg", 0)))
        return plan, links

    def __init__(self, layer: Layer, in_fmt: StreamFormat, out_spec: TensorSpec):
        super().__init__(layer, in_fmt, out_spec)
        self.in_reg = 0
        t = np.asarray(layer.params["thresholds"], dtype=np.int64)
        self.L = t.shape[1]
        if self.L > MAX_THRESHOLDS:
            raise IRError(f"layer {layer.name!r}: {self.L} thresholds per channel; the threshold "
                          f"engine supports at most {MAX_THRESHOLDS} (8-bit outputs)")
        # thresholds outside the input range decide nothing: clip them next to it
        self.T = np.clip(t, in_fmt.lo, in_fmt.hi + 1)
        self.t_shape = element_shape(min(in_fmt.lo, int(self.T.min(initial=0))),
                                     max(in_fmt.hi + 1, int(self.T.max(initial=0))))
        lanes = in_fmt.lanes
        ch = in_fmt.channel_of().reshape(in_fmt.beats, lanes)
        if self.T.shape[0] == 1:
            self.period = 1
            self.table = np.broadcast_to(self.T[0], (1, lanes, self.L))
        else:
            period = in_fmt.channels // lanes if len(in_fmt.shape) >= 2 else in_fmt.beats
            self.period = period
            self.table = self.T[ch[:period]]            # period x lanes x L

    @property
    def constant(self) -> bool:
        return self.period == 1

    def timing(self, offers):
        acc = _run_max(offers[0])
        return [acc], acc + 2 + self.in_reg

    def resources(self) -> Resources:
        lanes, L, tb = self.in_fmt.lanes, self.L, self.t_shape.width
        ff = lanes * (self.out_fmt.bits + L) + 2 + (max(self.period - 1, 1).bit_length()
                                              if self.period > 1 else 0)
        ff += (lanes * self.in_fmt.bits + 1) * self.in_reg
        if self.constant:
            # comparisons with constants: Yosys shares the monotonic thresholds' logic with the
            # count (about tb/4 LUTs per comparison, count included; XC7Z020 syntheses of the
            # CifarNet-split8 branch: 45-61 LUTs per lane for 15 thresholds of 13-17 bits)
            return Resources(lut=lanes * L * tb / 4 + 10, ff=ff)
        else:
            cmp = lanes * L * tb
            bits = lanes * L * tb
            rom = (Resources(lut=bits * math.ceil(self.period / 64)) if self.period <= 64
                   else Resources(lut=10, bram=bram36(bits, self.period)))
        pop = lanes * L
        return rom + Resources(lut=cmp + pop + 10, ff=ff)

    def build(self) -> "ThresholdEngine":
        return ThresholdEngine(self)


class ThresholdEngine(wiring.Component):
    """Threshold engine (:class:`ThresholdPlan`)."""

    def __init__(self, plan: ThresholdPlan):
        self.plan = plan
        super().__init__({"i_stream": In(stream_signature(plan.in_fmt)),
                          "o_stream": Out(stream_signature(plan.out_fmt))})

    def elaborate(self, platform):
        m = Module()
        p = self.plan
        i, o = self.i_stream, self.o_stream
        lanes, L = p.in_fmt.lanes, p.L
        en = ~o.valid | o.ready
        m.d.comb += i.ready.eq(en)
        # the beat compared: the input, or (in_reg) its register one cycle later
        x, xv = i.payload, i.valid
        if p.in_reg:
            x, xv = Signal.like(i.payload, name="x_reg"), Signal(name="x_valid")
            with m.If(en):
                m.d.sync += xv.eq(i.valid)
            with m.If(i.valid & en):
                m.d.sync += x.eq(i.payload)
        if p.constant:
            thr = [[int(v) for v in p.table[0, l]] for l in range(lanes)]
        else:
            tl = data.ArrayLayout(data.ArrayLayout(p.t_shape, L), lanes)
            m.submodules.thresholds = rom = Memory(
                shape=tl, depth=p.period,
                init=[[[int(v) for v in p.table[b, l]] for l in range(lanes)]
                      for b in range(p.period)])
            rp = rom.read_port(domain="comb")
            beat = Signal(range(max(p.period, 2)))
            m.d.comb += rp.addr.eq(beat)
            with m.If(xv & en):
                m.d.sync += beat.eq(Mux(beat == p.period - 1, 0, beat + 1))
            thr = [[rp.data[l][k] for k in range(L)] for l in range(lanes)]
        # two stages: the comparisons registered, then their count (the comparators' carry
        # chains and the count's adders would not fit one 100 MHz cycle on the XC7Z020)
        v1 = Signal()
        ge = [[Signal(name=f"ge{l}_{k}") for k in range(L)] for l in range(lanes)]
        with m.If(en):
            m.d.sync += [v1.eq(xv), o.valid.eq(v1)]
        with m.If(xv & en):
            m.d.sync += [ge[l][k].eq(x[l] >= thr[l][k])
                         for l in range(lanes) for k in range(L)]
        with m.If(en & v1):
            m.d.sync += [o.payload[l].eq(p.out_fmt.lo + tree_sum(ge[l])) for l in range(lanes)]
        return m


# -- relu ------------------------------------------------------------------------------------

class ReluPlan(_PerElementPlan):
    """``max(x, 0)`` per element."""

    kind = "relu"
    ops = ("relu",)

    def timing(self, offers):
        acc = _run_max(offers[0])
        return [acc], acc + 1

    def resources(self) -> Resources:
        n = self.in_fmt.lanes * self.out_fmt.bits
        return Resources(lut=n / 2 + 4, ff=n + 2)

    def build(self) -> "ReluEngine":
        return ReluEngine(self)


class ReluEngine(wiring.Component):
    """ReLU engine (:class:`ReluPlan`)."""

    def __init__(self, plan: ReluPlan):
        self.plan = plan
        super().__init__({"i_stream": In(stream_signature(plan.in_fmt)),
                          "o_stream": Out(stream_signature(plan.out_fmt))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        en = ~o.valid | o.ready
        m.d.comb += i.ready.eq(en)
        with m.If(en):
            m.d.sync += o.valid.eq(i.valid)
        with m.If(i.valid & i.ready):
            for l in range(self.plan.in_fmt.lanes):
                x = i.payload[l]
                m.d.sync += o.payload[l].eq(Mux(x < 0, 0, x))
        return m


# -- add -------------------------------------------------------------------------------------

class AddPlan:
    """``mul[0] * a + mul[1] * b`` element-wise (the IR's scale-aligned add; ``mul`` = (1, 1)
    for a plain residual add); both operands in the same stream order and lanes. The constant
    factors are shift-and-add terms (canonical signed digits)."""

    kind = "add"
    ops = ("add",)
    fold_keys = ()
    parallel = narrowable = passthrough = False

    @staticmethod
    def demand(model, layer, fold):
        return None

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        b = low.adapt(srcs[1], srcs[0][2].lanes, layer.name)
        return cls(layer, srcs[0][2], b[2], out_spec), [srcs[0], b]


    def __init__(self, layer: Layer, a_fmt: StreamFormat, b_fmt: StreamFormat,
                 out_spec: TensorSpec):
        self.layer = layer
        if not a_fmt.same_order(b_fmt):
            raise IRError(f"layer {layer.name!r}: the operands of add arrive in different "
                          f"stream orders; the hardware cannot add them")
        self.a_fmt, self.b_fmt = a_fmt, b_fmt.with_lanes(a_fmt.lanes)
        self.in_fmts = [self.a_fmt, self.b_fmt]
        self.mul = tuple(int(v) for v in layer.attrs.get("mul", (1, 1)))
        self.out_fmt = StreamFormat(a_fmt.shape, out_spec.lo, out_spec.hi, a_fmt.lanes, a_fmt.perm)

    def timing(self, offers):
        acc = _run_max(np.maximum(offers[0], offers[1]))
        return [acc, acc], acc + 1

    def resources(self) -> Resources:
        n = self.a_fmt.lanes * self.out_fmt.bits
        terms = int(csd_digits(np.array(self.mul)).sum())        # 2 for a plain add
        return Resources(lut=n * max(terms - 1, 1) + 4, ff=n + 2)

    def build(self) -> "AddEngine":
        return AddEngine(self)


class AddEngine(wiring.Component):
    """Residual add engine (:class:`AddPlan`): ``a_stream + b_stream -> o_stream``."""

    def __init__(self, plan: AddPlan):
        self.plan = plan
        super().__init__({"a_stream": In(stream_signature(plan.a_fmt)),
                          "b_stream": In(stream_signature(plan.b_fmt)),
                          "o_stream": Out(stream_signature(plan.out_fmt))})

    @property
    def inputs(self):
        return [self.a_stream, self.b_stream]

    def elaborate(self, platform):
        m = Module()
        a, b, o = self.a_stream, self.b_stream, self.o_stream
        en = ~o.valid | o.ready
        both = a.valid & b.valid
        m.d.comb += [a.ready.eq(en & b.valid), b.ready.eq(en & a.valid)]
        with m.If(en):
            m.d.sync += o.valid.eq(both)
        with m.If(en & both):
            ka, kb = self.plan.mul
            m.d.sync += [o.payload[l].eq(tree_sum(const_mul_terms(a.payload[l], ka)
                                                  + const_mul_terms(b.payload[l], kb)))
                         for l in range(self.plan.a_fmt.lanes)]
        return m


# -- concat ----------------------------------------------------------------------------------

class ConcatPlan:
    """Concatenation along channels: per pixel, the channels of input 0, then input 1, ...

    ``lanes`` must divide every input's channel count (the graph builder picks their gcd).
    """

    kind = "concat"
    ops = ("concat",)
    fold_keys = ("lanes",)
    parallel = narrowable = passthrough = False

    @staticmethod
    def demand(model, layer, fold):
        return None

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        probe = cls(layer, [s[2] for s in srcs], out_spec, fold.get("lanes"))
        srcs = [low.adapt(s, probe.lanes, f"{layer.name}_{k}") for k, s in enumerate(srcs)]
        return cls(layer, [s[2] for s in srcs], out_spec, probe.lanes), srcs


    def __init__(self, layer: Layer, in_fmts: list[StreamFormat], out_spec: TensorSpec,
                 lanes: int | None = None):
        self.layer = layer
        chans = [f.channels if len(f.shape) >= 2 else f.size for f in in_fmts]
        lanes = int(lanes or math.gcd(*chans, *[f.lanes for f in in_fmts]))
        if any(c % lanes for c in chans):
            raise IRError(f"layer {layer.name!r}: {lanes} lanes do not divide the input "
                          f"channels {chans}")
        self.chans = chans
        self.in_fmts = [f.with_lanes(lanes) for f in in_fmts]
        self.lanes = lanes
        if len(out_spec.shape) >= 2:
            self.pixels = in_fmts[0].pixels
            self.out_fmt = StreamFormat.of(out_spec, lanes)
        else:
            self.pixels = 1
            offs = np.cumsum([0] + [f.size for f in in_fmts])[:-1]
            perm = np.concatenate([f.perm + o for f, o in zip(in_fmts, offs)])
            self.out_fmt = StreamFormat.of(out_spec, lanes, perm)

    def order(self) -> list[int]:
        """Input index of every output beat of one image."""
        one = [k for k, c in enumerate(self.chans) for _ in range(c // self.lanes)]
        return one * self.pixels

    def timing(self, offers):
        seq = np.asarray(self.order())
        n = seq.size
        frames = offers[0].size // (self.in_fmts[0].beats)
        pos = [0] * len(offers)
        accs = [np.empty_like(np.asarray(o)) for o in offers]
        out = np.empty(frames * n, dtype=np.int64)
        t = -(1 << 60)
        for f in range(frames):
            for j, k in enumerate(seq):
                t = max(t + 1, int(offers[k][pos[k]]))
                accs[k][pos[k]] = t
                pos[k] += 1
                out[f * n + j] = t + 1
        return accs, out

    def resources(self) -> Resources:
        n = self.lanes * self.out_fmt.bits
        k = len(self.in_fmts)
        return Resources(lut=n * max(k - 1, 1) / 2 + 20, ff=n + 20)

    def build(self) -> "ConcatEngine":
        return ConcatEngine(self)


class ConcatEngine(wiring.Component):
    """Concat engine (:class:`ConcatPlan`): ``i_stream0`` .. ``i_stream{n-1}`` -> ``o_stream``."""

    def __init__(self, plan: ConcatPlan):
        self.plan = plan
        members = {f"i_stream{k}": In(stream_signature(f)) for k, f in enumerate(plan.in_fmts)}
        members["o_stream"] = Out(stream_signature(plan.out_fmt))
        super().__init__(members)

    @property
    def inputs(self):
        return [getattr(self, f"i_stream{k}") for k in range(len(self.plan.in_fmts))]

    def elaborate(self, platform):
        m = Module()
        p = self.plan
        o = self.o_stream
        seq = p.order()[: len(p.order()) // p.pixels]      # one pixel
        en = ~o.valid | o.ready
        pos = Signal(range(max(len(seq), 2)))
        with m.If(en):
            m.d.sync += o.valid.eq(0)
        with m.Switch(pos):
            for j, k in enumerate(seq):
                with m.Case(j):
                    src = self.inputs[k]
                    m.d.comb += src.ready.eq(en)
                    with m.If(src.valid & en):
                        m.d.sync += [o.payload[l].eq(src.payload[l]) for l in range(p.lanes)]
                        m.d.sync += [o.valid.eq(1),
                                     pos.eq(0 if j == len(seq) - 1 else j + 1)]
        return m
