"""Handlers of the elementwise ops: ``Add``, ``Sub``, ``Mul``, ``Div``, ``Relu``,
``BatchNormalization``, ``Identity``, ``Dropout``.

A float op with a constant operand (per tensor or per channel) joins the pending float chain
of an activation (folded into the next requantization or into the output dequantization, e.g.
Brevitas' ``TensorNorm``), or, on the float model input before its quantizer, the input's
pre-processing (bnn_pynq's ``2 * x - 1``). The sum of two activations is an ``add`` layer;
operands at different scales are aligned exactly (see :mod:`lcp.ops.pointwise`).
"""

from __future__ import annotations

import numpy as np

from .errors import attributes, node_error
from .values import Act, Const, Raw, common_unit, pure_scale

__all__ = ["HANDLERS"]

#: Float op (ONNX type) -> chain op.
_CHAIN_OPS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


def _per_channel_const(node, k: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A constant operand as a chain array: a 0-d scalar or one value per channel."""
    k = np.asarray(k, dtype=np.float64)
    if k.size == 1:
        return k.reshape(())
    full = (1,) + tuple(shape)
    try:
        kb = np.broadcast_to(k, full)
    except ValueError:
        raise node_error(node, f"constant of shape {k.shape} does not broadcast over the "
                               f"activation (N, {', '.join(map(str, shape))})") from None
    v = kb[0].reshape(shape[0], -1)
    if not np.all(v == v[:, :1]):
        raise node_error(node, f"constant of shape {k.shape} varies within a channel; only "
                               f"per-tensor and per-channel constants are supported")
    return v[:, 0].copy()


def _raw_const(node, raw: Raw, k: np.ndarray) -> np.ndarray:
    """A constant operand of a float input step, broadcast over one image of ``raw``."""
    k = np.asarray(k, dtype=np.float32)
    if k.size == 1:
        return k.reshape(())
    shape = raw.shape
    if raw.flat:
        size = int(np.prod(shape))
        if k.size != size:
            raise node_error(node, f"constant of shape {k.shape} does not match the flattened "
                                   f"input ({size} values)")
        return k.reshape(shape)
    try:
        return np.broadcast_to(k, (1,) + tuple(shape))[0].copy()
    except ValueError:
        raise node_error(node, f"constant of shape {k.shape} does not broadcast over the "
                               f"input (N, {', '.join(map(str, shape))})") from None


def _float_op(lw, node):
    """``x (op) c`` or ``c (op) x`` for an activation or the raw input ``x`` and a constant
    ``c``; ``Add`` of two activations is handled by :func:`op_add`."""
    op = _CHAIN_OPS[node.op_type]
    a, b = (lw.values.get(t) for t in node.input)
    swapped = isinstance(a, Const) and not isinstance(b, Const)
    x, c = (b, a) if swapped else (a, b)
    if not isinstance(c, Const):
        raise node_error(node, f"{node.op_type} of two activations is not supported (one "
                               f"operand must be a constant)")
    if swapped and op in ("div",):
        raise node_error(node, "a constant divided by an activation is not supported")
    if isinstance(x, Raw):
        if swapped and op == "sub":
            pre = [("mul", np.float32(-1.0)), ("add", _raw_const(node, x, c.value))]
        else:
            pre = [(op, _raw_const(node, x, c.value))]
        lw.values[node.output[0]] = Raw(x.shape, x.pre + pre, x.flat)
        return
    act = lw.act(node, node.input[1] if swapped else node.input[0])
    k = _per_channel_const(node, c.value, lw.specs[act.tensor].shape)
    steps = [("mul", np.float64(-1.0)), ("add", k)] if (swapped and op == "sub") else [(op, k)]
    lw.values[node.output[0]] = lw.propagate(node, act, chain=act.chain + steps)


def op_add(lw, node):
    va, vb = (lw.values.get(t) for t in node.input)
    if not (isinstance(va, Act) and isinstance(vb, Act)):
        return _float_op(lw, node)
    a, sa = lw.qact(node, node.input[0])
    b, sb = lw.qact(node, node.input[1])
    if np.float32(sa) == np.float32(sb) and sa == sb:
        layer = lw.emit("add", [a.tensor, b.tensor], scale=sa)
        lw.values[node.output[0]] = Act(layer.output, [("mul", np.float64(sa))])
        return
    cu = common_unit([sa, sb])
    if cu is None:
        raise node_error(node, f"operand scales {sa:g} and {sb:g} have no common unit within "
                               f"30 bits; quantize both with one shared quantizer")
    u, (p, q) = cu
    layer = lw.emit("add", [a.tensor, b.tensor], {"mul": (int(p), int(q))}, scale=u)
    lw.values[node.output[0]] = Act(layer.output, [("mul", np.float64(u))])


def op_batchnorm(lw, node):
    a = lw.act(node, node.input[0])
    gamma, beta, mean, var = (lw.const(node, t).astype(np.float64) for t in node.input[1:5])
    eps = float(np.float32(attributes(node).get("epsilon", 1e-5)))
    C = lw.specs[a.tensor].shape[0]
    if gamma.size != C:
        raise node_error(node, f"{gamma.size} channels for a {C}-channel input")
    chain = a.chain + [("sub", mean), ("div", np.sqrt(var + eps)), ("mul", gamma),
                       ("add", beta)]
    lw.values[node.output[0]] = lw.propagate(node, a, chain=chain)


def op_relu(lw, node):
    a = lw.act(node, node.input[0])
    if pure_scale(a) is not None:   # ReLU on integers
        if lw.specs[a.tensor].lo >= 0:
            lw.values[node.output[0]] = a
            return
        layer = lw.emit("relu", [a.tensor])
        lw.values[node.output[0]] = Act(layer.output, list(a.chain))
        return
    lw.values[node.output[0]] = lw.propagate(node, a, chain=a.chain + [("relu", None)])


def op_identity(lw, node):
    lw.values[node.output[0]] = lw.values[node.input[0]]


HANDLERS = {"Add": op_add, "Sub": _float_op, "Mul": _float_op, "Div": _float_op,
            "Relu": op_relu, "BatchNormalization": op_batchnorm, "Identity": op_identity,
            "Dropout": op_identity}
