"""Handlers of the quantizers: ``Quant``, ``BipolarQuant`` and ``Trunc``.

On a constant a quantizer gives integers (weights, biases); on the float model input it
defines the input's integer domain (:class:`lcp.ir.InputSpec`); on an activation it is a
requantization, emitted as a ``threshold`` layer.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import InputSpec, TensorSpec, int_range, round_float
from .errors import check_bits, node_error, attributes
from .requant import bipolar_quantizer, quantizer, thresholds
from .values import Act, Const, QConst, Raw, pure_scale

__all__ = ["HANDLERS"]


def _rounding(attrs, default: str) -> str:
    r = attrs.get("rounding_mode", default.encode())
    return r.decode() if isinstance(r, bytes) else str(r)


def _quant_params(lw, node):
    if len(node.input) != 4:
        raise node_error(node, "expects 4 inputs (x, scale, zero point, bit width)")
    scale = lw.const(node, node.input[1])
    zp = lw.const(node, node.input[2])
    bits = lw.const(node, node.input[3])
    attrs = attributes(node)
    signed = bool(attrs.get("signed", 1))
    narrow = bool(attrs.get("narrow", 0))
    if np.any(zp != 0):
        raise node_error(node, "non-zero zero points are not supported")
    if bits.size != 1 or float(bits.reshape(-1)[0]) != int(bits.reshape(-1)[0]):
        raise node_error(node, f"bit width must be one integer, got {bits}")
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise node_error(node, f"scales must be positive and finite (got {scale.reshape(-1)[:4]})")
    return scale, int(bits.reshape(-1)[0]), signed, narrow, _rounding(attrs, "ROUND")


def requantize(lw, node, a: Act, make_f, s_out) -> Act:
    """Emit the ``threshold`` layer of quantizer ``make_f(chain, channels)`` on ``a``; the
    output's scale ``s_out`` is one float or one per channel (an array)."""
    per = np.ndim(s_out) > 0
    s_out = np.asarray(s_out, dtype=np.float64) if per else float(s_out)
    a = lw.fold_negative(node, a)
    spec = lw.specs[a.tensor]
    C = spec.shape[0]
    t, out_lo, out_hi = thresholds(make_f(a.chain, C), C, spec.lo, spec.hi)
    # identity requantization (the same quantizer applied twice): no layer
    chain = [("mul", s_out.copy() if per else np.float64(s_out))]
    if (not per and pure_scale(a) is not None and out_lo == spec.lo and out_hi == spec.hi
            and t.shape[0] == 1 and np.array_equal(t[0], np.arange(spec.lo + 1, spec.hi + 1))):
        lw.specs[a.tensor] = spec.with_(scale=s_out)
        return Act(a.tensor, chain)
    attrs = {"out_lo": out_lo, "out_hi": out_hi}
    if not per:
        attrs["scale"] = s_out
    layer = lw.emit("threshold", [a.tensor], attrs, {"thresholds": t})
    return Act(layer.output, chain)


def _raw_pre(raw: Raw):
    return tuple((op, np.asarray(k, dtype=np.float32)) for op, k in raw.pre)


def op_quant(lw, node):
    scale, bits, signed, narrow, rounding = _quant_params(lw, node)
    qlo, qhi = int_range(bits, signed, narrow)
    if qlo == qhi:
        raise node_error(node, f"a {bits}-bit {'signed' if signed else 'unsigned'}"
                               f"{' narrow' if narrow else ''} quantizer holds only the value "
                               f"{qlo}; 1-bit layers use BipolarQuant (Brevitas' binary "
                               f"quantizers)")
    src = node.input[0]
    v = lw.values.get(src)
    if isinstance(v, Const):
        # weights or biases: integers exactly as qonnx/Brevitas compute them (in float32)
        check_bits(node, bits, "constant", 1, 32)
        w = v.value.astype(np.float32)
        sc = scale.astype(np.float32)
        q = round_float(np.clip(w / sc, qlo, qhi), rounding)
        lw.values[node.output[0]] = QConst(q.astype(np.int64), sc, bits, node.name,
                                           source=src)
        return
    check_bits(node, bits, "activation" if not isinstance(v, Raw) else "input")
    if isinstance(v, Raw):
        if scale.size != 1:
            raise node_error(node, "the input quantizer must have one per-tensor scale")
        s = float(np.float32(scale.reshape(-1)[0]))
        lw.set_input(node, InputSpec("input", v.shape, s, qlo, qhi, rounding, pre=_raw_pre(v)))
        lw.values[node.output[0]] = Act(lw.input_tensor(v), [("mul", np.float64(s))])
        return
    a = lw.act(node, src)
    C = lw.specs[a.tensor].shape[0]
    if scale.size == 1:
        s_out = float(scale.reshape(-1)[0])
    elif scale.size == C and scale.reshape(-1).size == max(scale.shape):
        s_out = scale.astype(np.float64).reshape(-1)        # one scale per channel
    else:
        raise node_error(node, f"scale of shape {scale.shape} is neither per tensor nor per "
                               f"channel of a {C}-channel input")
    lw.values[node.output[0]] = requantize(
        lw, node, a, lambda chain, C: quantizer(chain, C, s_out, qlo, qhi, rounding), s_out)


def op_bipolar_quant(lw, node):
    if len(node.input) != 2:
        raise node_error(node, "expects 2 inputs (x, scale)")
    scale = lw.const(node, node.input[1])
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise node_error(node, f"scales must be positive and finite (got {scale.reshape(-1)[:4]})")
    v = lw.values.get(node.input[0])
    if isinstance(v, Const):
        q = np.where(v.value >= 0, 1, -1).astype(np.int64)
        lw.values[node.output[0]] = QConst(q, scale.astype(np.float32), 1, node.name, True,
                                           node.input[0])
        return
    if scale.size != 1:
        raise node_error(node, "activation quantizers must have one per-tensor scale")
    s = float(scale.reshape(-1)[0])
    if isinstance(v, Raw):
        lw.set_input(node, InputSpec("input", v.shape, float(np.float32(s)), -1, 1,
                                     format="bipolar", pre=_raw_pre(v)))
        lw.values[node.output[0]] = Act(lw.input_tensor(v), [("mul", np.float64(s))])
        return
    a = lw.act(node, node.input[0])
    lw.values[node.output[0]] = requantize(lw, node, a, bipolar_quantizer, s)


def op_trunc(lw, node):
    """Brevitas' truncating average pool: window sum, power-of-two shift, clip."""
    a = lw.act(node, node.input[0])
    if a.avgpool is None:
        raise node_error(node, "Trunc is supported only right after an average pool")
    if len(node.input) != 6:
        raise node_error(node, "expects Trunc (v2) with 6 inputs")
    scale, zp, _in_bits, out_scale, out_bits = (lw.const(node, t) for t in node.input[1:])
    attrs = attributes(node)
    if np.any(zp != 0):
        raise node_error(node, "non-zero zero points are not supported")
    signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
    rounding = _rounding(attrs, "FLOOR").lower()
    if rounding in ("half_even",):
        rounding = "round"
    if rounding not in ("floor", "round", "ceil"):
        raise node_error(node, f"rounding mode {rounding!r} is not supported")
    if len(a.chain) != 1 or np.ndim(a.chain[0][1]) != 0:
        raise node_error(node, "a truncating pool needs one input scale (per tensor)")
    s_sum = float(a.chain[0][1])
    scale, out_scale = float(scale.reshape(-1)[0]), float(out_scale.reshape(-1)[0])
    if abs(s_sum / scale - 1) > 1e-6:
        raise node_error(node, f"input scale {scale:g} is not the pool's sum scale {s_sum:g}")
    shift = math.log2(out_scale / scale)
    if abs(shift - round(shift)) > 1e-6:     # qonnx rounds it; we only accept exact ones
        raise node_error(node, f"rescale {out_scale / scale:g} is not a power of two")
    check_bits(node, int(out_bits.reshape(-1)[0]), "activation")
    lo, hi = int_range(int(out_bits.reshape(-1)[0]), signed, narrow)
    layer = a.avgpool
    layer.attrs.update(shift=int(round(shift)), rounding=rounding, out_lo=lo, out_hi=hi)
    lw.reinfer()
    lw.specs[layer.output] = TensorSpec(lw.specs[layer.output].shape, lo, hi, out_scale)
    lw.values[node.output[0]] = Act(layer.output, [("mul", np.float64(out_scale))])


HANDLERS = {"Quant": op_quant, "BipolarQuant": op_bipolar_quant, "Trunc": op_trunc}
