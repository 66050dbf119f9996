"""Handlers of the data-movement ops: ``Concat``, ``Flatten``, ``Reshape``, ``Transpose``, and a
channel ``Slice`` or ``Split`` (what a branch sends at an exchange point).

A concatenation of activations quantized at different scales keeps one scale per channel in
its chain: a ``Quant`` after it requantizes each input exactly to the output's integers, a
weighted layer aligns the channels exactly, the output dequantization carries them.
"""

from __future__ import annotations

import numpy as np

from .errors import attributes, node_error
from .values import Act, QConst, Raw, affine, channel_scales, per_channel

__all__ = ["HANDLERS"]


def op_concat(lw, node):
    attrs = attributes(node)
    acts = [lw.act(node, t) for t in node.input]
    rank = len(lw.specs[acts[0].tensor].shape) + 1
    if attrs.get("axis") not in (1, 1 - rank):
        raise node_error(node, "only concatenation along channels (axis 1) is supported")
    chans = [lw.specs[a.tensor].shape[0] for a in acts]
    scales = [channel_scales(a) for a in acts]
    if all(s is not None for s in scales):
        per = np.concatenate([np.broadcast_to(s, (c,)) for s, c in zip(scales, chans)])
        one = np.unique(per).size == 1
        layer = lw.emit("concat", [a.tensor for a in acts],
                        **({"scale": float(per[0])} if one else {}))
        chain = [("mul", np.float64(per[0]) if one else per)]
        lw.values[node.output[0]] = Act(layer.output, chain)
        return
    layer = lw.emit("concat", [a.tensor for a in acts])
    kinds = [[op for op, _ in a.chain] for a in acts]
    if all(k == kinds[0] for k in kinds):
        per = [per_channel(a.chain, c) for a, c in zip(acts, chans)]
        chain = [(op, None if op == "relu" else np.concatenate([p[i][1] for p in per]))
                 for i, (op, _) in enumerate(per[0])]
    else:
        aff = [affine(a.chain, c) for a, c in zip(acts, chans)]
        if any(x is None for x in aff):
            raise node_error(node, "inputs carry different pending float ops with a ReLU; "
                                   "quantize each input before concatenating")
        chain = [("mul", np.concatenate([s for s, _ in aff])),
                 ("add", np.concatenate([o for _, o in aff]))]
    lw.values[node.output[0]] = Act(layer.output, chain)


def _flatten(lw, node, a: Act):
    spec = lw.specs[a.tensor]
    if len(spec.shape) == 1:
        lw.values[node.output[0]] = a
        return
    layer = lw.emit("flatten", [a.tensor])
    rep = spec.size // spec.shape[0]
    chain = [(op, arr if arr is None or np.ndim(arr) == 0 else np.repeat(arr, rep))
             for op, arr in a.chain]
    # a flattened accumulator can no longer be folded channel-wise
    lw.values[node.output[0]] = Act(layer.output, chain, None, False)


def op_flatten(lw, node):
    if attributes(node).get("axis", 1) != 1:
        raise node_error(node, "only axis=1 is supported")
    v = lw.values.get(node.input[0])
    if isinstance(v, Raw):
        lw.values[node.output[0]] = Raw(v.shape, list(v.pre), True)
        return
    _flatten(lw, node, lw.act(node, node.input[0]))


def op_reshape(lw, node):
    v = lw.values.get(node.input[0])
    out_shape = lw.mw.get_tensor_shape(node.output[0])
    if isinstance(v, Raw):
        size = int(np.prod(v.shape))
        if out_shape is None or len(out_shape) != 2 or out_shape[1] != size:
            raise node_error(node, f"only a flatten to (N, {size}) is supported, got "
                                   f"{out_shape}")
        lw.values[node.output[0]] = Raw(v.shape, list(v.pre), True)
        return
    a = lw.act(node, node.input[0])
    size = lw.specs[a.tensor].size
    if out_shape is None or len(out_shape) != 2 or out_shape[1] != size:
        raise node_error(node, f"only a flatten to (N, {size}) is supported, got {out_shape}")
    _flatten(lw, node, a)


def _channel_slice(lw, node, a: Act, start: int, stop: int, out: str):
    C = lw.specs[a.tensor].shape[0]
    start, stop = max(0, min(start, C)), max(0, min(stop, C))
    if start == 0 and stop == C:
        lw.values[out] = a
        return
    if start >= stop:
        raise node_error(node, f"an empty channel range {start}..{stop}")
    layer = lw.emit("slice", [a.tensor], {"start": start, "stop": stop},
                    scale=lw.specs[a.tensor].scale)
    chain = [(op, arr if arr is None or np.ndim(arr) == 0 else arr[start:stop])
             for op, arr in a.chain]
    lw.values[out] = Act(layer.output, chain)


def _axis(node, axis: int, rank: int) -> None:
    if axis % rank != 1:
        raise node_error(node, f"only slicing along channels (axis 1) is supported, not axis "
                               f"{axis}")


def op_slice(lw, node):
    a = lw.act(node, node.input[0])
    rank = len(lw.specs[a.tensor].shape) + 1
    starts, ends = (lw.const(node, t).reshape(-1) for t in node.input[1:3])
    axes = lw.const(node, node.input[3]).reshape(-1) if len(node.input) > 3 and node.input[3] \
        else np.arange(len(starts))
    steps = lw.const(node, node.input[4]).reshape(-1) if len(node.input) > 4 and \
        node.input[4] else np.ones(len(starts), dtype=np.int64)
    if len(starts) != 1 or int(steps[0]) != 1:
        raise node_error(node, "only a contiguous slice of one axis is supported")
    _axis(node, int(axes[0]), rank)
    _channel_slice(lw, node, a, int(starts[0]), int(min(ends[0], 1 << 40)), node.output[0])


def op_split(lw, node):
    a = lw.act(node, node.input[0])
    rank = len(lw.specs[a.tensor].shape) + 1
    attrs = attributes(node)
    _axis(node, int(attrs.get("axis", 0)), rank)
    C = lw.specs[a.tensor].shape[0]
    if len(node.input) > 1 and node.input[1]:
        sizes = [int(v) for v in lw.const(node, node.input[1]).reshape(-1)]
    elif "split" in attrs:
        sizes = [int(v) for v in attrs["split"]]
    else:
        n = len(node.output)
        sizes = [C // n] * n
    start = 0
    for out, size in zip(node.output, sizes):
        _channel_slice(lw, node, a, start, start + size, out)
        start += size


def op_transpose(lw, node):
    """Only of quantized weights (Brevitas exports ``Quant -> Transpose -> MatMul``)."""
    v = lw.values.get(node.input[0])
    if not isinstance(v, QConst):
        raise node_error(node, "only a transpose of quantized weights is supported")
    perm = attributes(node).get("perm", list(range(v.q.ndim))[::-1])
    scale = v.scale.transpose(perm) if v.scale.ndim == v.q.ndim else v.scale
    lw.values[node.output[0]] = QConst(v.q.transpose(perm), scale, v.bits, v.node, v.bipolar,
                                       v.source)


HANDLERS = {"Concat": op_concat, "Flatten": op_flatten, "Reshape": op_reshape,
            "Transpose": op_transpose, "Slice": op_slice, "Split": op_split}
