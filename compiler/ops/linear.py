"""Weighted ops: ``conv`` (1-D and 2-D, grouped and depthwise) and ``dense``.

``conv``
    ``y[o, p] = bias[o] + sum_{c, t} w[o, c, t] * xpad[g(o) * C/G + c, p * stride + t]`` over
    the output positions ``p`` and kernel taps ``t`` of a 1-D ``(C, L)`` or 2-D ``(C, H, W)``
    input, ``xpad`` padded with 0 (``pads`` = begin pads, then end pads). ``groups`` = G
    divides the C input and O output channels into G groups; output channel ``o`` belongs to
    group ``g(o) = o // (O/G)`` and reads only that group's C/G input channels
    (``groups = C``: a depthwise convolution). Params ``weight`` (O, C/G, *kernel), optional
    ``bias`` (O,).
``dense``
    ``y[o] = bias[o] + sum_f w[o, f] * x[f]``. Params ``weight`` (O, F), optional ``bias``.

Both carry ``weight_bits`` (a signed two's-complement width that holds every weight) and
``weight_format``: ``int`` (plain integers) or ``bipolar`` (every weight is -1 or +1, as
FINN's 1-bit networks binarize them; stored as one bit each, 1 meaning +1).

Golden execution uses BLAS on integer-valued floats only when that is provably exact: the
largest possible partial sum of a dot product (``sum |w| * max |x|``, from the IR's ranges)
is below 2**24 for float32 or 2**53 for float64, so every intermediate sum is an exactly
representable integer whatever the summation order. Beyond 2**53 the sums run in int64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..tensor import IRError, TensorSpec
from .base import REQUIRED, OpDef, Window, as_2d, exact_bits, from_2d

__all__ = ["Conv", "Dense", "acc_range", "exact_dtype"]

WEIGHT_FORMATS = ("int", "bipolar")


def acc_range(weight: np.ndarray, bias: np.ndarray | None, lo: int,
              hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-output-channel range of ``bias + sum w*x`` over inputs ``x`` in ``[lo, hi]``."""
    w = weight.reshape(weight.shape[0], -1).astype(np.int64)
    top = np.where(w > 0, w * hi, w * lo).sum(axis=1)
    bot = np.where(w > 0, w * lo, w * hi).sum(axis=1)
    if bias is not None:
        top, bot = top + bias, bot + bias
    return bot, top


def exact_dtype(weight: np.ndarray, x: TensorSpec):
    """Narrowest float dtype in which every partial dot-product sum is exact, else int64."""
    w = np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1).max(initial=0)
    bound = int(w) * max(abs(x.lo), abs(x.hi), 1)
    if bound < 2**24:
        return np.float32
    if bound < 2**53:
        return np.float64
    return np.int64


class _Weighted(OpDef):
    params = ("weight", "bias")
    required_params = ("weight",)
    weighted = True

    def check_weights(self, layer) -> None:
        wb, fmt = layer.attrs["weight_bits"], layer.attrs["weight_format"]
        if not isinstance(wb, (int, np.integer)) or not 1 <= wb <= 32:
            raise IRError(f"weight_bits={wb!r} is not an integer in 1..32")
        if fmt not in WEIGHT_FORMATS:
            raise IRError(f"weight_format={fmt!r} is not one of {', '.join(WEIGHT_FORMATS)}")
        w = layer.params["weight"]
        if not w.size:
            return
        if fmt == "bipolar":
            if not np.all(np.abs(w) == 1):
                raise IRError("bipolar weights must all be -1 or +1")
            if wb != 2:
                raise IRError(f"bipolar weights take weight_bits=2 (the signed width of +-1), "
                              f"not {wb}")
        elif w.min() < -(1 << (wb - 1)) or w.max() >= (1 << (wb - 1)):
            raise IRError(f"weights do not fit weight_bits={wb}")
        b = layer.params.get("bias")
        if b is not None and b.shape != (w.shape[0],):
            raise IRError(f"bias {b.shape} does not match {w.shape[0]} outputs")

    def param_count(self, layer) -> int:
        return sum(int(v.size) for v in layer.params.values())

    def param_bits(self, layer) -> int:
        w, b = layer.params["weight"], layer.params.get("bias")
        wbits = 1 if layer.attrs["weight_format"] == "bipolar" else layer.attrs["weight_bits"]
        return w.size * wbits + (exact_bits(b) if b is not None else 0)

    def macs(self, layer, out: TensorSpec) -> int:
        return out.size * math.prod(layer.params["weight"].shape[1:])


class Conv(_Weighted):
    name = "conv"
    attrs = {"kernel": REQUIRED, "stride": REQUIRED, "pads": REQUIRED, "groups": 1,
             "weight_bits": REQUIRED, "weight_format": "int"}

    def check_attrs(self, layer) -> None:
        win = Window.of(layer)
        layer.attrs.update(kernel=win.kernel, stride=win.stride, pads=win.pads)
        g = layer.attrs["groups"]
        if not isinstance(g, (int, np.integer)) or isinstance(g, bool) or g < 1:
            raise IRError(f"groups={g!r} is not a positive integer")
        w = layer.params["weight"]
        if w.ndim != 2 + win.rank or tuple(w.shape[2:]) != win.kernel:
            raise IRError(f"weight {w.shape} does not match a {win.rank}-D kernel {win.kernel}")
        if w.shape[0] % g:
            raise IRError(f"{w.shape[0]} output channels are not divisible into {g} groups")
        self.check_weights(layer)

    def infer(self, layer, ins):
        x = ins[0]
        win = Window.of(layer)
        if len(x.shape) != 1 + win.rank:
            raise IRError(f"a {win.rank}-D convolution expects a "
                          f"{'(C,L)' if win.rank == 1 else '(C,H,W)'} input, got {x.shape}")
        w, b, g = layer.params["weight"], layer.params.get("bias"), layer.attrs["groups"]
        if x.shape[0] % g or w.shape[1] != x.shape[0] // g:
            raise IRError(f"weight {w.shape} does not match input channels {x.shape[0]} in "
                          f"{g} group(s)")
        spatial = win.out_shape(x.shape[1:])
        # zero padding puts 0 into windows: widen the input range to hold it
        lo, hi = acc_range(w, b, min(x.lo, 0), max(x.hi, 0))
        return TensorSpec((w.shape[0], *spatial), lo.min(), hi.max())

    def run(self, layer, xs, specs):
        w, b, G = layer.params["weight"], layer.params.get("bias"), layer.attrs["groups"]
        win = Window.of(layer)
        w2 = as_2d(w, win.rank) if win.rank == 1 else w         # (O, C/G, KH, KW)
        win2 = win.as_2d()
        x = win2.pad(as_2d(xs[0], win.rank), 0)
        N, C = x.shape[:2]
        O, Cg, KH, KW = w2.shape
        Og = O // G
        sh, sw = win2.stride
        OH, OW = (x.shape[2] - KH) // sh + 1, (x.shape[3] - KW) // sw + 1
        if Cg == 1:
            # depthwise (with channel multiplier Og): one broadcast multiply-add per tap
            src = np.repeat(x, Og, axis=1) if Og > 1 else x
            y = np.zeros((N, O, OH, OW), dtype=np.int64)
            for i in range(KH):
                for j in range(KW):
                    tap = src[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]
                    y += tap * w2[:, 0, i, j].reshape(1, O, 1, 1)
        else:
            dt = exact_dtype(w, specs[0])
            win_v = sliding_window_view(x.astype(dt, copy=False), (KH, KW),
                                        axis=(2, 3))[:, :, ::sh, ::sw]     # N C OH OW KH KW
            if G == 1:
                y = np.tensordot(win_v, w2.astype(dt), axes=([1, 4, 5], [1, 2, 3]))  # N OH OW O
                y = np.ascontiguousarray(y.transpose(0, 3, 1, 2)).astype(np.int64)
            else:
                v = win_v.reshape(N, G, Cg, OH, OW, KH, KW).transpose(1, 0, 3, 4, 2, 5, 6)
                v = v.reshape(G, N * OH * OW, Cg * KH * KW)
                wg = w2.astype(dt).reshape(G, Og, Cg * KH * KW).transpose(0, 2, 1)
                y = np.matmul(v, wg).reshape(G, N, OH, OW, Og).transpose(1, 0, 4, 2, 3)
                y = np.ascontiguousarray(y).reshape(N, O, OH, OW).astype(np.int64)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return from_2d(y, win.rank)


class Dense(_Weighted):
    name = "dense"
    attrs = {"weight_bits": REQUIRED, "weight_format": "int"}

    def check_attrs(self, layer) -> None:
        if layer.params["weight"].ndim != 2:
            raise IRError(f"weight {layer.params['weight'].shape} is not a matrix")
        self.check_weights(layer)

    def infer(self, layer, ins):
        x = ins[0]
        w, b = layer.params["weight"], layer.params.get("bias")
        if len(x.shape) != 1:
            raise IRError(f"expects a flat input, got {x.shape}")
        if w.shape[1] != x.shape[0]:
            raise IRError(f"weight {w.shape} does not match {x.shape[0]} inputs")
        lo, hi = acc_range(w, b, x.lo, x.hi)
        return TensorSpec((w.shape[0],), lo.min(), hi.max())

    def run(self, layer, xs, specs):
        w, b = layer.params["weight"], layer.params.get("bias")
        dt = exact_dtype(w, specs[0])
        y = (xs[0].astype(dt, copy=False) @ w.T.astype(dt)).astype(np.int64)
        if b is not None:
            y += b
        return y
