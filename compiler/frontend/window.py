"""Handlers of the window ops: ``MaxPool``, ``AveragePool``, ``GlobalAveragePool`` and a
spatial ``ReduceMean`` (1-D and 2-D).

An average pool becomes an ``avgpool`` layer holding the window sum; the ``Trunc`` that
Brevitas puts after it (:mod:`lcp.frontend.quant`) sets its shift, rounding and clip.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import attributes, node_error
from .values import Act

__all__ = ["HANDLERS"]


def _window_attrs(lw, node, rank: int, kernel=None):
    attrs = attributes(node)
    if attrs.get("ceil_mode", 0):
        raise node_error(node, "ceil_mode=1 is not supported")
    if any(d != 1 for d in attrs.get("dilations", [1] * rank)):
        raise node_error(node, "dilations are not supported")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise node_error(node, "auto_pad is not supported")
    if attrs.get("storage_order", 0):
        raise node_error(node, "storage_order=1 is not supported")
    k = tuple(kernel or attrs["kernel_shape"])
    if len(k) != rank or rank not in (1, 2):
        raise node_error(node, f"a {len(k)}-D window on a {rank}-D input is not supported "
                               f"(1-D and 2-D windows are)")
    pads = tuple(attrs.get("pads", [0] * (2 * rank)))
    return {"kernel": k, "stride": tuple(attrs.get("strides", [1] * rank)), "pads": pads}, attrs


def _rank(lw, node, a: Act) -> int:
    r = len(lw.specs[a.tensor].shape) - 1
    if r not in (1, 2):
        raise node_error(node, f"expects a (C,L) or (C,H,W) input, got "
                               f"{lw.specs[a.tensor].shape}")
    return r


def op_maxpool(lw, node):
    if len(node.output) > 1 and node.output[1]:
        raise node_error(node, "the Indices output is not supported")
    a = lw.act(node, node.input[0])
    a = lw.fold_negative(node, a)
    w, _ = _window_attrs(lw, node, _rank(lw, node, a))
    layer = lw.emit("maxpool", [a.tensor], w)
    lw.values[node.output[0]] = Act(layer.output, list(a.chain), a.producer,
                                    a.foldable and lw.exclusive(node))


def _avgpool(lw, node, kernel, window):
    a, s = lw.scaled_act(node, node.input[0])
    spec = lw.specs[a.tensor]
    n = math.prod(kernel)
    if window.get("count_include_pad", 0) == 0 and any(window["pads"]):
        raise node_error(node, "count_include_pad=0 with padding is not supported")
    attrs = {k: window[k] for k in ("kernel", "stride", "pads")}
    attrs.update(shift=0, rounding="floor", out_lo=n * min(spec.lo, 0),
                 out_hi=n * max(spec.hi, 0))
    layer = lw.emit("avgpool", [a.tensor], attrs)
    lw.values[node.output[0]] = Act(layer.output, [("mul", s.astype(np.float64) / n)],
                                    avgpool=layer)


def op_averagepool(lw, node):
    a = lw.act(node, node.input[0])
    w, attrs = _window_attrs(lw, node, _rank(lw, node, a))
    w["count_include_pad"] = attrs.get("count_include_pad", 0)
    _avgpool(lw, node, w["kernel"], w)


def op_global_averagepool(lw, node):
    a = lw.act(node, node.input[0])
    r = _rank(lw, node, a)
    k = lw.specs[a.tensor].shape[1:]
    _avgpool(lw, node, k, {"kernel": k, "stride": (1,) * r, "pads": (0,) * (2 * r),
                           "count_include_pad": 1})


def op_reducemean(lw, node):
    """A mean over all spatial axes (keepdims) is a global average pool."""
    attrs = attributes(node)
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1:
        axes = lw.const(node, node.input[1]).tolist()
    r = _rank(lw, node, lw.act(node, node.input[0]))
    n = r + 2
    if sorted(int(a) % n for a in (axes or [])) != list(range(2, n)) or \
            not attrs.get("keepdims", 1):
        raise node_error(node, f"only a mean over the spatial axes with keepdims is "
                               f"supported (axes={axes})")
    op_global_averagepool(lw, node)


HANDLERS = {"MaxPool": op_maxpool, "AveragePool": op_averagepool,
            "GlobalAveragePool": op_global_averagepool, "ReduceMean": op_reducemean}
