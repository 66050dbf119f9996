"""ONNX ``Conv`` for the float64 oracle, vectorised: the semantics of ``onnx.reference``'s
``Conv`` (N-d, ``group``, ``pads``/``auto_pad``, ``strides``, ``dilations``, bias) over a strided
window view and one ``einsum`` per call.

The reference implementation loops in Python over the batch and over every group (a depthwise
layer of 512 channels is 512 recursive calls per image), which made the float64 oracle run for
hours on MobileNet and ResNet-50 exports. The arithmetic is the same (float64 products summed;
only the order of the sum differs, far below the 1e-16 relative error the oracle allows for),
and ``tests/compiler/test_oracle_conv.py`` checks it against ``onnx.reference``'s own ``Conv``.
It shares no code with the front end or the golden reference.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["conv"]

_AXES = "hijk"     # spatial output axes (up to 4-d)
_KERN = "pqrs"     # kernel axes


def _pads(auto_pad: str, in_sp, k_eff, strides, pads):
    """Begin/end padding per spatial axis, as ONNX defines ``auto_pad``."""
    nd = len(in_sp)
    if auto_pad in ("", "NOTSET"):
        p = list(pads) if pads is not None else [0] * (2 * nd)
        return p[:nd], p[nd:]
    if auto_pad == "VALID":
        return [0] * nd, [0] * nd
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ValueError(f"Conv: unknown auto_pad {auto_pad!r}")
    begin, end = [], []
    for n, k, s in zip(in_sp, k_eff, strides):
        out = -(-n // s)
        total = max(0, (out - 1) * s + k - n)
        small, big = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin, end


def conv(X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    """``Y = Conv(X, W, B)`` with ONNX's attributes; X is (N, C, *spatial), W is
    (M, C / group, *kernel)."""
    nd = X.ndim - 2
    if nd < 1 or nd > len(_AXES):
        raise ValueError(f"Conv: {nd}-d input is not supported")
    ks = list(W.shape[2:]) if kernel_shape is None else list(kernel_shape)
    dil = [1] * nd if dilations is None else list(dilations)
    st = [1] * nd if strides is None else list(strides)
    n, c = X.shape[:2]
    m, cg = W.shape[:2]
    if c != cg * group or m % group:
        raise ValueError(f"Conv: X {X.shape} and W {W.shape} do not fit group={group}")
    k_eff = [(k - 1) * d + 1 for k, d in zip(ks, dil)]
    begin, end = _pads(auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad,
                       X.shape[2:], k_eff, st, pads)
    xp = np.pad(X, [(0, 0), (0, 0)] + list(zip(begin, end)))
    spatial = tuple(range(2, 2 + nd))
    win = sliding_window_view(xp, k_eff, axis=spatial)           # N, C, O*, Keff*
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in st)
              + tuple(slice(None, None, d) for d in dil)]         # N, C, O*, K*
    out_sp = win.shape[2:2 + nd]
    win = win.reshape((n, group, cg) + out_sp + tuple(ks))
    w = W.reshape((group, m // group, cg) + tuple(ks))
    o, k = _AXES[:nd], _KERN[:nd]
    y = np.einsum(f"ngc{o}{k},gmc{k}->ngm{o}", win, w, optimize=True)
    y = y.reshape((n, m) + out_sp)
    if B is not None:
        y = y + B.reshape((1, m) + (1,) * nd)
    return y.astype(np.result_type(X, W), copy=False)
