"""Stream formats, resource figures and small helpers shared by every engine generator.

Every tensor that flows between two engines is a stream of *beats*; :class:`StreamFormat`
describes it: the IR tensor (per-image shape, integer range), how many elements travel per beat
(``lanes``) and in which order the elements of one image are sent (``perm``: stream position ->
flat index of the IR tensor, channels first).

Order contract
--------------
- A 3-D tensor ``(C, H, W)`` always streams in HWC order: pixel after pixel in raster order, all
  channels of a pixel together, channel ``c`` in lane ``c % lanes`` of beat ``c // lanes`` of
  that pixel. ``lanes`` divides ``C`` (a beat never spans two pixels). A 2-D tensor ``(C, L)``
  (1-D convolutions and pools) is the same with ``H = 1``: LC order, position after position.
- A 1-D tensor streams in the order it is produced. Dense layers produce their outputs in IR
  order; ``flatten`` keeps the HWC order of its input, so the flattened vector of a ``(C, H, W)``
  tensor arrives permuted. Consumers absorb the permutation (a dense layer permutes its weight
  columns); the IR never changes.

An engine's payload is ``data.ArrayLayout(element, lanes)``: lane ``i`` is element
``beat * lanes + i`` of the image, two's complement when the tensor is signed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, stream

from lcp.frames import Port
from lcp.ir import IRError, TensorSpec, bits_for_range

__all__ = [
    "MAX_ELEMENT_BITS", "MAX_ACC_BITS", "StreamFormat", "Resources", "DEVICES",
    "ECP5_PARTS", "ECP5_LUT4_PER_LUT6", "ECP5_FF_PER_FF", "ecp5_units",
    "element_shape", "hwc_perm", "stream_signature", "tree_sum", "divisors", "csd_digits",
    "const_mul_terms",
    "bram36", "check_layer_bits",
]

#: Widest tensor element (activation, weight, accumulator) an engine is generated for.
MAX_ELEMENT_BITS = 32
#: Widest accumulator (a DSP48E1 accumulates 48 bits).
MAX_ACC_BITS = 48


def element_shape(lo: int, hi: int) -> Shape:
    """Narrowest Amaranth shape that holds every integer in ``[lo, hi]``."""
    bits, sgn = bits_for_range(lo, hi)
    return signed(bits) if sgn else unsigned(bits)


def hwc_perm(shape: tuple[int, ...]) -> np.ndarray:
    """Stream position -> IR flat index for the natural stream order of ``shape``.

    HWC for ``(C, H, W)``, LC for ``(C, L)``, the identity for a vector.
    """
    if len(shape) >= 2:
        n = math.prod(shape)
        return np.moveaxis(np.arange(n).reshape(shape), 0, -1).reshape(-1)
    return np.arange(math.prod(shape))


@dataclass(frozen=True, eq=False)
class StreamFormat:
    """One tensor as a stream of beats (see the module docstring for the order contract).

    Members
    -------
    shape : tuple of int
        Per-image IR shape, channels first.
    lo, hi : int
        Integer range of every element (the IR :class:`~lcp.ir.TensorSpec` range).
    lanes : int
        Elements per beat; divides the channel count of a 3-D tensor, the size of a 1-D one.
    perm : numpy.ndarray
        Stream position -> IR flat index (int64, a permutation of ``range(size)``).
    bipolar : bool
        Every element is -1 or +1 (a bipolar IR tensor). It still travels as the 2-bit two's
        complement value (-1 = ``0b11``, +1 = ``0b01``); consumers with 1-bit lanes read only
        its sign bit (the constant low bit is left to synthesis).
    """

    shape: tuple[int, ...]
    lo: int
    hi: int
    lanes: int
    perm: np.ndarray = field(repr=False)
    bipolar: bool = False

    @classmethod
    def of(cls, spec: TensorSpec, lanes: int, perm: np.ndarray | None = None) -> "StreamFormat":
        """The format of IR tensor ``spec`` with ``lanes`` per beat (natural order by default)."""
        return cls(tuple(spec.shape), spec.lo, spec.hi, int(lanes),
                   hwc_perm(spec.shape) if perm is None else np.asarray(perm, dtype=np.int64),
                   bool(getattr(spec, "bipolar", False)))

    def __post_init__(self):
        unit = self.shape[0] if len(self.shape) >= 2 else self.size
        if self.lanes < 1 or unit % self.lanes:
            raise IRError(f"{self.lanes} lanes do not divide {unit} "
                          f"({'channels' if len(self.shape) >= 2 else 'elements'}) of a "
                          f"{self.shape} tensor")

    def with_lanes(self, lanes: int) -> "StreamFormat":
        return StreamFormat(self.shape, self.lo, self.hi, int(lanes), self.perm, self.bipolar)

    def with_range(self, lo: int, hi: int) -> "StreamFormat":
        return StreamFormat(self.shape, int(lo), int(hi), self.lanes, self.perm)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def beats(self) -> int:
        """Beats per image."""
        return self.size // self.lanes

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def pixels(self) -> int:
        """``H * W`` of a 3-D tensor, ``L`` of a 2-D one, 1 for a vector."""
        return self.size // self.shape[0] if len(self.shape) >= 2 else 1

    @property
    def bits(self) -> int:
        return bits_for_range(self.lo, self.hi)[0]

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def element(self) -> Shape:
        return element_shape(self.lo, self.hi)

    @property
    def layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(self.element, self.lanes)

    @property
    def beat_bits(self) -> int:
        return self.lanes * self.bits

    def channel_of(self) -> np.ndarray:
        """IR channel index of every stream position (the ``C`` of ``(C, ...)``)."""
        inner = self.size // self.shape[0]
        return self.perm // inner

    def same_order(self, other: "StreamFormat") -> bool:
        return self.shape == other.shape and np.array_equal(self.perm, other.perm)

    def to_stream(self, x: np.ndarray) -> np.ndarray:
        """``(N, *shape)`` IR-ordered tensors -> ``(N, beats, lanes)`` in stream order."""
        x = np.asarray(x).reshape(len(x), -1)
        return x[:, self.perm].reshape(len(x), self.beats, self.lanes)

    def from_stream(self, s: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_stream`: ``(N, beats*lanes)`` -> ``(N, *shape)``."""
        s = np.asarray(s).reshape(len(s), -1)
        out = np.empty_like(s)
        out[:, self.perm] = s
        return out.reshape(len(s), *self.shape)

    def port(self, width: int, tensor: str = "") -> Port:
        """This stream as a ``width``-bit AXI4-Stream port (:class:`lcp.frames.Port`)."""
        return Port.of(tensor, self.shape, self.lo, self.hi, self.perm, width)

    def describe(self) -> dict:
        return {"shape": list(self.shape), "lo": self.lo, "hi": self.hi, "bits": self.bits,
                "signed": self.signed, "lanes": self.lanes, "beats": self.beats}


def stream_signature(fmt: StreamFormat) -> stream.Signature:
    """``stream.Signature`` carrying one beat of ``fmt``."""
    return stream.Signature(fmt.layout)


@dataclass
class Resources:
    """Estimated FPGA resources (7-series counts: LUT6, flip-flops, DSP48E1, BRAM36)."""

    lut: float = 0.0
    ff: float = 0.0
    dsp: float = 0.0
    bram: float = 0.0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.lut + other.lut, self.ff + other.ff, self.dsp + other.dsp,
                         self.bram + other.bram)

    def __mul__(self, k: float) -> "Resources":
        return Resources(self.lut * k, self.ff * k, self.dsp * k, self.bram * k)

    def fits(self, budget: "Resources") -> bool:
        return (self.lut <= budget.lut and self.ff <= budget.ff and self.dsp <= budget.dsp
                and self.bram <= budget.bram)

    def usage(self, budget: "Resources") -> float:
        """Largest fraction of ``budget`` used by any resource kind."""
        return max(self.lut / budget.lut, self.ff / budget.ff,
                   self.dsp / budget.dsp if budget.dsp else (math.inf if self.dsp else 0.0),
                   self.bram / budget.bram if budget.bram else (math.inf if self.bram else 0.0))

    def to_json(self) -> dict:
        return {"lut": int(round(self.lut)), "ff": int(round(self.ff)), "dsp": int(round(self.dsp)),
                "bram36": round(self.bram, 1)}


#: Lattice ECP5 parts (LFE5U, data sheet FPGA-DS-02012 table 1.1) in their own units: LUT4s,
#: flip-flops, 18x18 multipliers (MULT18X18D) and 18-kbit block RAMs (EBR, DP16KD). The ECP5
#: flow (:mod:`lcp.synth.fpga`) tries them smallest first.
ECP5_PARTS: dict[str, dict[str, int]] = {
    "lfe5u-25f": {"lut4": 24_288, "ff": 24_288, "mult18": 28, "ebr": 56},
    "lfe5u-45f": {"lut4": 43_848, "ff": 43_848, "mult18": 72, "ebr": 108},
    "lfe5u-85f": {"lut4": 83_640, "ff": 83_640, "mult18": 156, "ebr": 208},
}

#: ECP5 LUT4s per LUT6 and flip-flops per flip-flop of the estimate. The estimate counts
#: 7-series cells; ``synth_ecp5`` maps the same logic to LUT4s, CCU2C carry cells (two LUT4s
#: each) and 16x4 distributed RAMs (four LUT4s each), and keeps in fabric flip-flops the
#: product registers a DSP48E1 holds inside. Calibrated on the CifarNet-split8 branch 0 at the
#: XC7Z020 folding, adder trees pipelined for 100 MHz on ecp5 (``generate(zoo_model('cifarnet',
#: 8, 4), B, budget='xc7z020', scope='branch', clock_mhz=100, tech='ecp5')``, random weights):
#: estimate 43,867 LUT6 and 15,349 FF; ``synth_ecp5`` (Yosys 0.5x, pyosys) mapped 42,419 LUT4
#: + 8,394 CCU2C + 104 TRELLIS_DPR16X4 = 59,623 LUT4s (1.36 per LUT6) and 20,224 FF (1.32 per
#: FF), both rounded up. (Same run: 221 MULT18X18D for 220 estimated DSP48 slices, 9 DP16KD for
#: 3 BRAM36.)
ECP5_LUT4_PER_LUT6 = 1.4
ECP5_FF_PER_FF = 1.35


def ecp5_units(r: Resources) -> dict[str, float]:
    """An estimate in ECP5 units: LUT4 (:data:`ECP5_LUT4_PER_LUT6` per LUT6), FF
    (:data:`ECP5_FF_PER_FF`), MULT18X18D (one per DSP48 slice of the estimate: a slice holds
    two lanes' packed product ``x * (wa + wb * 2^S)``, ``x`` and the packed weight each at most
    18 bits for operands of up to 6 bits, so one MULT18X18D takes it) and EBR (two 18-kbit EBRs
    per BRAM36: the DP16KD has the RAMB18's aspect ratios, 16K x 1 to 512 x 36)."""
    return {"lut4": r.lut * ECP5_LUT4_PER_LUT6, "ff": r.ff * ECP5_FF_PER_FF, "mult18": r.dsp,
            "ebr": 2 * r.bram}


def _ecp5_budget(part: dict[str, int]) -> Resources:
    """The budget of an ECP5 part in the estimate's units (the inverse of :func:`ecp5_units`)."""
    return Resources(lut=part["lut4"] / ECP5_LUT4_PER_LUT6, ff=part["ff"] / ECP5_FF_PER_FF,
                     dsp=part["mult18"], bram=part["ebr"] / 2)


#: Resource budgets of known parts (``--budget NAME``), in the estimate's units (7-series
#: LUT6, FF, DSP48 slices, BRAM36).
DEVICES: dict[str, Resources] = {
    # Zynq-7020 (PYNQ-Z1/Z2): 53,200 LUT, 106,400 FF, 220 DSP48E1, 140 BRAM36
    "xc7z020": Resources(lut=53_200, ff=106_400, dsp=220, bram=140),
    # Zynq-7010: 17,600 LUT, 35,200 FF, 80 DSP48E1, 60 BRAM36
    "xc7z010": Resources(lut=17_600, ff=35_200, dsp=80, bram=60),
    # ECP5 LFE5U-25F/45F/85F, converted (:func:`ecp5_units`)
    **{name: _ecp5_budget(part) for name, part in ECP5_PARTS.items()},
}


def tree_sum(terms: list):
    """Balanced adder tree over Amaranth values (``0`` for an empty list)."""
    terms = list(terms)
    if not terms:
        return 0
    while len(terms) > 1:
        nxt = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def tree_levels(terms: list, levels: int) -> list:
    """``levels`` levels of :func:`tree_sum`'s balanced adder tree: the partial sums left
    (the same pairing as ``tree_sum``, so finishing them with it gives the same tree)."""
    terms = list(terms) or [0]
    for _ in range(levels):
        if len(terms) <= 1:
            break
        nxt = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms


def _csd(w: int) -> list[tuple[int, int]]:
    """Canonical signed digits of ``w``: (sign, shift) pairs."""
    out, k = [], 0
    while w:
        if w & 1:
            d = 2 - (w & 3)          # +1 or -1
            out.append((d, k))
            w -= d
        w >>= 1
        k += 1
    return out


def const_mul_terms(x, w: int) -> list:
    """Adder-tree terms of ``x * w`` for a constant ``w`` (CSD shifts, none for 0)."""
    return [(x << k) if d > 0 else -(x << k) for d, k in _csd(int(w))]


def divisors(n: int) -> list[int]:
    """Divisors of ``n`` in increasing order."""
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def csd_digits(w: np.ndarray) -> np.ndarray:
    """Number of non-zero digits of each integer in canonical signed-digit form.

    A constant multiplication by ``w`` costs that many terms in an adder tree.
    """
    w = np.abs(np.asarray(w, dtype=np.int64)).copy()
    n = np.zeros(w.shape, dtype=np.int64)
    while np.any(w):
        odd = (w & 1) == 1
        # digit +1 if w % 4 == 1, -1 (and carry) if w % 4 == 3
        neg = odd & ((w & 3) == 3) & (w != 3)
        n += odd
        w = np.where(neg, w + 1, np.where(odd, w - 1, w)) >> 1
    return n


def bram36(width: int, depth: int) -> float:
    """BRAM36 blocks for a ``width x depth`` ROM/RAM (best 7-series aspect ratio; 0.5 = BRAM18)."""
    if width <= 0 or depth <= 0:
        return 0.0
    best = math.inf
    for w, d in ((1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512)):
        best = min(best, math.ceil(width / w) * math.ceil(depth / d))
    half = [math.ceil(width / w) * math.ceil(depth / d)
            for w, d in ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))]
    return min(float(best), min(half) * 0.5)


def check_layer_bits(layer_name: str, what: str, bits: int, limit: int = MAX_ELEMENT_BITS):
    """:class:`~lcp.ir.IRError` naming ``layer_name`` when ``bits`` exceeds ``limit``."""
    if bits > limit:
        raise IRError(f"layer {layer_name!r}: {what} needs {bits} bits; the hardware generator "
                      f"supports at most {limit}")
