"""Shape and integer-range inference for IR layers.

:func:`infer_layer` gives the output :class:`~lcp.ir.TensorSpec` of a layer from its input specs:
the exact per-image shape and a value range that every input in range stays inside. For
``conv`` and ``dense`` the range is exact for the given weights (the accumulator width that
hardware must provide), in the spirit of FINN's minimal accumulator width.
"""

from __future__ import annotations

import numpy as np

from .ir import IRError, Layer, TensorSpec

__all__ = ["infer_layer", "pool_out", "acc_range"]


def pool_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int) -> int:
    """Output length of a window op (floor mode)."""
    n = (size + pad_lo + pad_hi - kernel) // stride + 1
    if n <= 0:
        raise IRError(f"window {kernel} with stride {stride} does not fit input length {size}")
    return n


def acc_range(weight: np.ndarray, bias: np.ndarray | None, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-output-channel range of ``bias + sum w*x`` over inputs ``x`` in ``[lo, hi]``."""
    w = weight.reshape(weight.shape[0], -1).astype(np.int64)
    top = np.where(w > 0, w * hi, w * lo).sum(axis=1)
    bot = np.where(w > 0, w * lo, w * hi).sum(axis=1)
    if bias is not None:
        top, bot = top + bias, bot + bias
    return bot, top


def _window_attrs(layer: Layer):
    kh, kw = layer.attrs["kernel"]
    sh, sw = layer.attrs["stride"]
    pt, pl, pb, pr = layer.attrs["pads"]
    return kh, kw, sh, sw, pt, pl, pb, pr


def infer_layer(layer: Layer, ins: list[TensorSpec]) -> TensorSpec:
    """Output spec of ``layer`` for inputs ``ins``; :class:`IRError` names the layer on a
    shape that does not fit."""
    op, x = layer.op, ins[0]
    try:
        if op in ("conv", "dense"):
            wb = layer.attrs["weight_bits"]
            w = layer.weight
            if w.size and (w.min() < -(1 << (wb - 1)) or w.max() >= (1 << (wb - 1))):
                raise IRError(f"weights do not fit weight_bits={wb}")
        if op in ("conv", "maxpool", "avgpool"):
            if len(x.shape) != 3:
                raise IRError(f"expects a (C,H,W) input, got {x.shape}")
            kh, kw, sh, sw, pt, pl, pb, pr = _window_attrs(layer)
            oh = pool_out(x.shape[1], kh, sh, pt, pb)
            ow = pool_out(x.shape[2], kw, sw, pl, pr)
            if op == "conv":
                w, b = layer.weight, layer.bias
                if w.ndim != 4 or w.shape[1:] != (x.shape[0], kh, kw):
                    raise IRError(f"weight {w.shape} does not match input channels "
                                  f"{x.shape[0]} and kernel {kh}x{kw}")
                if b is not None and b.shape != (w.shape[0],):
                    raise IRError(f"bias {b.shape} does not match {w.shape[0]} outputs")
                # zero padding puts 0 into windows: widen the input range to hold it
                lo, hi = acc_range(w, b, min(x.lo, 0), max(x.hi, 0))
                return TensorSpec((w.shape[0], oh, ow), lo.min(), hi.max())
            if op == "maxpool":
                return TensorSpec((x.shape[0], oh, ow), x.lo, x.hi, x.scale)
            return TensorSpec((x.shape[0], oh, ow), layer.attrs["out_lo"], layer.attrs["out_hi"])
        if op == "dense":
            w, b = layer.weight, layer.bias
            if len(x.shape) != 1:
                raise IRError(f"expects a flat input, got {x.shape}")
            if w.ndim != 2 or w.shape[1] != x.shape[0]:
                raise IRError(f"weight {w.shape} does not match {x.shape[0]} inputs")
            if b is not None and b.shape != (w.shape[0],):
                raise IRError(f"bias {b.shape} does not match {w.shape[0]} outputs")
            lo, hi = acc_range(w, b, x.lo, x.hi)
            return TensorSpec((w.shape[0],), lo.min(), hi.max())
        if op == "threshold":
            t = layer.params["thresholds"]
            lo_, hi_ = layer.attrs["out_lo"], layer.attrs["out_hi"]
            if t.ndim != 2 or t.shape[0] not in (1, x.shape[0]) or t.shape[1] != hi_ - lo_:
                raise IRError(f"thresholds {t.shape} do not match {x.shape[0]} channels and "
                              f"{hi_ - lo_} steps")
            if t.shape[1] > 1 and np.any(np.diff(t, axis=1) < 0):
                raise IRError("thresholds are not sorted ascending")
            return TensorSpec(x.shape, lo_, hi_, layer.attrs.get("scale"))
        if op == "add":
            a, b = ins
            if a.shape != b.shape:
                raise IRError(f"operand shapes differ: {a.shape} vs {b.shape}")
            return TensorSpec(a.shape, a.lo + b.lo, a.hi + b.hi, a.scale)
        if op == "concat":
            if any(t.shape[1:] != x.shape[1:] for t in ins):
                raise IRError(f"inputs differ beyond the channel axis: {[t.shape for t in ins]}")
            return TensorSpec((sum(t.shape[0] for t in ins),) + x.shape[1:],
                              min(t.lo for t in ins), max(t.hi for t in ins), x.scale)
        if op == "flatten":
            return TensorSpec((x.size,), x.lo, x.hi, x.scale)
        if op == "relu":
            return TensorSpec(x.shape, max(x.lo, 0), max(x.hi, 0), x.scale)
    except IRError as e:
        raise IRError(f"layer {layer.name!r} ({op}): {e}") from None
    raise IRError(f"layer {layer.name!r}: no shape rule for op {op!r}")
