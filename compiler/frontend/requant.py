"""Requantization as thresholds: the integers an activation quantizer gives for every integer
of its input, found as exact integer decision points.

The float steps between an integer tensor and a quantizer (scale, bias, batch norm, ReLU,
elementwise float ops) form a chain; composed with the quantizer they are a monotone
non-decreasing function ``f`` of the integer input (once negative slopes are folded into the
producer). :func:`thresholds` finds, per channel, the smallest integer ``x`` with
``f(x) >= k`` for every output level ``k`` by bisection on ``f`` evaluated in float64, in the
order the ONNX ops compute it, so the integers agree with the float64 oracle.
"""

from __future__ import annotations

import numpy as np

from ..ir import round_float
from .values import eval_chain, per_channel

__all__ = ["quantizer", "bipolar_quantizer", "thresholds"]


def quantizer(chain, channels: int, s_out, qlo: int, qhi: int, rounding: str):
    """``f(x)``: chain, then QONNX ``Quant`` (divide by ``s_out``, one scale or one per
    channel, clip, round)."""
    pc = per_channel(chain, channels)
    s = np.asarray(s_out, dtype=np.float64).reshape(-1)
    s = s.reshape(channels, 1) if s.size > 1 else s[0]

    def f(x):  # x: float64 (C, L) integers -> quantized integers, as float
        v = eval_chain(pc, x, (channels, 1)) / s
        return round_float(np.clip(v, qlo, qhi), rounding)
    return f


def bipolar_quantizer(chain, channels: int):
    """``f(x)``: chain, then QONNX ``BipolarQuant`` (+1 where the value is >= 0, else -1)."""
    pc = per_channel(chain, channels)

    def f(x):
        return np.where(eval_chain(pc, x, (channels, 1)) >= 0, 1.0, -1.0)
    return f


def thresholds(f, channels: int, lo: int, hi: int) -> tuple[np.ndarray, int, int]:
    """``(T, out_lo, out_hi)`` with ``f(x) = out_lo + #{k : x >= T[c, k]}`` for every integer
    ``x`` in ``[lo, hi]``; ``f`` must be non-decreasing. ``T`` is one row when every channel
    has the same thresholds. A threshold of ``hi + 1`` is never reached."""
    C = channels
    f_lo = f(np.full((C, 1), float(lo)))[:, 0]
    f_hi = f(np.full((C, 1), float(hi)))[:, 0]
    out_lo, out_hi = int(f_lo.min()), int(f_hi.max())
    L = out_hi - out_lo
    if L == 0:
        return np.zeros((1, 0), dtype=np.int64), out_lo, out_hi
    k = out_lo + np.arange(1, L + 1, dtype=np.float64)[None, :]      # (1, L)
    left = np.full((C, L), lo, dtype=np.int64)        # f(left) may already be >= k
    right = np.full((C, L), hi + 1, dtype=np.int64)   # hi + 1 means "never"
    # invariant: answer in [left, right]; f(right) >= k or right == hi+1
    ok_left = f(left.astype(np.float64)) >= k
    right = np.where(ok_left, left, right)
    while True:
        active = left < right
        if not active.any():
            break
        mid = (left + right) // 2
        good = f(mid.astype(np.float64)) >= k
        right = np.where(active & good, mid, right)
        left = np.where(active & ~good, mid + 1, left)
    t = right
    if np.all(t == t[:1]):
        t = t[:1]
    return t, out_lo, out_hi
