"""Handlers of the weighted ops: ``Conv`` (1-D, 2-D, grouped, depthwise), ``Gemm``, ``MatMul``.

The input must be a quantized activation: one scale, or one positive scale per channel (a
concatenation of differently quantized tensors). Per-channel scales are aligned exactly
(:func:`~lcp.frontend.values.common_unit`): each input channel's integer multiplier goes into
the weights, so the accumulator has one scale per output channel and nothing is rounded.
"""

from __future__ import annotations

import numpy as np

from ..ir import bits_for_range
from .errors import attributes, check_bits, node_error
from .values import Act, Const, QConst, common_unit

__all__ = ["HANDLERS"]


def _weights(lw, node, name) -> QConst:
    w = lw.values.get(name)
    if isinstance(w, QConst):
        return w
    if isinstance(w, Const):
        raise node_error(node, f"float weights {name!r} without a Quant node; quantize them "
                               f"(e.g. Brevitas QuantConv2d/QuantLinear)")
    raise node_error(node, f"weights {name!r} must be a quantized constant")


def _input_alignment(node, s_x: np.ndarray, channels: int, groups: int):
    """``(unit, k)``: input channel ``c`` of group ``g`` has the scale ``k[c] * unit[g]``
    (``k`` None: all 1). Within a group the scales are aligned exactly; a depthwise layer
    (one channel per group) needs no alignment at all."""
    s = np.broadcast_to(np.asarray(s_x, dtype=np.float64).reshape(-1), (channels,)) \
        if s_x.size in (1, channels) else None
    if s is None:
        raise node_error(node, f"{s_x.size} input scales for {channels} input channels")
    per_group = s.reshape(groups, channels // groups)
    units = np.empty(groups)
    k = np.ones((groups, channels // groups), dtype=np.int64)
    for g, sc in enumerate(per_group):
        if np.all(sc == sc[0]):
            units[g] = sc[0]
            continue
        cu = common_unit(sc)
        if cu is None:
            raise node_error(node, "the input channels' scales have no common unit within 30 "
                                   "bits; requantize the input with one quantizer")
        units[g], k[g] = cu
    return units, (None if np.all(k == 1) else k.reshape(-1))


def linear(lw, node, x: Act, s_x: np.ndarray, w: QConst, bias_name: str | None,
           op: str, attrs: dict, weight: np.ndarray, in_axis_groups: int = 1):
    """Emit a ``conv``/``dense`` layer of integer ``weight`` (O, C/G, ...) on ``x``."""
    O = weight.shape[0]
    check_bits(node, w.bits, "weight")
    s_w = np.broadcast_to(w.scale.astype(np.float64).reshape(-1), (O,)) \
        if w.scale.size in (1, O) else None
    if s_w is None:
        raise node_error(node, f"weight scale of shape {w.scale.shape} is neither per-tensor "
                               f"nor per-output-channel")
    C = lw.specs[x.tensor].shape[0]
    G, Cg = in_axis_groups, weight.shape[1]
    units, k = _input_alignment(node, s_x, C, G)
    group_of = np.arange(O) // (O // G)
    weight = weight.astype(np.int64).copy()
    fmt = "bipolar" if w.bipolar else "int"
    if k is not None:
        kk = k.reshape(G, Cg)[group_of]                             # (O, C/G)
        weight = weight * kk.reshape(kk.shape + (1,) * (weight.ndim - 2))
        fmt = "int"
    if fmt == "bipolar":
        wbits = 2
    else:
        need = bits_for_range(min(int(weight.min()), -1), max(int(weight.max()), 0))[0] \
            if weight.size else 1
        wbits = max(w.bits, need) if k is None else need
    s_acc = units[group_of] * s_w       # exact in float64 (two float32 mantissas)
    params = {"weight": weight}
    offset = np.zeros(O)
    if bias_name:
        b = lw.values.get(bias_name)
        if isinstance(b, QConst):
            qb = b.q.reshape(-1).astype(np.int64)
            sb = np.broadcast_to(b.scale.astype(np.float64).reshape(-1), (O,))
            if np.all(np.abs(sb / s_acc - 1) < 2.0**-20):
                params["bias"] = qb
                offset = qb * sb - qb * s_acc
            else:
                offset = qb * sb
        elif isinstance(b, Const):
            offset = np.broadcast_to(b.value.astype(np.float64).reshape(-1), (O,)).copy()
        else:
            raise node_error(node, f"bias {bias_name!r} must be a constant")
    attrs = dict(attrs, weight_bits=wbits, weight_format=fmt)
    layer = lw.emit(op, [x.tensor], attrs, params)
    if w.source:
        lw.weights[layer.name] = w.source
    chain = [("mul", s_acc.copy())]
    if np.any(offset != 0):
        chain.append(("add", offset))
    lw.values[node.output[0]] = Act(layer.output, chain, layer, lw.exclusive(node))


def op_conv(lw, node):
    attrs = attributes(node)
    x, s_x = lw.scaled_act(node, node.input[0])
    w = _weights(lw, node, node.input[1])
    if w.q.ndim not in (3, 4):
        raise node_error(node, f"only 1-D and 2-D convolutions are supported (weight "
                               f"{w.q.shape})")
    r = w.q.ndim - 2
    if any(d != 1 for d in attrs.get("dilations", [1] * r)):
        raise node_error(node, f"dilations={attrs['dilations']} are not supported")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise node_error(node, f"auto_pad={attrs['auto_pad']!r} is not supported")
    groups = int(attrs.get("group", 1))
    C = lw.specs[x.tensor].shape[0]
    if groups < 1 or C % groups or w.q.shape[0] % groups or w.q.shape[1] * groups != C:
        raise node_error(node, f"group={groups} does not divide {C} input and "
                               f"{w.q.shape[0]} output channels (weight {w.q.shape})")
    kernel = tuple(attrs.get("kernel_shape", w.q.shape[2:]))
    pads = tuple(attrs.get("pads", [0] * (2 * r)))
    stride = tuple(attrs.get("strides", [1] * r))
    linear(lw, node, x, s_x, w, node.input[2] if len(node.input) > 2 else None, "conv",
           {"kernel": kernel, "stride": stride, "pads": pads, "groups": groups}, w.q,
           in_axis_groups=groups)


def op_gemm(lw, node):
    attrs = attributes(node)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise node_error(node, "only transA=0, alpha=1, beta=1 are supported")
    x, s_x = lw.scaled_act(node, node.input[0])
    w = _weights(lw, node, node.input[1])
    weight = w.q if attrs.get("transB", 0) else w.q.T
    if attrs.get("transB", 0) == 0 and w.scale.ndim == 2:
        w = QConst(w.q, w.scale.T, w.bits, w.node, w.bipolar, w.source)
    linear(lw, node, x, s_x, w, node.input[2] if len(node.input) > 2 else None, "dense", {},
           weight)


def op_matmul(lw, node):
    x, s_x = lw.scaled_act(node, node.input[0])
    w = _weights(lw, node, node.input[1])
    if w.q.ndim != 2:
        raise node_error(node, "only matrix weights are supported")
    w = QConst(w.q, w.scale.T if w.scale.ndim == 2 else w.scale, w.bits, w.node, w.bipolar,
               w.source)
    linear(lw, node, x, s_x, w, None, "dense", {}, w.q.T)


HANDLERS = {"Conv": op_conv, "Gemm": op_gemm, "MatMul": op_matmul}
