"""Integer tensors of the IR: :class:`TensorSpec`, integer ranges and QONNX rounding.

This module is the bottom of the compiler: the op table (:mod:`lcp.ops`) and the IR
(:mod:`lcp.ir`) both build on it, and it imports neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["IRError", "TensorSpec", "int_range", "bits_for_range", "round_float"]


class IRError(ValueError):
    """An IR that breaks the contract (unknown op, bad shape, missing tensor, bad file)."""


#: Rounding modes of QONNX's Quant/Trunc (``HALF_EVEN`` = ``ROUND``), applied to floats.
_ROUNDING = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
    "DOWN": np.fix,
    "UP": lambda x: np.sign(x) * np.ceil(np.abs(x)),
    "HALF_UP": lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5),
    "HALF_DOWN": lambda x: np.sign(x) * np.ceil(np.abs(x) - 0.5),
}


def round_float(x: np.ndarray, mode: str) -> np.ndarray:
    """Round floats to integers (still float) by a QONNX rounding mode name."""
    try:
        return _ROUNDING[mode.upper()](x)
    except KeyError:
        raise IRError(f"unknown rounding mode {mode!r} (known: {', '.join(_ROUNDING)})") from None


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """Integer range of a ``bits``-wide integer (``narrow``: symmetric signed range)."""
    if signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return (lo + 1 if narrow else lo), hi
    return 0, (1 << bits) - 1 - (1 if narrow else 0)


def bits_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """Smallest ``(bits, signed)`` that holds every integer in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise IRError(f"empty integer range [{lo}, {hi}]")
    if lo >= 0:
        return max(1, hi.bit_length()), False
    return max((-lo - 1).bit_length(), hi.bit_length()) + 1, True


@dataclass(frozen=True)
class TensorSpec:
    """An integer tensor: per-image ``shape`` (channels first) and the range of its values.

    ``scale`` is the real value of one integer step when the tensor is a quantized activation
    with one per-tensor scale (informative: nothing in the integer semantics reads it);
    ``None`` for accumulators and for tensors whose channels have different scales.

    ``bipolar`` marks a tensor whose values are only -1 and +1 (never 0), as a 1-bit
    ``BipolarQuant`` produces them. Its integer range is ``[-1, 1]`` (``bits`` is 2, the
    width of a two's-complement value that holds both), but one bit per value is enough on a
    wire and in memory (``wire_bits`` is 1: bit 1 means +1).
    """

    shape: tuple[int, ...]
    lo: int
    hi: int
    scale: float | None = None
    bipolar: bool = False

    def __post_init__(self):
        try:
            shape = tuple(self.shape)
        except TypeError:
            raise IRError(f"shape {self.shape!r} is not a list of integers") from None
        for s in shape:
            if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
                raise IRError(f"shape {list(shape)}: {s!r} is not an integer")
        object.__setattr__(self, "shape", tuple(int(s) for s in shape))
        for f in ("lo", "hi"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise IRError(f"tensor range bound {f}={v!r} is not an integer")
            object.__setattr__(self, f, int(v))
        if any(s <= 0 for s in self.shape):
            raise IRError(f"tensor shape {self.shape} has a non-positive dimension")
        bits_for_range(self.lo, self.hi)
        object.__setattr__(self, "bipolar", bool(self.bipolar))
        if self.bipolar and (self.lo, self.hi) != (-1, 1):
            raise IRError(f"a bipolar tensor has the range [-1, 1], not [{self.lo}, {self.hi}]")

    @property
    def bits(self) -> int:
        return bits_for_range(self.lo, self.hi)[0]

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def wire_bits(self) -> int:
        """Bits per value when stored or sent packed (1 for a bipolar tensor)."""
        return 1 if self.bipolar else self.bits

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of one image's tensor, bit-packed (``ceil(size * wire_bits / 8)``)."""
        return (self.size * self.wire_bits + 7) // 8

    def with_(self, **changes) -> "TensorSpec":
        """A copy with some fields changed."""
        d = {"shape": self.shape, "lo": self.lo, "hi": self.hi, "scale": self.scale,
             "bipolar": self.bipolar}
        d.update(changes)
        return TensorSpec(**d)

    def to_json(self) -> dict:
        d = {"shape": list(self.shape), "lo": self.lo, "hi": self.hi,
             "bits": self.bits, "signed": self.signed}
        if self.scale is not None:
            d["scale"] = float(self.scale)
        if self.bipolar:
            d["bipolar"] = True
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        scale = d.get("scale")
        if scale is not None and not isinstance(scale, (int, float)):
            raise IRError(f"tensor scale {scale!r} is not a number")
        return cls(tuple(d["shape"]) if isinstance(d["shape"], list) else d["shape"],
                   d["lo"], d["hi"], scale, bool(d.get("bipolar", False)))
