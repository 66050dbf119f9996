"""Elementwise ops: ``threshold`` (requantization), ``relu`` and ``add``.

``threshold``
    ``y[c, ...] = out_lo + #{k : x[c, ...] >= T[c, k]}`` with ``thresholds`` (C or 1, L) sorted
    ascending per row, ``L = out_hi - out_lo``. This is requantization (scale, bias, batch
    norm, ReLU, rounding and clipping) as exact integer decisions. Two equal thresholds make
    the output jump by two: ``out_lo = -1, out_hi = 1`` with ``T[c, 0] == T[c, 1]`` is a
    binarization to -1/+1 (a bipolar output). Optional attribute ``scale``: the real value of
    one output step (informative).
``relu``
    ``max(x, 0)``.
``add``
    ``y = mul[0] * a + mul[1] * b`` elementwise, ``mul`` positive integers (default 1, 1).
    Operands quantized at different scales ``s_a`` and ``s_b`` are aligned exactly: with
    ``s_a / s_b = p / q`` in lowest terms (float32 scales are dyadic rationals, so the ratio
    is exact), ``s_a * a + s_b * b = u * (p * a + q * b)`` for the common unit
    ``u = s_a / p = s_b / q``; no value is rounded.
"""

from __future__ import annotations

import numpy as np

from ..tensor import IRError, TensorSpec
from .base import REQUIRED, OpDef

__all__ = ["Threshold", "Relu", "Add"]


class Threshold(OpDef):
    name = "threshold"
    params = ("thresholds",)
    required_params = ("thresholds",)
    attrs = {"out_lo": REQUIRED, "out_hi": REQUIRED, "scale": None}
    narrow_output = True

    def check_attrs(self, layer) -> None:
        lo, hi = layer.attrs["out_lo"], layer.attrs["out_hi"]
        if not all(isinstance(v, (int, np.integer)) for v in (lo, hi)) or lo > hi:
            raise IRError(f"out_lo={lo!r}, out_hi={hi!r} is not an integer range")
        t = layer.params["thresholds"]
        if t.ndim != 2 or t.shape[1] != hi - lo:
            raise IRError(f"thresholds {t.shape} do not have {hi - lo} steps per row")
        if t.shape[1] > 1 and np.any(np.diff(t, axis=1) < 0):
            raise IRError("thresholds are not sorted ascending")

    @staticmethod
    def is_bipolar(layer) -> bool:
        t = layer.params["thresholds"]
        return (layer.attrs["out_lo"], layer.attrs["out_hi"]) == (-1, 1) and \
            bool(np.all(t[:, 0] == t[:, 1]))

    def infer(self, layer, ins):
        x, t = ins[0], layer.params["thresholds"]
        if t.shape[0] not in (1, x.shape[0]):
            raise IRError(f"thresholds {t.shape} do not match {x.shape[0]} channels")
        return TensorSpec(x.shape, layer.attrs["out_lo"], layer.attrs["out_hi"],
                          layer.attrs.get("scale"), self.is_bipolar(layer))

    def run(self, layer, xs, specs):
        x, t, lo = xs[0], layer.params["thresholds"], layer.attrs["out_lo"]
        if t.shape[0] == 1:
            return lo + np.searchsorted(t[0], x, side="right")
        y = np.empty_like(x)
        for c in range(x.shape[1]):
            y[:, c] = np.searchsorted(t[c], x[:, c], side="right")
        return y + lo


class Relu(OpDef):
    name = "relu"
    narrow_output = True

    def infer(self, layer, ins):
        x = ins[0]
        return TensorSpec(x.shape, max(x.lo, 0), max(x.hi, 0), x.scale)

    def run(self, layer, xs, specs):
        return np.maximum(xs[0], 0)


class Add(OpDef):
    name = "add"
    n_inputs = 2
    attrs = {"mul": (1, 1)}

    def check_attrs(self, layer) -> None:
        m = tuple(layer.attrs["mul"])
        if len(m) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in m):
            raise IRError(f"mul={layer.attrs['mul']!r} is not two positive integers")
        layer.attrs["mul"] = tuple(int(v) for v in m)

    def infer(self, layer, ins):
        a, b = ins
        ka, kb = layer.attrs["mul"]
        if a.shape != b.shape:
            raise IRError(f"operand shapes differ: {a.shape} vs {b.shape}")
        scale = a.scale if (ka, kb) == (1, 1) else None
        return TensorSpec(a.shape, ka * a.lo + kb * b.lo, ka * a.hi + kb * b.hi, scale)

    def run(self, layer, xs, specs):
        ka, kb = layer.attrs["mul"]
        if (ka, kb) == (1, 1):
            return xs[0] + xs[1]
        return ka * xs[0] + kb * xs[1]
