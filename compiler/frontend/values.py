"""What an ONNX tensor is while the front end walks the graph, and the float chains it carries.

Every ONNX tensor becomes one of:

:class:`Const`
    a float constant (an initializer or a folded constant);
:class:`QConst`
    a quantized constant: integers (weights, biases) with their scale and bit width;
:class:`Raw`
    the float model input before its quantizer, with the float ops applied to it so far
    (these become the input's pre-processing, :attr:`lcp.ir.InputSpec.pre`);
:class:`Act`
    an IR integer tensor plus a pending *chain* of float steps that maps its integers to the
    real values of the ONNX tensor. A chain holds ``(op, array)`` with op in
    ``mul/add/sub/div/relu``; arrays are float64 scalars or one value per channel.

Exact scale alignment (:func:`common_unit`): float scales are dyadic rationals, so scales
``s_i`` always have a common unit ``u`` with ``s_i = k_i * u`` for integers ``k_i``; an
operation on tensors of different scales (an ``add``, a weighted layer reading channels of
different scales) multiplies each by its integer ``k_i`` and nothing is rounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..ir import Layer

__all__ = ["Const", "QConst", "Raw", "Act", "pure_scale", "channel_scales", "eval_chain",
           "slope_sign", "per_channel", "affine", "common_unit"]


@dataclass
class Const:
    value: np.ndarray


@dataclass
class QConst:
    """A quantizer applied to a constant: integers, their scale (broadcastable), the
    quantizer's bit width, and whether the integers are bipolar (-1/+1)."""

    q: np.ndarray
    scale: np.ndarray
    bits: int
    node: str
    bipolar: bool = False
    source: str = ""        # the ONNX initializer the integers come from


@dataclass
class Raw:
    """The float model input, after the float ops in ``pre`` (``(op, constant)``, constants
    shaped to broadcast over one image of ``shape``); ``flat`` if it was flattened."""

    shape: tuple[int, ...]
    pre: list = field(default_factory=list)
    flat: bool = False


@dataclass
class Act:
    """An IR integer tensor and the float steps mapping its integers to the ONNX values.

    ``producer`` is the conv/dense layer whose channels can be negated to fold a negative
    slope, when nothing else reads the path (``foldable``).
    """

    tensor: str
    chain: list
    producer: Layer | None = None
    foldable: bool = False
    avgpool: Layer | None = None   # set when the value is a fresh average pool (for Trunc)


def channel_scales(a: Act) -> np.ndarray | None:
    """Per-channel positive scales (an array, or a 0-d array when per tensor) when the chain is
    only multiplications and divisions by positive values; else ``None``."""
    s = np.float64(1.0)
    for op, arr in a.chain:
        if op not in ("mul", "div"):
            return None
        k = np.asarray(arr, dtype=np.float64)
        if np.any(k <= 0):
            return None
        s = s * k if op == "mul" else s / k
    return np.asarray(s)


def pure_scale(a: Act) -> float | None:
    """The per-tensor scale if the chain is a product of positive scalars, else ``None``."""
    s = channel_scales(a)
    if s is None:
        return None
    u = np.unique(s)
    return float(u[0]) if u.size == 1 else None


def eval_chain(chain, a: np.ndarray, axis_shape) -> np.ndarray:
    """Evaluate ``chain`` on float64 integers ``a`` (channels on axis 0, per-channel arrays
    reshaped to ``axis_shape``), in the order the ONNX ops compute it."""
    v = a
    for op, arr in chain:
        if op == "relu":
            v = np.maximum(v, 0.0)
            continue
        k = np.asarray(arr, dtype=np.float64)
        k = k.reshape(axis_shape) if k.ndim else k
        if op == "mul":
            v = v * k
        elif op == "add":
            v = v + k
        elif op == "sub":
            v = v - k
        elif op == "div":
            v = v / k
    return v


def slope_sign(chain, channels: int) -> np.ndarray:
    s = np.ones(channels)
    for op, arr in chain:
        if op in ("mul", "div"):
            s = s * np.sign(np.broadcast_to(np.asarray(arr, dtype=np.float64), (channels,)))
    return s


def per_channel(chain, channels: int):
    return [(op, None if arr is None else
             np.broadcast_to(np.asarray(arr, dtype=np.float64), (channels,)).copy())
            for op, arr in chain]


def affine(chain, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(slope, offset)`` per channel of a chain without ReLU, else ``None``."""
    a, b = np.ones(channels), np.zeros(channels)
    for op, arr in per_channel(chain, channels):
        if op == "relu":
            return None
        if op == "mul":
            a, b = a * arr, b * arr
        elif op == "div":
            a, b = a / arr, b / arr
        elif op == "add":
            b = b + arr
        elif op == "sub":
            b = b - arr
    return a, b


def common_unit(scales, max_bits: int = 30) -> tuple[float, np.ndarray] | None:
    """``(u, k)`` with ``scales[i] == k[i] * u`` exactly, ``k`` positive integers without a
    common factor; ``None`` if some ``k`` needs more than ``max_bits`` bits."""
    fr = [Fraction(float(s)) for s in np.asarray(scales, dtype=np.float64).reshape(-1)]
    den = math.lcm(*(f.denominator for f in fr))
    nums = [f.numerator * (den // f.denominator) for f in fr]
    g = math.gcd(*nums)
    k = [n // g for n in nums]
    if max(k).bit_length() > max_bits:
        return None
    u = Fraction(g, den)
    if Fraction(float(u)) != u:
        return None
    return float(u), np.array(k, dtype=np.int64)
