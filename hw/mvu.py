"""Convolution and fully connected engines: a matrix-vector unit (MVU) folded ``PE x SIMD``.

Each step the MVU multiplies ``SIMD`` input elements by a ``PE x SIMD`` weight tile and adds the
``PE`` dot products to ``PE`` accumulators; one output vector of ``O`` values takes
``fold = (O / PE) * (F / SIMD)`` steps (``F`` inputs per output). The accumulators are as wide as
the IR output tensor: two's complement wrap-around is exact because the final value fits.

Weights are constants when the layer is fully unrolled (``fold == 1``), else one ROM word per
step (``lib.memory.Memory`` with ``init``). Bias values are constants or a small ROM.

Multipliers are spelled out so that the synthesized design matches the resource model: a
constant weight becomes its canonical-signed-digit shifts of the input (zero weights vanish), a
ROM weight on a LUT lane becomes the partial products of a two's complement array multiplier,
and only the ``dsp`` lanes (a per-layer count in the folding, counted input-major) use ``*``: two
lanes of one input share one multiplier ``x * (wa + wb * 2^S)`` (S = input + weight bits), wide
enough for Yosys' ``synth_xilinx`` to map it to one DSP48 slice (a lone 4-bit product has fewer
than the 9 result bits its DSP mapping needs and stays in LUTs); a DSP lane without a partner is
built as a LUT multiplier. All terms of a PE go into one balanced adder tree.

Grouped and depthwise convolution: the weight matrix holds only the real weights (``O x C/G*KH*KW``,
no zero blocks); each PE lane gathers its own operands (its group's channels of the window) in
the issue stage, so a depthwise layer is one MAC lane per channel (FINN's vector-vector unit)
and a grouped one is groups of MVU lanes, folded by the same ``PE x SIMD``; their window comes
in channel groups (:mod:`lcp.hw.depthwise`), one gather serving every group.

1-bit lanes (:attr:`MvuParams.lane_kind`): bipolar weights (``weight_format`` bipolar) are one
ROM bit each and an add/subtract of the input instead of a multiplier; bipolar inputs select
``+w`` or ``-w`` by their sign bit; both bipolar: XNOR and popcount,
``sum = SIMD - 2 * popcount(x_neg XOR w_neg)`` per PE (FINN's w1a1). None of them uses a DSP.

Pipeline (both engines): step issue -> operands registered (ROM read) -> products and adder tree
registered -> accumulate and output register; an output beat is offered 3 cycles after the issue
of its last step. With ``tree_k`` (fold key; :mod:`lcp.hw.delay` picks it for a clock) the adder
trees are also registered every ``tree_k`` levels, the same number of stages in every PE, and the
offer comes :attr:`MvuParams.tree_stages` cycles later (:attr:`MvuParams.latency`).

Nothing behind the issue stalls: a step that completes an output issues only with a credit, a
free place in the output queue (:attr:`MvuParams.out_depth` beats: the output register, or a
first-word fall-through queue when more outputs can be under way), and the queue is emptied by
the consumer. ``i_stream.ready`` and the issue are a few gates from registers (the step counters'
registered first/last flags and the credit flag); the consumer's ``ready`` only drives the queue
and the credit count. An engine-wide stall enable (``~o.valid | o.ready`` into every register)
was one net to thousands of registers behind a chain of ready logic, the ECP5 critical path.
The queue is deep enough that the credits never hold an issue back while the consumer takes
every beat, so the cycle model is that of a pipeline that never stalls. Data registers
(operands, ROM words, tree stages, partial sums) load only with a valid step, control bits
every cycle: an idle engine's datapath holds still and its registers' clock gates close (ASIC
clock gating keys on the load enable).

``ConvPlan``: window unit (:mod:`lcp.hw.window`) + MVU over the ``KH*KW*C`` window in
``(ky, kx, c)`` order; input one pixel per beat (``C`` lanes), output ``PE`` channels per beat.
``DensePlan``: input ``SIMD`` features per beat in the producer's stream order (the weight columns
are permuted to it, which absorbs the HWC order of a flattened tensor), output ``PE`` features per
beat in IR order. When ``O / PE > 1`` the input vector is kept in a buffer memory and reused.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import C, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lcp.ir import IRError, Layer, TensorSpec, bits_for_range

from .base import (MAX_ACC_BITS, Resources, StreamFormat, bram36, check_layer_bits,
                   const_mul_terms, csd_digits, element_shape, stream_signature, tree_levels,
                   tree_sum)
from .window import WindowEngine, WindowGeometry, _line_buffer_cost, lb_mode, window_scan

__all__ = ["MvuParams", "MatrixVectorUnit", "ConvPlan", "ConvEngine", "DensePlan",
           "DenseEngine", "PIPELINE_LATENCY", "mult_style", "lut_mult_cost"]

#: Cycles from the issue of a step to the offer of the output beat it completes.
PIPELINE_LATENCY = 3


def mult_style(wbits: int, xbits: int) -> str:
    """Default multiplier of a folded (ROM-weight) lane: ``"dsp"`` when the operands together
    exceed 12 bits, else ``"lut"`` (a folding's ``dsp`` count overrides it)."""
    return "dsp" if wbits + xbits > 12 else "lut"


def lut_mult_cost(wbits: int, xbits: int) -> float:
    """LUT6 of one LUT array multiplier (FINN's estimate ``(2*ceil((W+A)/6)-1)*(W+A)``)."""
    return (2 * math.ceil((wbits + xbits) / 6) - 1) * (wbits + xbits)


def _packed(m, x, wa, wb, S: int, name: str):
    """``(x * wa, x * wb)`` from one multiplier ``p = x * (wa + wb * 2^S)`` (a DSP48 slice:
    Yosys maps a ``$mul`` to DSP48E1 only from 9 result bits, which a lone 4-bit product never
    reaches). ``S`` = the widths of ``x`` and ``w`` added: ``x * wa`` fits ``S`` signed bits, so
    it is ``p``'s low ``S`` bits, and ``x * wb = (p >> S) + (sign of the low part)``."""
    p = Signal(signed(2 * S + 2), name=name)
    m.d.comb += p.eq(x * (wa + (wb << S)))
    lo = p[:S].as_signed()
    hi = (p >> S) + p[S - 1]
    return lo, hi


def _packed_registered(m, en, x, wa, wb, S: int, name: str):
    """:func:`_packed` with the product registered (under ``en``; Yosys puts the register in
    the DSP48's P register): the adder-tree terms of ``x * wa`` and of ``x * wb`` (the sign
    correction of the high part as a term of its own, not an adder in front of the tree)."""
    p = Signal(signed(2 * S + 2), name=name)
    with m.If(en):
        m.d.sync += p.eq(x * (wa + (wb << S)))
    return [p[:S].as_signed()], [p >> S, p[S - 1]]


def _lut_terms(x, w, wbits: int) -> list:
    """Adder-tree terms of ``x * w`` for a signed ``wbits``-bit variable ``w`` (array
    multiplier: one partial product per weight bit, the top one negative)."""
    terms = [Mux(w[i], x << i, 0) for i in range(wbits - 1)]
    terms.append(Mux(w[wbits - 1], -(x << (wbits - 1)), 0))
    return terms


class MvuParams:
    """A folded matrix-vector product ``y = bias + W x`` (``W``: O x F, stream-ordered columns).

    Raises
    ------
    IRError
        naming the layer when ``pe`` does not divide ``O``, ``simd`` does not divide ``F``, or a
        width exceeds what the generator supports.
    """

    def __init__(self, layer: Layer, wmat: np.ndarray, bias: np.ndarray | None,
                 x_fmt_lo: int, x_fmt_hi: int, out_spec: TensorSpec, pe: int, simd: int,
                 dsp: int | None = None, *, gather: np.ndarray | None = None,
                 x_bipolar: bool = False, x_zeros: bool = False, n_in: int | None = None,
                 tree_k: int = 0, ram_reg: int = 0, load_always: int = 0,
                 windowed: bool = True):
        self.name = layer.name
        #: The operands come from a window (``"window"`` mode: a multiplexer picks each
        #: step's ``SIMD`` of them); ``False``: ``SIMD`` per beat from a stream (dense).
        self.windowed = bool(windowed)
        #: Adder-tree levels per pipeline stage (0: the whole tree in one stage).
        self.tree_k = int(tree_k)
        if self.tree_k < 0:
            raise IRError(f"layer {layer.name!r}: tree_k={tree_k} must be >= 0")
        #: Register the memory reads (weight ROM word, buffered input vector) before the
        #: products (fold key ``ram_reg``; :mod:`lcp.hw.delay` sets it where a block RAM's
        #: clock-to-output leaves no time for a product in the same cycle): one more cycle;
        #: ``2``: two registers in a row (the route from the block RAM column to the lanes
        #: gets a cycle of its own), two more cycles.
        self.ram_reg = int(ram_reg)
        if self.ram_reg not in (0, 1, 2):
            raise IRError(f"layer {layer.name!r}: ram_reg={ram_reg} must be 0, 1 or 2")
        #: The operand register and the memories' read registers load every cycle (fold key
        #: ``load_always``), not only when their value can change: on an FPGA that load
        #: enable is a net from the issue logic to every operand and weight flip-flop
        #: (hundreds), slower than the power it saves; an ASIC keeps it, its clock gates close
        #: on it.
        self.load_always = int(bool(load_always))
        self.wmat = np.asarray(wmat, dtype=np.int64)
        self.O, self.F = self.wmat.shape
        #: Per output row, the input-vector index of each of its ``F`` operands (grouped and
        #: depthwise convolution: every PE lane reads its own group's channels); ``None``:
        #: every row reads the whole input vector in order. With fewer rows ``R`` than ``O``
        #: (a channel-grouped window, :mod:`lcp.hw.depthwise`) each input vector serves ``R``
        #: consecutive output rows and the next vector the next ``R``, with the same gather.
        self.gather = None if gather is None else np.asarray(gather, dtype=np.int64)
        if self.gather is not None and (self.gather.shape[1:] != self.wmat.shape[1:]
                                        or self.O % self.gather.shape[0]
                                        or self.gather.shape[0] % max(int(pe), 1)):
            raise IRError(f"layer {layer.name!r}: gather {self.gather.shape} does not match "
                          f"the weights {self.wmat.shape} and PE={pe}")
        #: 1-bit lanes: weights all -1/+1 (``weight_format`` bipolar) are one ROM bit each and
        #: an add/subtract instead of a multiplier; with bipolar inputs too, XNOR and popcount.
        self.w_bipolar = layer.attrs.get("weight_format") == "bipolar"
        self.x_bipolar = bool(x_bipolar)
        #: Some operands of bipolar inputs are 0 (a convolution's zero padding): the low bit of
        #: the 2-bit value (1 for -1 and +1, 0 for 0) gates their products.
        self.x_zeros = bool(x_zeros) and self.x_bipolar
        #: Elements of one input vector in ``"window"`` mode (the window; ``F`` without
        #: gather).
        self.n_in = self.F if n_in is None else int(n_in)
        self.bias = (np.zeros(self.O, dtype=np.int64) if bias is None
                     else np.asarray(bias, dtype=np.int64))
        self.pe, self.simd = int(pe), int(simd)
        if self.pe < 1 or self.O % self.pe:
            raise IRError(f"layer {layer.name!r}: PE={pe} does not divide the {self.O} outputs")
        if self.simd < 1 or self.F % self.simd:
            raise IRError(f"layer {layer.name!r}: SIMD={simd} does not divide the {self.F} "
                          f"inputs per output")
        self.fo, self.fi = self.O // self.pe, self.F // self.simd
        #: Output steps (``og``) per input vector in ``"window"`` mode.
        self.beat_fo = self.fo if self.gather is None else self.gather.shape[0] // self.pe
        self.x_shape = element_shape(x_fmt_lo, x_fmt_hi)
        self.xbits = self.x_shape.width
        wlo, whi = int(self.wmat.min(initial=0)), int(self.wmat.max(initial=0))
        self.wbits = max(bits_for_range(min(wlo, -1), whi)[0],
                         int(layer.attrs.get("weight_bits", 0)))
        self.acc_shape = element_shape(out_spec.lo, out_spec.hi)
        check_layer_bits(layer.name, "a weight", self.wbits)
        check_layer_bits(layer.name, "an input element", self.xbits)
        check_layer_bits(layer.name, "the accumulator", self.acc_shape.width, MAX_ACC_BITS)
        lanes = self.pe * self.simd
        if self.constant or self.one_bit:
            self.dsp = 0
        elif dsp is None:
            self.dsp = lanes if mult_style(self.wbits, self.xbits) == "dsp" else 0
        else:
            self.dsp = int(dsp)
            if not 0 <= self.dsp <= lanes:
                raise IRError(f"layer {layer.name!r}: dsp={dsp} lanes, the layer has {lanes}")

    def tree_terms(self) -> int:
        """Most adder-tree terms of one PE (what the generator's tree sums)."""
        kind = self.lane_kind
        if kind == "xnor":
            return 0                      # popcount, not pipelined
        if kind in ("sign_w", "sign_x"):
            return self.simd
        if kind == "const":
            return int(csd_digits(self.wmat).sum(axis=1).max(initial=0))
        paired = self.dsp_pairs()
        n = [sum(1 if (q - q % 2, s) in paired else self.wbits for s in range(self.simd))
             for q in range(self.pe)]
        return max(n)

    def is_dsp(self, q: int, s: int) -> bool:
        """Lane ``(q, s)`` is one of the ``dsp`` lanes (counted input-major: the PEs of one
        input first, so that lanes sharing an operand pair up)."""
        return s * self.pe + q < self.dsp

    def dsp_pairs(self) -> set[tuple[int, int]]:
        """``(q, s)`` with ``q`` even: DSP lanes ``(q, s)`` and ``(q + 1, s)`` share one
        DSP48 slice (one multiplier ``x * (w_q + w_q1 * 2^S)``, see :func:`_packed`).
        A DSP lane without a partner (odd PE count, odd ``dsp``, gathered operands) is built
        as a LUT multiplier: Yosys maps a lone 4-bit product to LUTs, not to a DSP48."""
        if self.lane_kind != "mult" or self.gather is not None:
            return set()
        return {(q, s) for s in range(self.simd) for q in range(0, self.pe - 1, 2)
                if self.is_dsp(q, s) and self.is_dsp(q + 1, s)}

    @property
    def tree_depth(self) -> int:
        """Adder levels of the deepest PE tree (``ceil(log2(terms))``)."""
        return max(self.tree_terms() - 1, 0).bit_length()

    @property
    def dsp_registered(self) -> bool:
        """Pipelined (``tree_k > 0``) with paired DSP lanes: each DSP48 product is registered
        (the slice's own P register) in the first tree stage, while the LUT terms go through
        their first ``tree_k`` levels; a combinational DSP48 multiply (about 4 ns on a -1
        7-series part) would otherwise sit in front of the tree's levels."""
        return self.tree_k > 0 and bool(self.dsp_pairs())

    @property
    def tree_stages(self) -> int:
        """Registers added inside each adder tree: one every ``tree_k`` levels (with
        :attr:`dsp_registered`, the first one also holds the DSP products, whose split
        terms join the tree after it)."""
        k = self.tree_k
        if k <= 0:
            return 0
        if not self.dsp_registered:
            return 0 if self.tree_depth <= k else -(-self.tree_depth // k) - 1
        paired = self.dsp_pairs()
        rest = 0
        for q in range(self.pe):
            n_lut = sum(self.wbits for s in range(self.simd) if (q - q % 2, s) not in paired)
            n_dsp = sum(1 + q % 2 for s in range(self.simd) if (q - q % 2, s) in paired)
            for _ in range(k):
                n_lut = n_lut if n_lut <= 1 else -(-n_lut // 2)
            rest = max(rest, n_lut + n_dsp)
        d2 = max(rest - 1, 0).bit_length()
        return 1 + (0 if d2 <= k else -(-d2 // k) - 1)

    @property
    def reads_ram(self) -> bool:
        """Products take a memory read: the weight ROM (folded weights) or the input-vector
        buffer (a dense layer of several output groups)."""
        return not self.constant or (not self.windowed and self.fo > 1)

    @property
    def ram_stages(self) -> int:
        """Cycles of the memory-read registers (:attr:`ram_reg`): 0, 1 or 2."""
        return self.ram_reg if self.reads_ram else 0

    def pipe_fold(self) -> dict:
        """The timing fold keys that are set (``tree_k``, ``ram_reg``, ``load_always``)."""
        return {k: v for k, v in (("tree_k", self.tree_k), ("ram_reg", self.ram_reg),
                                  ("load_always", self.load_always)) if v}

    @property
    def latency(self) -> int:
        """Cycles from the issue of a step to the offer of the output beat it completes."""
        return PIPELINE_LATENCY + self.ram_stages + self.tree_stages

    @property
    def out_depth(self) -> int:
        """Output beats the engine holds (its credits): as many as can be under way when the
        consumer takes every beat at once, ``latency // fi + 1`` (an output's last step
        issues at least ``fi`` cycles after the previous one's), so the credits never hold an
        issue back unless the consumer refuses a beat. One: the output register; more: a
        first-word fall-through queue (LUT RAM on an FPGA)."""
        return self.latency // self.fi + 1

    def _out_queue(self) -> Resources:
        """The output register, or the queue of :attr:`out_depth` beats and its credits."""
        w, d = self.pe * self.acc_shape.width, self.out_depth
        if d == 1:
            return Resources(ff=w + 2)
        ptr = 3 * max(d - 1, 1).bit_length() + 2
        return Resources(lut=w * math.ceil(d / 32) + 2 * ptr, ff=ptr)

    @property
    def one_bit(self) -> bool:
        """The lanes multiply by a 1-bit operand (bipolar weights or inputs): no multiplier."""
        return self.w_bipolar or self.x_bipolar

    @property
    def lane_kind(self) -> str:
        """``"xnor"`` (both bipolar), ``"sign_w"`` (bipolar weights), ``"sign_x"`` (bipolar
        inputs), ``"const"`` (constant weights) or ``"mult"``."""
        if self.w_bipolar and self.x_bipolar:
            return "xnor"
        if self.x_bipolar:
            return "sign_x"
        if self.constant:
            return "const"
        if self.w_bipolar:
            return "sign_w"
        return "mult"

    @property
    def rom_bits(self) -> int:
        """Bits per weight in the ROM (1 for bipolar weights: bit 1 means -1)."""
        return 1 if self.w_bipolar else self.wbits

    @property
    def steps(self) -> int:
        """Steps per output vector: ``(O / PE) * (F / SIMD)``."""
        return self.fo * self.fi

    @property
    def constant(self) -> bool:
        """Weights are constants (fully unrolled)."""
        return self.steps == 1

    def tile(self, og: int, ig: int) -> np.ndarray:
        """Weights of step ``(og, ig)``: ``PE x SIMD``."""
        return self.wmat[og * self.pe:(og + 1) * self.pe, ig * self.simd:(ig + 1) * self.simd]

    def resources(self) -> Resources:
        ram = 0
        if self.ram_stages:
            xlanes = self.simd if self.gather is None else self.pe * self.simd
            ram = (xlanes * self.xbits + (0 if self.constant else self.pe * self.simd
                                          * self.rom_bits) + 4) * self.ram_stages
        return (self._resources() + Resources(ff=self._pipe_ff() + ram)
                + self._out_queue())

    def _pipe_ff(self) -> float:
        """Flip-flops of the adder-tree pipeline registers: per stage, the partial sums left
        after its levels (terms halve each level, each about ``xbits + wbits`` + levels
        wide) and the 4 control registers."""
        if not self.tree_stages:
            return 0.0
        n, ff = self.tree_terms(), 0.0
        for st in range(1, self.tree_stages + 1):
            lv = st * self.tree_k
            ff += self.pe * -(-n // (1 << lv)) * (self.xbits + self.wbits + lv)
            ff += 3 + max(self.fo - 1, 1).bit_length()
        return ff

    def _resources(self) -> Resources:
        pe, simd, wb, xb = self.pe, self.simd, self.wbits, self.xbits
        acc = self.acc_shape.width
        xlanes = simd if self.gather is None else pe * simd
        ff = xlanes * xb + 2 * pe * acc + 38          # operands, accumulators, partial sums
        gmux = 0.0
        if self.gather is not None and self.beat_fo * self.fi > 1:
            gmux = pe * simd * xb * (self.beat_fo * self.fi - 1) / 2
        kind = self.lane_kind
        if kind == "xnor":
            # XNOR per lane (folded into the popcount LUTs), popcount tree of SIMD bits per PE
            pop = pe * simd * (1 + math.log2(max(simd, 2)) / 4) * (2 if self.x_zeros else 1)
            rom = self._rom(pe * simd) if not self.constant else Resources()
            return rom + Resources(lut=pop + 2 * pe * acc + gmux + 40, ff=ff)
        if kind in ("sign_w", "sign_x"):
            # one add/subtract per lane (a conditional negation folded into the adder tree)
            opb = xb if kind == "sign_w" else wb + (1 if self.x_zeros else 0)
            tree = pe * simd * (opb + math.log2(max(simd, 2)) / 2)
            rom = self._rom(pe * simd * self.rom_bits) if not self.constant else Resources()
            return rom + Resources(lut=tree + 2 * pe * acc + gmux + 40, ff=ff)
        if self.constant:
            terms = csd_digits(self.wmat).sum(axis=1)
            width = xb + wb + np.log2(np.maximum(terms, 2)) / 2
            lut = float(np.sum(np.maximum(terms - 1, 0) * width)) + pe * acc
            return Resources(lut=lut + 20, ff=ff)
        lanes = pe * simd
        pairs = len(self.dsp_pairs())
        # two products per DSP48 slice; their split (an S-bit add) costs about S/2 LUTs
        mult_lut = (lanes - 2 * pairs) * lut_mult_cost(wb, xb) + pairs * (wb + xb) / 2
        dsp = float(pairs)
        tree = pe * max(simd - 1, 0) * (wb + xb + math.log2(max(simd, 2)) / 2)
        accl = 2 * pe * acc
        rom = self._rom(lanes * wb)
        mux = (simd * xb * (self.fi - 1) / 2 if self.fi > 1 and self.gather is None
               and self.windowed else gmux)
        bias = pe * acc * math.ceil(self.fo / 64) if self.fo > 1 else 0
        return rom + Resources(lut=mult_lut + tree + accl + mux + bias + 40, ff=ff, dsp=dsp)

    def _rom(self, width: int) -> Resources:
        """Weight ROM of ``width`` bits x ``steps`` words (LUTRAM up to 64 deep, else BRAM;
        two words: each bit a constant or the address bit, absorbed by the multipliers)."""
        if self.steps <= 2:
            return Resources()
        if self.steps <= 64:
            return Resources(lut=width * math.ceil(self.steps / 64))
        return Resources(lut=10, bram=bram36(width, self.steps))


class MatrixVectorUnit(wiring.Component):
    """The folded MVU (see the module docstring).

    Parameters
    ----------
    p : MvuParams
    mode : str
        ``"window"``: each input beat is a whole ``F``-element vector, held (not accepted) until
        its last step; ``"stream"``: ``F / SIMD`` input beats of ``SIMD`` elements per vector.
    weights : str
        ``"rom"`` (the weight ROM inside) or ``"port"``: the weights of the step ``(w_og,
        w_ig)`` issued in a cycle arrive on ``w_data`` the next cycle (a synchronous memory
        read, :mod:`lcp.hw.weightstream`), and a step issues only while ``w_ready``.

    Members
    -------
    i_stream : In(stream.Signature(ArrayLayout(x, F or SIMD)))
    o_stream : Out(stream.Signature(ArrayLayout(acc, PE)))
    w_og, w_ig, w_data, w_ready : with ``weights="port"`` only
    """

    def __init__(self, p: MvuParams, mode: str, weights: str = "rom"):
        self.p, self.mode, self.weights = p, mode, weights
        n_in = p.n_in if mode == "window" else p.simd
        ports = {}
        if weights == "port":
            wl = data.ArrayLayout(unsigned(1) if p.w_bipolar else signed(p.wbits), p.pe * p.simd)
            ports = {"w_og": Out(range(max(p.fo, 2))), "w_ig": Out(range(max(p.fi, 2))),
                     "w_data": In(wl), "w_ready": In(1)}
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(p.x_shape, n_in))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(p.acc_shape, p.pe))),
            **ports,
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        pe, simd, fo, fi = p.pe, p.simd, p.fo, p.fi
        i, o = self.i_stream, self.o_stream
        xl = data.ArrayLayout(p.x_shape, simd)

        # step counters with registered first/last flags: ``i.ready`` and the issue are a
        # few gates from registers, never a comparator or the output's ``ready``
        ig, first_ig, last_ig = _counter(fi, "ig")
        og, first_og, last_og = _counter(fo, "og")
        # output credits: an output's last step issues only when the output queue will have
        # room for its result (``held``: outputs issued and not yet taken, at most
        # :attr:`MvuParams.out_depth`); the pipeline behind the issue never stalls
        depth = p.out_depth
        held = Signal(range(depth + 1))
        room = Signal(init=1)

        # -- stage 0: issue ---------------------------------------------------------------
        wr = self.w_ready if self.weights == "port" else 1
        gathered = p.gather is not None
        x0l = data.ArrayLayout(p.x_shape, pe * simd) if gathered else xl
        x0 = Signal(x0l)
        bfo = p.beat_fo if self.mode == "window" else fo
        if bfo < fo:               # og within the input vector (a channel-grouped window)
            ob, first_ob, last_ob = _counter(bfo, "ob")
        else:
            ob, first_ob, last_ob = og, first_og, last_og
        credit = room | ~last_ig
        if self.mode == "window":
            can = i.valid
            m.d.comb += i.ready.eq(wr & last_ig & last_ob & room)
            if gathered:
                # each PE lane reads its own operands (its group's channels) of the window
                def pick(a, b):
                    return [x0[q * simd + s].eq(i.payload[int(p.gather[a * pe + q, b * simd + s])])
                            for q in range(pe) for s in range(simd)]
                if bfo * fi == 1:
                    m.d.comb += pick(0, 0)
                else:
                    step = Signal(range(bfo * fi))
                    m.d.comb += step.eq(ob * fi + ig)
                    with m.Switch(step):
                        for a in range(bfo):
                            for b in range(fi):
                                with m.Case(a * fi + b):
                                    m.d.comb += pick(a, b)
            elif fi == 1:
                m.d.comb += x0.eq(i.payload)
            else:
                with m.Switch(ig):
                    for k in range(fi):
                        with m.Case(k):
                            m.d.comb += [x0[s].eq(i.payload[k * simd + s]) for s in range(simd)]
        else:
            can = Mux(first_og, i.valid, 1)
            m.d.comb += [i.ready.eq(wr & first_og & credit), x0.eq(i.payload)]
        fire = Signal()
        if self.weights == "port":
            m.d.comb += [fire.eq(can & credit & self.w_ready), self.w_og.eq(og),
                         self.w_ig.eq(ig)]
        else:
            m.d.comb += fire.eq(can & credit)
        _count(m, fire, fi, ig, first_ig, last_ig)
        _count(m, fire & last_ig, fo, og, first_og, last_og)
        if bfo < fo:
            _count(m, fire & last_ig, bfo, ob, first_ob, last_ob)

        v1, first1, last1 = Signal(), Signal(), Signal()
        og1 = Signal.like(og)
        x1 = Signal(x0l)
        use_buf1 = Signal()
        m.d.sync += [v1.eq(fire), first1.eq(first_ig), last1.eq(last_ig), og1.eq(og),
                     use_buf1.eq(~first_og if self.mode == "stream" else 0)]
        # data registers load only with a step (operand isolation), the operand register only
        # when its value can change: a new beat (one window serves its ``fo`` steps when
        # ``fi == 1``) or a new slice of it; a dense input vector only at ``og == 0`` (the
        # other output groups read it from the buffer below)
        if p.load_always:
            load_x = 1
        elif self.mode == "stream":
            load_x = fire & first_og
        elif not gathered and fi == 1:
            load_x = fire & first_ob
        else:
            load_x = fire
        with m.If(load_x):
            m.d.sync += x1.eq(x0)

        # the memories' read registers: loaded with a step, or (load_always) every cycle, as
        # what they hold between steps is never used (stage 1 takes it only after an issue)
        read_en = 1 if p.load_always else fire
        x_buf = None
        if self.mode == "stream" and fo > 1:
            m.submodules.xbuf = xbuf = Memory(shape=xl, depth=fi, init=[])
            wr = xbuf.write_port()
            rd = xbuf.read_port(domain="sync")
            m.d.comb += [wr.addr.eq(ig), wr.data.eq(i.payload), wr.en.eq(fire & first_og),
                         rd.addr.eq(ig), rd.en.eq(read_en)]
            x_buf = rd.data

        kind = p.lane_kind
        wl = data.ArrayLayout(unsigned(1) if p.w_bipolar else signed(p.wbits), pe * simd)
        w_rom = None
        if self.weights == "port":
            w_rom = self.w_data
        elif not p.constant:
            def word(a, b):
                t = p.tile(a, b).reshape(-1)
                return [int(v < 0) if p.w_bipolar else int(v) for v in t]
            init = [word(a, b) for a in range(fo) for b in range(fi)]
            m.submodules.weights = rom = Memory(shape=wl, depth=p.steps, init=init)
            rp = rom.read_port(domain="sync")
            # the step's address ``og * fi + ig`` as a counter of its own: a register at the
            # ROM's address, not an adder in front of it (on an FPGA a LUT ROM's decode
            # already fills the read's clock period)
            wa, wa_first, wa_last = _counter(p.steps, "wa")
            _count(m, fire, p.steps, wa, wa_first, wa_last)
            m.d.comb += [rp.addr.eq(wa), rp.en.eq(read_en)]
            w_rom = rp.data

        # -- stage 1: products and adder trees ----------------------------------------------
        x = Signal(x0l)
        if x_buf is not None:
            m.d.comb += x.eq(Mux(use_buf1, x_buf.as_value(), x1.as_value()))
        else:
            m.d.comb += x.eq(x1)
        for st in range(p.ram_stages):
            # the memory reads registered before the products (one more stage each)
            c1 = [Signal.like(c, name=f"{c.name}_r{st}") for c in (v1, first1, last1, og1)]
            m.d.sync += [a.eq(b) for a, b in zip(c1, (v1, first1, last1, og1))]
            xr = Signal(x0l, name=f"x_r{st}")
            wrr = Signal(wl, name=f"w_r{st}") if w_rom is not None else None
            with m.If(v1):
                m.d.sync += xr.eq(x)
                if wrr is not None:
                    m.d.sync += wrr.eq(w_rom)
            x, w_rom, (v1, first1, last1, og1) = xr, wrr, c1
        acc_l = data.ArrayLayout(p.acc_shape, pe)
        psum = Signal(acc_l)
        v2, first2, last2 = Signal(), Signal(), Signal()
        og2 = Signal.like(og)

        def xin(q, s):
            return x[q * simd + s] if gathered else x[s]

        def xneg(q, s):                # sign bit of a bipolar input (-1 = 0b11, +1 = 0b01)
            return x.as_value()[((q * simd + s) if gathered else s) * p.xbits + p.xbits - 1]

        def xnz(q, s):                 # low bit: the operand is -1 or +1, not a 0 of padding
            return x.as_value()[((q * simd + s) if gathered else s) * p.xbits]

        pairs = p.dsp_pairs()
        packed: dict = {}
        sums = []
        late = [[] for _ in range(pe)]         # registered DSP products' terms (stage 1 on)
        for q in range(pe):
            if kind == "xnor":
                # sum of +-1 products = SIMD - 2 * popcount(x_neg XOR w_neg)
                # (with zero operands: their count less, only theirs gated out of the popcount)
                bits, live = [], []
                for s in range(simd):
                    if p.constant:
                        b = ~xneg(q, s) if p.wmat[q, s] < 0 else xneg(q, s)
                    else:
                        b = xneg(q, s) ^ w_rom[q * simd + s]
                    bits.append(b & xnz(q, s) if p.x_zeros else b)
                    live.append(xnz(q, s))
                width = bits_for_range(0, 2 * simd)[0] + 1
                pop = Signal(signed(width), name=f"pop{q}")
                m.d.comb += pop.eq(tree_sum(bits))
                if p.x_zeros:
                    n = Signal(signed(width), name=f"live{q}")
                    m.d.comb += n.eq(tree_sum(live))
                    sums.append(n - (pop << 1))
                else:
                    sums.append(simd - (pop << 1))
                continue
            terms = []
            for s in range(simd):
                if kind == "sign_x":
                    wv = int(p.wmat[q, s]) if p.constant else w_rom[q * simd + s]
                    t = Mux(xneg(q, s), -wv, wv)
                    terms.append(Mux(xnz(q, s), t, 0) if p.x_zeros else t)
                elif kind == "const":
                    terms += const_mul_terms(xin(q, s), p.wmat[q, s])
                elif kind == "sign_w":
                    terms.append(Mux(w_rom[q * simd + s], -xin(q, s), xin(q, s)))
                elif (q - q % 2, s) in pairs and p.dsp_registered:
                    if (q, s) not in packed:
                        lo, hi = _packed_registered(m, v1, xin(q, s), w_rom[q * simd + s],
                                                    w_rom[(q + 1) * simd + s],
                                                    p.xbits + p.wbits, f"dsp{q}_{s}")
                        packed[(q, s)], packed[(q + 1, s)] = lo, hi
                    late[q] += packed[(q, s)]
                elif (q - q % 2, s) in pairs:
                    if (q, s) not in packed:
                        lo, hi = _packed(m, xin(q, s), w_rom[q * simd + s],
                                         w_rom[(q + 1) * simd + s], p.xbits + p.wbits,
                                         f"dsp{q}_{s}")
                        packed[(q, s)], packed[(q + 1, s)] = lo, hi
                    terms.append(packed[(q, s)])
                else:
                    terms += _lut_terms(xin(q, s), w_rom[q * simd + s], p.wbits)
            sums.append(terms)
        # adder trees registered every tree_k levels (the same number of stages in every PE)
        ctl = [v1, first1, last1, og1]
        for st in range(p.tree_stages):
            nxt = []
            for q, terms in enumerate(sums):
                if kind == "xnor":
                    nxt.append(terms)
                    continue
                terms = tree_levels(terms, p.tree_k) if terms or not late[q] else []
                regs = []
                for k, t in enumerate(terms):
                    r = Signal(Value.cast(t).shape(), name=f"t{st}_{q}_{k}")
                    with m.If(ctl[0]):
                        m.d.sync += r.eq(t)
                    regs.append(r)
                nxt.append(regs + (late[q] if st == 0 else []))
            sums = nxt
            c2 = [Signal.like(c, name=f"{c.name}_p{st}") for c in ctl]
            m.d.sync += [a.eq(b) for a, b in zip(c2, ctl)]
            ctl = c2
        sums = [t if kind == "xnor" else tree_sum(t) for t in sums]
        m.d.sync += [v2.eq(ctl[0]), first2.eq(ctl[1]), last2.eq(ctl[2]), og2.eq(ctl[3])]
        with m.If(ctl[0]):
            m.d.sync += [psum[q].eq(sums[q]) for q in range(pe)]

        # -- stage 2: accumulate, output ------------------------------------------------------
        acc = Signal(acc_l)
        nacc = Signal(acc_l)
        if fo == 1:
            bias_q = [int(v) for v in p.bias]
        else:
            m.submodules.bias = brom = Memory(
                shape=acc_l, depth=fo,
                init=[[int(v) for v in p.bias[a * pe:(a + 1) * pe]] for a in range(fo)])
            brp = brom.read_port(domain="comb")
            m.d.comb += brp.addr.eq(og2)
            bias_q = [brp.data[q] for q in range(pe)]
        for q in range(pe):
            m.d.comb += nacc[q].eq(Mux(first2, bias_q[q], acc[q]) + psum[q])
        with m.If(v2):
            m.d.sync += acc.eq(nacc)
        push = v2 & last2
        if depth == 1:
            # the credit guarantees that the previous beat has been taken
            with m.If(o.ready):
                m.d.sync += o.valid.eq(0)
            with m.If(push):
                m.d.sync += [o.payload.eq(nacc), o.valid.eq(1)]
        else:
            # first-word fall-through: a beat written in a cycle is offered the next, as from
            # a register
            m.submodules.outq = q = SyncFIFO(width=acc_l.size, depth=depth)
            m.d.comb += [q.w_data.eq(nacc.as_value()), q.w_en.eq(push),
                         o.payload.eq(q.r_data), o.valid.eq(q.r_rdy), q.r_en.eq(o.ready)]
        # held and room for each of (issued, taken) from registers, picked by the two
        # handshakes: they arrive from the neighbours late, after a route, not before an add
        # and a compare
        inc, dec = fire & last_ig, o.valid & o.ready
        up, down = held + 1, held - 1
        m.d.sync += [held.eq(Mux(inc & ~dec, up, Mux(dec & ~inc, down, held))),
                     room.eq(Mux(inc & ~dec, up < depth, Mux(dec & ~inc, 1, held < depth)))]
        return m


def _counter(n: int, name: str):
    """``(count, first, last)`` of a step counter over ``0 .. n - 1``: the flags are
    registers (constants when ``n == 1``), advanced by :func:`_count`."""
    c = Signal(range(max(n, 2)), name=name)
    if n == 1:
        return c, C(1, 1), C(1, 1)
    return c, Signal(name=f"{name}_first", init=1), Signal(name=f"{name}_last")


def _count(m, step, n: int, c, first, last):
    """Advance a :func:`_counter` of ``n`` values on ``step`` (wrapping after the last)."""
    if n == 1:
        return
    with m.If(step):
        m.d.sync += [c.eq(Mux(last, 0, c + 1)), last.eq(~last & (c == n - 2)),
                     first.eq(last)]


class ConvPlan:
    """Convolution layer: window unit + MVU; in ``C`` lanes (one pixel per beat), out ``PE``
    lanes (HWC order)."""

    kind = "conv"
    ops = ("conv",)
    fold_keys = ("pe", "simd", "dsp", "tree_k", "ram_reg", "load_always", "pingpong", "lb_reg")
    parallel, prefer_pe, narrowable, passthrough = True, False, False, False

    @staticmethod
    def mvu_shape(layer: Layer) -> tuple[int, int]:
        """``(O, F)``: output channels, inputs per output (``C/G * KH * KW``)."""
        w = layer.weight
        return int(w.shape[0]), int(np.prod(w.shape[1:]))

    @staticmethod
    def demand(model, layer, fold):
        return model.tensors[layer.inputs[0]].shape[0]          # whole pixels

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        src = low.adapt(srcs[0], low.model.tensors[layer.inputs[0]].shape[0], layer.name)
        return cls(layer, src[2], out_spec, pe=fold.get("pe", 1), simd=fold.get("simd", 1),
                   dsp=fold.get("dsp"), tree_k=fold.get("tree_k", 0),
                   ram_reg=fold.get("ram_reg", 0), load_always=fold.get("load_always", 0),
                   pingpong=fold.get("pingpong", 0), lb_reg=fold.get("lb_reg", 0)), [src]

    def __init__(self, layer: Layer, in_fmt: StreamFormat, out_spec: TensorSpec, *, pe: int = 1,
                 simd: int = 1, dsp: int | None = None, tree_k: int = 0, ram_reg: int = 0,
                 load_always: int = 0, pingpong: int = 0, lb_reg: int = 0):
        self.layer = layer
        #: the window unit's output in two registers, its line buffer's write or read
        #: registered (:class:`~lcp.hw.window.WindowEngine`)
        self.pingpong, self.lb_reg = int(bool(pingpong)), lb_mode(lb_reg, layer.name)
        self.geo = g = WindowGeometry(layer, in_fmt.shape)
        self.in_fmt = in_fmt.with_lanes(g.C)
        w = layer.weight                       # O, C/G, KH, KW -> O, (ky, kx, c)
        if w.ndim == 3:                        # 1-D: O, C/G, K -> O, C/G, 1, K
            w = w[:, :, None, :]
        wmat = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        self.groups = G = int(layer.attrs.get("groups", 1))
        gather = None
        if G > 1:
            # output channel o reads channels g(o)*C/G .. of every tap: a gather per PE lane
            O, Cg = w.shape[0], w.shape[1]
            taps = np.arange(g.kh * g.kw)[:, None] * g.C
            grp = (np.arange(O) // (O // G)) * Cg
            gather = (taps[None, :, :] + grp[:, None, None]
                      + np.arange(Cg)[None, None, :]).reshape(O, -1)
        self.mvu = MvuParams(layer, wmat, layer.bias, in_fmt.lo, in_fmt.hi, out_spec, pe, simd,
                             dsp, gather=gather, x_bipolar=in_fmt.bipolar,
                             x_zeros=any(layer.attrs["pads"]), n_in=g.window, tree_k=tree_k,
                             ram_reg=ram_reg, load_always=load_always)
        self.out_fmt = StreamFormat.of(out_spec, pe)

    @property
    def folding(self) -> dict:
        f = {"pe": self.mvu.pe, "simd": self.mvu.simd, "dsp": self.mvu.dsp}
        return {**f, **self.mvu.pipe_fold(), **({"pingpong": 1} if self.pingpong else {}),
                **({"lb_reg": self.lb_reg} if self.lb_reg else {})}

    def timing(self, offers):
        g, p = self.geo, self.mvu
        frames = offers[0].size // (g.H * g.W)
        acc, _, starts = window_scan(g, offers[0], frames, p.steps, 1 + self.pingpong)
        og = np.arange(p.fo, dtype=np.int64) * p.fi + p.fi - 1 + p.latency
        return [acc], (starts[:, None] + og[None, :]).reshape(-1)

    def busy(self) -> int:
        """Cycles per image when the input is never late: positions or MVU steps."""
        g = self.geo
        return max(g.positions, g.OH * g.OW * self.mvu.steps)

    def resources(self) -> Resources:
        g, bits = self.geo, self.in_fmt.bits
        width, depth = g.line_buffer_bits(bits)
        win_regs = g.window * bits          # the shift register (the MVU counts its copy)
        mask = g.window * bits / 2
        return (_line_buffer_cost(width, depth, self.lb_reg) + self.mvu.resources()
                + Resources(lut=mask + 40, ff=win_regs + 32) + self.pingpong_cost())

    def pingpong_cost(self) -> Resources:
        """The second output register and its 2:1 multiplexer (fold key ``pingpong``)."""
        bits = self.geo.window * self.in_fmt.bits
        return Resources(lut=bits + 4, ff=bits + 3) if self.pingpong else Resources()

    def build(self) -> "ConvEngine":
        return ConvEngine(self)


class ConvEngine(wiring.Component):
    """Convolution engine (:class:`ConvPlan`): ``i_stream`` pixels, ``o_stream`` PE channels."""

    def __init__(self, plan: ConvPlan):
        self.plan = plan
        super().__init__({"i_stream": In(stream_signature(plan.in_fmt)),
                          "o_stream": Out(stream_signature(plan.out_fmt))})

    def elaborate(self, platform):
        m = Module()
        p = self.plan
        m.submodules.window = win = WindowEngine(p.geo, p.in_fmt, pad=0, mode="window",
                                                 pingpong=p.pingpong, lb_reg=p.lb_reg)
        m.submodules.mvu = mvu = MatrixVectorUnit(p.mvu, "window")
        wiring.connect(m, wiring.flipped(self.i_stream), win.i_stream)
        wiring.connect(m, win.o_stream, mvu.i_stream)
        wiring.connect(m, mvu.o_stream, wiring.flipped(self.o_stream))
        return m


class DensePlan:
    """Fully connected layer: in ``SIMD`` lanes (any stream order), out ``PE`` lanes."""

    kind = "dense"
    ops = ("dense",)
    fold_keys = ("pe", "simd", "dsp", "tree_k", "ram_reg", "load_always")
    parallel, prefer_pe, narrowable, passthrough = True, True, False, False

    @staticmethod
    def mvu_shape(layer: Layer) -> tuple[int, int]:
        return tuple(int(v) for v in layer.weight.shape)

    @staticmethod
    def demand(model, layer, fold):
        return fold.get("simd", 1)

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        src = low.adapt(srcs[0], fold.get("simd", 1), layer.name)
        return cls(layer, src[2], out_spec, pe=fold.get("pe", 1), simd=fold.get("simd", 1),
                   dsp=fold.get("dsp"), tree_k=fold.get("tree_k", 0),
                   ram_reg=fold.get("ram_reg", 0), load_always=fold.get("load_always", 0)), [src]

    def __init__(self, layer: Layer, in_fmt: StreamFormat, out_spec: TensorSpec, *, pe: int = 1,
                 simd: int = 1, dsp: int | None = None, tree_k: int = 0, ram_reg: int = 0,
                 load_always: int = 0):
        self.layer = layer
        if len(in_fmt.shape) != 1:
            raise IRError(f"layer {layer.name!r}: dense input must be 1-D, got {in_fmt.shape}")
        wmat = layer.weight[:, in_fmt.perm]
        self.mvu = MvuParams(layer, wmat, layer.bias, in_fmt.lo, in_fmt.hi, out_spec, pe, simd,
                             dsp, x_bipolar=in_fmt.bipolar, tree_k=tree_k, ram_reg=ram_reg,
                             load_always=load_always, windowed=False)
        self.in_fmt = in_fmt.with_lanes(simd)
        self.out_fmt = StreamFormat.of(out_spec, pe)

    @property
    def folding(self) -> dict:
        f = {"pe": self.mvu.pe, "simd": self.mvu.simd, "dsp": self.mvu.dsp}
        return {**f, **self.mvu.pipe_fold(), **({"pingpong": 1} if self.pingpong else {})}

    def timing(self, offers):
        p = self.mvu
        off = np.asarray(offers[0], dtype=np.int64)
        frames = off.size // p.fi
        acc = np.empty(off.size, dtype=np.int64)
        outs = np.empty(frames * p.fo, dtype=np.int64)
        t = -(1 << 60)
        for f in range(frames):
            seg = off[f * p.fi:(f + 1) * p.fi]
            j = np.arange(p.fi, dtype=np.int64)
            s0 = j + np.maximum.accumulate(np.maximum(seg, t + 1 + j) - j)
            acc[f * p.fi:(f + 1) * p.fi] = s0
            end0 = int(s0[-1])
            og = np.arange(p.fo, dtype=np.int64)
            last_steps = end0 + og * p.fi          # issue of step (og, fi-1)
            outs[f * p.fo:(f + 1) * p.fo] = last_steps + p.latency
            t = end0 + (p.fo - 1) * p.fi
        return [acc], outs

    def busy(self) -> int:
        return self.mvu.steps

    def resources(self) -> Resources:
        p = self.mvu
        r = p.resources()
        if p.fo > 1:
            w, d = p.simd * p.xbits, p.fi
            r += (Resources(lut=w * math.ceil(d / 64)) if w * d <= 16384
                  else Resources(lut=10, bram=bram36(w, d)))
        return r

    def build(self) -> "DenseEngine":
        return DenseEngine(self)


class DenseEngine(wiring.Component):
    """Fully connected engine (:class:`DensePlan`)."""

    def __init__(self, plan: DensePlan):
        self.plan = plan
        super().__init__({"i_stream": In(stream_signature(plan.in_fmt)),
                          "o_stream": Out(stream_signature(plan.out_fmt))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mvu = mvu = MatrixVectorUnit(self.plan.mvu, "stream")
        wiring.connect(m, wiring.flipped(self.i_stream), mvu.i_stream)
        wiring.connect(m, mvu.o_stream, wiring.flipped(self.o_stream))
        return m
