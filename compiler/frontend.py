"""Front end: a QONNX model (as Brevitas' ``export_qonnx`` writes it) -> the integer IR.

The graph is cleaned up and shape-inferred with qonnx, then walked once in topological order.
Every ONNX tensor becomes one of: a float constant, a quantized constant (integer weights and
biases with their scale), or an *activation*: an IR integer tensor plus a pending chain of
per-channel float steps (scale, bias, batch norm, ReLU) that maps the integers to the real
values of the ONNX tensor. A ``Quant`` on an activation turns the chain into exact integer
thresholds (found by bisection on the chain evaluated in float64, in the order the ONNX ops
compute it); the model output keeps its chain as the final dequantization.

Channels whose chain has a negative slope (a negative batch-norm gamma, say) are folded into
the producing convolution or dense layer by negating its weights, so that every threshold
compares ``x >= T`` and max pooling commutes with the requantization.

Branch structure: the concatenation that every path to the output crosses, whose inputs come
from disjoint sub-graphs, splits the model into branches and the merge; thresholds right after
it are pushed into the branches, so branch outputs are low-bit activations. Without such a
concatenation the model is one branch and the merge is the last dense/conv layer onwards.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from . import ir
from .ir import Branch, Dequant, InputSpec, IRError, Layer, Model, TensorSpec, int_range
from .shapes import infer_layer

__all__ = ["FrontendError", "SUPPORTED_OPS", "BIT_RANGE", "load_onnx", "compile_onnx"]

#: ONNX/QONNX op types the front end lowers.
SUPPORTED_OPS = (
    "Quant", "Trunc", "Conv", "Gemm", "MatMul", "Relu", "BatchNormalization", "MaxPool",
    "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Concat", "Add", "Identity",
    "Dropout",
)
#: Bit widths accepted for weights and activations (biases may be up to 32 bit).
BIT_RANGE = (2, 8)


class FrontendError(IRError):
    """A model outside the supported subset; the message names the node and the problem."""


def _node_err(node, msg: str) -> FrontendError:
    return FrontendError(f"node {node.name!r} ({node.op_type}): {msg}")


# -- loading ---------------------------------------------------------------------------------

def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file (with external data next to it); :class:`FrontendError` if it is
    missing, truncated or not ONNX."""
    path = Path(path)
    if not path.is_file():
        raise FrontendError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError, onnx raises others
        raise FrontendError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not model.graph.node:
        raise FrontendError(f"{path}: not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as e:
        # qonnx custom domains fail the strict checker; only structural errors matter here
        if "No Op registered" not in str(e) and "domain" not in str(e).lower():
            raise FrontendError(f"{path}: malformed ONNX model ({e})") from None
    return model


def prefold_constants(mw, keep=("Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear")):
    """Fold every node computed from constants only, in one topological pass, with qonnx's own
    ``execute_node`` (the same numerics as its ``FoldConstants``).

    qonnx's ``FoldConstants`` folds one node per round and re-infers shapes and re-sorts the
    graph after each, minutes on a ResNet-18 export (24 constant nodes, 1,173 nodes); after
    this pass its rounds find nothing to do. Quantizers (``keep``, the types ``cleanup_model``
    preserves) are never folded.
    """
    import qonnx.core.onnx_exec as oxe

    opset = mw.model.opset_import[0].version
    ctx = mw.make_empty_exec_context()
    folded = []
    for n in mw.graph.node:
        if n.op_type in keep or any(mw.get_initializer(i) is None for i in n.input if i):
            continue
        for i in n.input:
            if i:
                mw.get_tensor_shape(i, fix_missing_init_shape=True)
                ctx[i] = mw.get_initializer(i)
        oxe.execute_node(n, ctx, mw.graph, opset_version=opset)
        for o in n.output:
            mw.set_initializer(o, ctx[o])
        folded.append(n)
    for n in folded:
        mw.graph.node.remove(n)
    return mw


def cleaned(model: onnx.ModelProto):
    """qonnx's ``cleanup_model`` (shape inference, constant folding, unique names) after
    :func:`prefold_constants`; returns a ``ModelWrapper``."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mw = ModelWrapper(model).transform(InferShapes())
        return cleanup_model(prefold_constants(mw))



# -- values ----------------------------------------------------------------------------------

@dataclass
class _Const:
    value: np.ndarray


@dataclass
class _QConst:
    """A Quant applied to a constant: integers, their scale (broadcastable) and bit width."""

    q: np.ndarray
    scale: np.ndarray
    bits: int
    node: str


@dataclass
class _Act:
    """An IR integer tensor and the float steps mapping its integers to the ONNX values.

    ``chain`` holds ``(op, array)`` with op in mul/add/sub/div/relu; arrays are float64, either
    scalars or one value per channel. ``producer`` is the conv/dense layer whose channels can
    be negated to fold a negative slope, when nothing else reads the path.
    """

    tensor: str
    chain: list
    producer: Layer | None = None
    foldable: bool = False
    avgpool: Layer | None = None   # set when the value is a fresh average pool (for Trunc)


def _pure_scale(a: _Act) -> float | None:
    """The per-tensor scale if the chain is just ``x * s`` with ``s > 0``, else None."""
    if len(a.chain) == 1 and a.chain[0][0] == "mul":
        s = np.unique(a.chain[0][1])
        if s.size == 1 and s[0] > 0:
            return float(s[0])
    return None


def _eval_chain(chain, a: np.ndarray, axis_shape) -> np.ndarray:
    """Evaluate ``chain`` on float64 integers ``a`` (channels on axis 0, per-channel arrays
    reshaped to ``axis_shape``)."""
    v = a
    for op, arr in chain:
        if op == "relu":
            v = np.maximum(v, 0.0)
            continue
        k = np.asarray(arr, dtype=np.float64)
        k = k.reshape(axis_shape) if k.ndim else k
        if op == "mul":
            v = v * k
        elif op == "add":
            v = v + k
        elif op == "sub":
            v = v - k
        elif op == "div":
            v = v / k
    return v


def _chain_slope_sign(chain, channels: int) -> np.ndarray:
    s = np.ones(channels)
    for op, arr in chain:
        if op in ("mul", "div"):
            s = s * np.sign(np.broadcast_to(np.asarray(arr, dtype=np.float64), (channels,)))
    return s


def _per_channel(chain, channels: int):
    return [(op, None if arr is None else
             np.broadcast_to(np.asarray(arr, dtype=np.float64), (channels,)).copy())
            for op, arr in chain]


# -- the lowering ----------------------------------------------------------------------------

class _Lowering:
    def __init__(self, mw, name: str):
        self.mw = mw
        self.graph = mw.graph
        self.name = name
        self.values: dict[str, object] = {}
        self.layers: list[Layer] = []
        self.specs: dict[str, TensorSpec] = {}
        self.input_spec: InputSpec | None = None
        self.counter = 0
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
        for init in self.graph.initializer:
            self.values[init.name] = _Const(numpy_helper.to_array(init))

    # helpers
    def fresh(self, op: str) -> str:
        self.counter += 1
        return f"{op}{self.counter}"

    def emit(self, op: str, inputs: list[str], attrs=None, params=None) -> Layer:
        name = self.fresh(op)
        layer = Layer(name, op, inputs, name, dict(attrs or {}), dict(params or {}))
        self.specs[name] = infer_layer(layer, [self.specs[t] for t in inputs])
        self.layers.append(layer)
        return layer

    def reinfer(self):
        for layer in self.layers:
            self.specs[layer.output] = infer_layer(layer, [self.specs[t] for t in layer.inputs])

    def const(self, node, name: str) -> np.ndarray:
        v = self.values.get(name)
        if isinstance(v, _Const):
            return v.value
        raise _node_err(node, f"input {name!r} must be a constant")

    def act(self, node, name: str) -> _Act:
        v = self.values.get(name)
        if isinstance(v, _Act):
            return v
        if isinstance(v, (_Const, _QConst)):
            raise _node_err(node, f"input {name!r} is a constant where an activation is expected")
        if name in [i.name for i in self.graph.input]:
            raise _node_err(node, f"reads the model input {name!r} unquantized: the first op "
                                  f"must be a Quant (e.g. a Brevitas QuantIdentity)")
        raise _node_err(node, f"input {name!r} is not available")

    def qact(self, node, name: str) -> tuple[_Act, float]:
        a = self.act(node, name)
        s = _pure_scale(a)
        if s is None:
            raise _node_err(node, f"input {name!r} is not a quantized activation (no Quant "
                                  f"between it and the previous layer)")
        return a, s

    def exclusive(self, node) -> bool:
        return all(len(self.consumers.get(o, [])) <= 1 for o in node.output)

    def propagate(self, node, a: _Act, **changes) -> _Act:
        new = _Act(a.tensor, list(a.chain), a.producer, a.foldable and self.exclusive(node))
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    # sign folding
    def fold_negative(self, node, a: _Act) -> _Act:
        """Make every channel's slope non-negative by negating producer weights."""
        C = self.specs[a.tensor].shape[0]
        sign = _chain_slope_sign(a.chain, C)
        neg = sign < 0
        if not neg.any():
            return a
        p = a.producer
        if p is None or not a.foldable or self.specs[p.output].shape[0] != C:
            raise _node_err(node, "a channel's requantization has a negative slope and cannot be "
                                  "folded into the producing layer")
        p.params["weight"][neg] *= -1
        if p.bias is not None:
            p.params["bias"][neg] *= -1
        chain = [(op, arr) for op, arr in _per_channel(a.chain, C)]
        op0, arr0 = chain[0]
        assert op0 == "mul"
        arr0 = arr0.copy()
        arr0[neg] *= -1
        chain[0] = ("mul", arr0)
        self.reinfer()
        return _Act(a.tensor, chain, p, a.foldable)

    # ops
    def run(self) -> Model:
        g = self.graph
        if len(g.input) != 1:
            raise FrontendError(f"the model has {len(g.input)} inputs; exactly one is supported")
        if len(g.output) != 1:
            raise FrontendError(f"the model has {len(g.output)} outputs; exactly one is supported")
        foreign = list(dict.fromkeys(n.op_type for n in g.node if n.op_type not in SUPPORTED_OPS
                                     and n.op_type != "BipolarQuant"))
        for node in g.node:
            if node.op_type == "BipolarQuant":
                raise _node_err(node, f"bit width 1 (bipolar) is out of range "
                                      f"{BIT_RANGE[0]}..{BIT_RANGE[1]}")
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None or node.op_type not in SUPPORTED_OPS:
                others = [t for t in foreign if t != node.op_type]     # e.g. the LSTM itself
                also = f" (nor are {', '.join(others)}, also in this model)" if others else ""
                raise _node_err(node, f"op type {node.op_type!r} is not supported{also} "
                                      f"(supported: {', '.join(SUPPORTED_OPS)})")
            handler(node)
        if self.input_spec is None:
            raise FrontendError("the model input is never quantized by a Quant node")
        out = self.values.get(g.output[0].name)
        if not isinstance(out, _Act):
            raise FrontendError(f"the model output {g.output[0].name!r} is not computed from "
                                f"the input")
        return self.finish(out)

    def op_Identity(self, node):
        self.values[node.output[0]] = self.values[node.input[0]]

    op_Dropout = op_Identity

    def _quant_params(self, node):
        if len(node.input) != 4:
            raise _node_err(node, "expects 4 inputs (x, scale, zero point, bit width)")
        scale = self.const(node, node.input[1])
        zp = self.const(node, node.input[2])
        bits = self.const(node, node.input[3])
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        signed = bool(attrs.get("signed", 1))
        narrow = bool(attrs.get("narrow", 0))
        rounding = attrs.get("rounding_mode", b"ROUND")
        rounding = rounding.decode() if isinstance(rounding, bytes) else str(rounding)
        if np.any(zp != 0):
            raise _node_err(node, "non-zero zero points are not supported")
        if bits.size != 1 or float(bits.reshape(-1)[0]) != int(bits.reshape(-1)[0]):
            raise _node_err(node, f"bit width must be one integer, got {bits}")
        if np.any(scale <= 0):
            raise _node_err(node, "scales must be positive")
        return scale, int(bits.reshape(-1)[0]), signed, narrow, rounding

    def _check_bits(self, node, bits, what, lo=BIT_RANGE[0], hi=BIT_RANGE[1]):
        if not lo <= bits <= hi:
            raise _node_err(node, f"{what} bit width {bits} is out of range {lo}..{hi}")

    def op_Quant(self, node):
        scale, bits, signed, narrow, rounding = self._quant_params(node)
        src = node.input[0]
        v = self.values.get(src)
        qlo, qhi = int_range(bits, signed, narrow)
        if isinstance(v, _Const):
            # weights or biases: integers exactly as qonnx/Brevitas compute them (in float32)
            self._check_bits(node, bits, "constant", BIT_RANGE[0], 32)
            w = v.value.astype(np.float32)
            sc = scale.astype(np.float32)
            q = ir.round_float(np.clip(w / sc, qlo, qhi), rounding)
            self.values[node.output[0]] = _QConst(q.astype(np.int64), sc, bits, node.name)
            return
        if src in [i.name for i in self.graph.input]:
            self._check_bits(node, bits, "input")
            if self.input_spec is not None:
                raise _node_err(node, "the model input is quantized twice")
            if scale.size != 1:
                raise _node_err(node, "the input quantizer must have one per-tensor scale")
            shape = self.mw.get_tensor_shape(src)
            self.input_spec = InputSpec("input", tuple(shape[1:]),
                                        float(np.float32(scale.reshape(-1)[0])), qlo, qhi, rounding)
            self.specs["input"] = TensorSpec(tuple(shape[1:]), qlo, qhi,
                                             float(np.float32(scale.reshape(-1)[0])))
            self.values[node.output[0]] = _Act("input", [("mul", np.float64(np.float32(scale.reshape(-1)[0])))])
            return
        a = self.act(node, src)
        self._check_bits(node, bits, "activation")
        if scale.size != 1:
            raise _node_err(node, "activation quantizers must have one per-tensor scale")
        s_out = float(scale.reshape(-1)[0])
        self.values[node.output[0]] = self.requantize(node, a, s_out, qlo, qhi, rounding)

    def requantize(self, node, a: _Act, s_out: float, qlo: int, qhi: int, rounding: str) -> _Act:
        a = self.fold_negative(node, a)
        spec = self.specs[a.tensor]
        C = spec.shape[0]
        axis_shape = (C, 1)
        chain = _per_channel(a.chain, C)

        def f(x):  # x: float64 (C, L) integers -> quantized integers, as float
            v = _eval_chain(chain, x, axis_shape) / s_out
            return ir.round_float(np.clip(v, qlo, qhi), rounding)

        lo, hi = spec.lo, spec.hi
        f_lo = f(np.full((C, 1), float(lo)))[:, 0]
        f_hi = f(np.full((C, 1), float(hi)))[:, 0]
        out_lo, out_hi = int(f_lo.min()), int(f_hi.max())
        L = out_hi - out_lo
        if L == 0:
            thresholds = np.zeros((1, 0), dtype=np.int64)
        else:
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
            thresholds = right
            if np.all(thresholds == thresholds[:1]):
                thresholds = thresholds[:1]
        # identity requantization (the same quantizer applied twice): no layer
        s_in = _pure_scale(a)
        if (s_in is not None and out_lo == lo and out_hi == hi and thresholds.shape[0] == 1
                and np.array_equal(thresholds[0], np.arange(lo + 1, hi + 1))):
            self.specs[a.tensor] = TensorSpec(spec.shape, lo, hi, s_out)
            return _Act(a.tensor, [("mul", np.float64(s_out))])
        layer = self.emit("threshold", [a.tensor], {"out_lo": out_lo, "out_hi": out_hi,
                                                    "scale": float(s_out)},
                          {"thresholds": thresholds})
        return _Act(layer.output, [("mul", np.float64(s_out))])

    def _linear(self, node, x: _Act, s_x: float, w: _QConst, bias_name: str | None,
                op: str, attrs: dict, weight: np.ndarray):
        O = weight.shape[0]
        self._check_bits(node, w.bits, "weight")
        s_w = np.broadcast_to(w.scale.astype(np.float64).reshape(-1), (O,)) \
            if w.scale.size in (1, O) else None
        if s_w is None:
            raise _node_err(node, f"weight scale of shape {w.scale.shape} is neither per-tensor "
                                  f"nor per-output-channel")
        s_acc = s_x * s_w                   # exact in float64 (two float32 mantissas)
        params = {"weight": weight.astype(np.int64).copy()}
        offset = np.zeros(O)
        if bias_name:
            b = self.values.get(bias_name)
            if isinstance(b, _QConst):
                qb = b.q.reshape(-1).astype(np.int64)
                sb = np.broadcast_to(b.scale.astype(np.float64).reshape(-1), (O,))
                if np.all(np.abs(sb / s_acc - 1) < 2.0**-20):
                    params["bias"] = qb
                    offset = qb * sb - qb * s_acc
                else:
                    offset = qb * sb
            elif isinstance(b, _Const):
                offset = np.broadcast_to(b.value.astype(np.float64).reshape(-1), (O,)).copy()
            else:
                raise _node_err(node, f"bias {bias_name!r} must be a constant")
        attrs = dict(attrs, weight_bits=w.bits)
        layer = self.emit(op, [x.tensor], attrs, params)
        chain = [("mul", s_acc.copy())]
        if np.any(offset != 0):
            chain.append(("add", offset))
        self.values[node.output[0]] = _Act(layer.output, chain, layer, self.exclusive(node))

    def _weights(self, node, name) -> _QConst:
        w = self.values.get(name)
        if isinstance(w, _QConst):
            return w
        if isinstance(w, _Const):
            raise _node_err(node, f"float weights {name!r} without a Quant node; quantize them "
                                  f"(e.g. Brevitas QuantConv2d/QuantLinear)")
        raise _node_err(node, f"weights {name!r} must be a quantized constant")

    def op_Conv(self, node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        x, s_x = self.qact(node, node.input[0])
        w = self._weights(node, node.input[1])
        if attrs.get("group", 1) != 1:
            raise _node_err(node, f"group={attrs['group']} is not supported (groups=1 only)")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise _node_err(node, f"dilations={attrs['dilations']} are not supported")
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _node_err(node, f"auto_pad={attrs['auto_pad']!r} is not supported")
        if w.q.ndim != 4:
            raise _node_err(node, f"only 2-D convolutions are supported (weight {w.q.shape})")
        kh, kw = attrs.get("kernel_shape", w.q.shape[2:])
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        stride = list(attrs.get("strides", [1, 1]))
        self._linear(node, x, s_x, w, node.input[2] if len(node.input) > 2 else None, "conv",
                     {"kernel": (kh, kw), "stride": tuple(stride),
                      "pads": (pads[0], pads[1], pads[2], pads[3])}, w.q)

    def op_Gemm(self, node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise _node_err(node, "only transA=0, alpha=1, beta=1 are supported")
        x, s_x = self.qact(node, node.input[0])
        w = self._weights(node, node.input[1])
        weight = w.q if attrs.get("transB", 0) else w.q.T
        if attrs.get("transB", 0) == 0 and w.scale.ndim == 2:
            w = _QConst(w.q, w.scale.T, w.bits, w.node)
        self._linear(node, x, s_x, w, node.input[2] if len(node.input) > 2 else None,
                     "dense", {}, weight)

    def op_MatMul(self, node):
        x, s_x = self.qact(node, node.input[0])
        w = self._weights(node, node.input[1])
        if w.q.ndim != 2:
            raise _node_err(node, "only matrix weights are supported")
        w = _QConst(w.q, w.scale.T if w.scale.ndim == 2 else w.scale, w.bits, w.node)
        self._linear(node, x, s_x, w, None, "dense", {}, w.q.T)

    def op_Add(self, node):
        va, vb = (self.values.get(t) for t in node.input)
        if isinstance(va, _Act) and isinstance(vb, _Act):
            a, sa = self.qact(node, node.input[0])
            b, sb = self.qact(node, node.input[1])
            if np.float32(sa) != np.float32(sb):
                raise _node_err(node, f"operands have different scales ({sa:g} vs {sb:g}); "
                                      f"quantize both with one shared quantizer")
            layer = self.emit("add", [a.tensor, b.tensor])
            self.specs[layer.output] = TensorSpec(self.specs[layer.output].shape,
                                                  self.specs[layer.output].lo,
                                                  self.specs[layer.output].hi, sa)
            self.values[node.output[0]] = _Act(layer.output, [("mul", np.float64(sa))])
            return
        if isinstance(vb, _Act) and isinstance(va, _Const):
            va, vb = vb, va
        if isinstance(va, _Act) and isinstance(vb, _Const):
            C = self.specs[va.tensor].shape[0]
            k = vb.value.astype(np.float64).reshape(-1)
            if k.size not in (1, C):
                raise _node_err(node, f"constant of shape {vb.value.shape} is not per-channel")
            self.values[node.output[0]] = self.propagate(node, va, chain=va.chain + [("add", k)])
            return
        raise _node_err(node, "supports activation + activation (shared scale) or "
                              "activation + constant")

    def op_BatchNormalization(self, node):
        a = self.act(node, node.input[0])
        gamma, beta, mean, var = (self.const(node, t).astype(np.float64) for t in node.input[1:5])
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        eps = float(np.float32(attrs.get("epsilon", 1e-5)))
        C = self.specs[a.tensor].shape[0]
        if gamma.size != C:
            raise _node_err(node, f"{gamma.size} channels for a {C}-channel input")
        chain = a.chain + [("sub", mean), ("div", np.sqrt(var + eps)), ("mul", gamma),
                           ("add", beta)]
        self.values[node.output[0]] = self.propagate(node, a, chain=chain)

    def op_Relu(self, node):
        a = self.act(node, node.input[0])
        s = _pure_scale(a)
        if s is not None:   # ReLU on integers
            if self.specs[a.tensor].lo >= 0:
                self.values[node.output[0]] = a
                return
            layer = self.emit("relu", [a.tensor])
            self.values[node.output[0]] = _Act(layer.output, list(a.chain))
            return
        self.values[node.output[0]] = self.propagate(node, a, chain=a.chain + [("relu", None)])

    def _window_attrs(self, node, kernel=None):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("ceil_mode", 0):
            raise _node_err(node, "ceil_mode=1 is not supported")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise _node_err(node, "dilations are not supported")
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _node_err(node, "auto_pad is not supported")
        if attrs.get("storage_order", 0):
            raise _node_err(node, "storage_order=1 is not supported")
        k = tuple(kernel or attrs["kernel_shape"])
        if len(k) != 2:
            raise _node_err(node, "only 2-D pooling is supported")
        pads = tuple(attrs.get("pads", [0, 0, 0, 0]))
        return {"kernel": k, "stride": tuple(attrs.get("strides", [1, 1])), "pads": pads}, attrs

    def op_MaxPool(self, node):
        if len(node.output) > 1 and node.output[1]:
            raise _node_err(node, "the Indices output is not supported")
        a = self.act(node, node.input[0])
        a = self.fold_negative(node, a)
        w, _ = self._window_attrs(node)
        layer = self.emit("maxpool", [a.tensor], w)
        if self.specs[a.tensor].scale is not None:
            self.specs[layer.output] = TensorSpec(self.specs[layer.output].shape,
                                                  self.specs[layer.output].lo,
                                                  self.specs[layer.output].hi,
                                                  self.specs[a.tensor].scale)
        self.values[node.output[0]] = _Act(layer.output, list(a.chain), a.producer,
                                           a.foldable and self.exclusive(node))

    def _avgpool(self, node, kernel, window):
        a, s = self.qact(node, node.input[0])
        spec = self.specs[a.tensor]
        n = kernel[0] * kernel[1]
        if window.get("count_include_pad", 0) == 0 and any(window["pads"]):
            raise _node_err(node, "count_include_pad=0 with padding is not supported")
        attrs = {k: window[k] for k in ("kernel", "stride", "pads")}
        attrs.update(shift=0, rounding="floor", out_lo=n * min(spec.lo, 0),
                     out_hi=n * max(spec.hi, 0))
        layer = self.emit("avgpool", [a.tensor], attrs)
        self.values[node.output[0]] = _Act(layer.output, [("mul", np.float64(s) / n)],
                                           avgpool=layer)

    def op_AveragePool(self, node):
        w, attrs = self._window_attrs(node)
        w["count_include_pad"] = attrs.get("count_include_pad", 0)
        self._avgpool(node, w["kernel"], w)

    def op_GlobalAveragePool(self, node):
        spec = self.specs[self.act(node, node.input[0]).tensor]
        if len(spec.shape) != 3:
            raise _node_err(node, "expects a (C,H,W) input")
        k = spec.shape[1:]
        self._avgpool(node, k, {"kernel": k, "stride": (1, 1), "pads": (0, 0, 0, 0),
                                "count_include_pad": 1})

    def op_ReduceMean(self, node):
        """A mean over both spatial axes (keepdims) is a global average pool."""
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:
            axes = self.const(node, node.input[1]).tolist()
        if sorted(int(a) % 4 for a in (axes or [])) != [2, 3] or not attrs.get("keepdims", 1):
            raise _node_err(node, f"only a mean over the spatial axes with keepdims is "
                                  f"supported (axes={axes})")
        self.op_GlobalAveragePool(node)

    def op_Trunc(self, node):
        """Brevitas' truncating average pool: window sum, power-of-two shift, clip."""
        a = self.act(node, node.input[0])
        if a.avgpool is None:
            raise _node_err(node, "Trunc is supported only right after an average pool")
        if len(node.input) != 6:
            raise _node_err(node, "expects Trunc (v2) with 6 inputs")
        scale, zp, _in_bits, out_scale, out_bits = (self.const(node, t) for t in node.input[1:])
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        if np.any(zp != 0):
            raise _node_err(node, "non-zero zero points are not supported")
        signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
        rounding = attrs.get("rounding_mode", b"FLOOR")
        rounding = (rounding.decode() if isinstance(rounding, bytes) else rounding).lower()
        if rounding in ("half_even",):
            rounding = "round"
        if rounding not in ("floor", "round", "ceil"):
            raise _node_err(node, f"rounding mode {rounding!r} is not supported")
        s_sum = float(a.chain[0][1])
        scale, out_scale = float(scale.reshape(-1)[0]), float(out_scale.reshape(-1)[0])
        if abs(s_sum / scale - 1) > 1e-6:
            raise _node_err(node, f"input scale {scale:g} is not the pool's sum scale {s_sum:g}")
        shift = math.log2(out_scale / scale)
        if abs(shift - round(shift)) > 1e-6:     # qonnx rounds it; we only accept exact ones
            raise _node_err(node, f"rescale {out_scale / scale:g} is not a power of two")
        self._check_bits(node, int(out_bits.reshape(-1)[0]), "activation")
        lo, hi = int_range(int(out_bits.reshape(-1)[0]), signed, narrow)
        layer = a.avgpool
        layer.attrs.update(shift=int(round(shift)), rounding=rounding, out_lo=lo, out_hi=hi)
        self.reinfer()
        self.specs[layer.output] = TensorSpec(self.specs[layer.output].shape, lo, hi, out_scale)
        self.values[node.output[0]] = _Act(layer.output, [("mul", np.float64(out_scale))])

    def _flatten(self, node, a: _Act):
        spec = self.specs[a.tensor]
        if len(spec.shape) == 1:
            self.values[node.output[0]] = a
            return
        layer = self.emit("flatten", [a.tensor])
        if spec.scale is not None:
            self.specs[layer.output] = TensorSpec((spec.size,), spec.lo, spec.hi, spec.scale)
        rep = spec.size // spec.shape[0]
        chain = [(op, arr if arr is None or np.ndim(arr) == 0 else np.repeat(arr, rep))
                 for op, arr in a.chain]
        # a flattened accumulator can no longer be folded channel-wise
        self.values[node.output[0]] = _Act(layer.output, chain, None, False)

    def op_Flatten(self, node):
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        if attrs.get("axis", 1) != 1:
            raise _node_err(node, "only axis=1 is supported")
        self._flatten(node, self.act(node, node.input[0]))

    def op_Reshape(self, node):
        a = self.act(node, node.input[0])
        out_shape = self.mw.get_tensor_shape(node.output[0])
        size = self.specs[a.tensor].size
        if out_shape is None or len(out_shape) != 2 or out_shape[1] != size:
            raise _node_err(node, f"only a flatten to (N, {size}) is supported, got {out_shape}")
        self._flatten(node, a)

    def op_Concat(self, node):
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        acts = [self.act(node, t) for t in node.input]
        rank = len(self.specs[acts[0].tensor].shape) + 1
        if attrs.get("axis") not in (1, 1 - rank):
            raise _node_err(node, f"only concatenation along channels (axis 1) is supported")
        scales = [_pure_scale(a) for a in acts]
        layer = self.emit("concat", [a.tensor for a in acts])
        if all(s is not None for s in scales):
            if len({np.float32(s) for s in scales}) != 1:
                raise _node_err(node, f"inputs have different scales {sorted(set(scales))}; "
                                      f"quantize them with one shared quantizer")
            spec = self.specs[layer.output]
            self.specs[layer.output] = TensorSpec(spec.shape, spec.lo, spec.hi, scales[0])
            self.values[node.output[0]] = _Act(layer.output, [("mul", np.float64(scales[0]))])
            return
        kinds = [[op for op, _ in a.chain] for a in acts]
        if any(k != kinds[0] for k in kinds):
            raise _node_err(node, "inputs carry different pending float ops; quantize each "
                                  "input (or all of them the same way) before concatenating")
        per = [_per_channel(a.chain, self.specs[a.tensor].shape[0]) for a in acts]
        chain = []
        for i, (op, _) in enumerate(per[0]):
            chain.append((op, None if op == "relu" else np.concatenate([p[i][1] for p in per])))
        self.values[node.output[0]] = _Act(layer.output, chain)

    # -- structure ---------------------------------------------------------------------------
    def finish(self, out: _Act) -> Model:
        dequant = _dequant(out, self.specs[out.tensor].shape[0])
        layers = _push_thresholds_into_concat(self.layers,
                                              lambda t: self.specs[t].shape[0])
        self.layers = layers
        self.reinfer()
        branches, merge = _split_branches(layers, out.tensor, self.specs)
        model = _rename(self.name, self.input_spec, self.specs, branches, merge, dequant)
        return model.validate()


def _dequant(out: _Act, C: int) -> Dequant:
    scale, offset, relu = np.ones(C), np.zeros(C), False
    for op, arr in _per_channel(out.chain, C):
        if relu and op != "relu":
            raise FrontendError("the model output applies float ops after a ReLU without a "
                                "Quant; this output dequantization is not supported")
        if op == "mul":
            scale, offset = scale * arr, offset * arr
        elif op == "div":
            scale, offset = scale / arr, offset / arr
        elif op == "add":
            offset = offset + arr
        elif op == "sub":
            offset = offset - arr
        elif op == "relu":
            relu = True
    return Dequant(scale, offset, relu)


def _push_thresholds_into_concat(layers: list[Layer], channels) -> list[Layer]:
    """``threshold(concat(a, b))`` -> ``concat(threshold(a), threshold(b))`` when the concat has
    no other reader, so branches send low-bit activations to the merge."""
    readers: dict[str, list[Layer]] = {}
    for l in layers:
        for t in l.inputs:
            readers.setdefault(t, []).append(l)
    out = []
    removed = set()
    for l in layers:
        if l.name in removed:
            continue
        r = readers.get(l.output, [])
        if l.op == "concat" and len(r) == 1 and r[0].op == "threshold" and \
                r[0].params["thresholds"].shape[1] > 0:
            thr = r[0]
            t = thr.params["thresholds"]
            new_inputs, start = [], 0
            for i, src in enumerate(l.inputs):
                n = channels(src)
                rows = t if t.shape[0] == 1 else t[start:start + n]
                start += n
                name = f"{thr.name}_{i}"
                out.append(Layer(name, "threshold", [src], name, dict(thr.attrs),
                                 {"thresholds": rows.copy()}))
                new_inputs.append(name)
            out.append(Layer(l.name, "concat", new_inputs, thr.output, {}, {}))
            removed.add(thr.name)
            continue
        out.append(l)
    return out


#: Ops the branches of an LCP model may share before they part (pure data movement, no
#: weights): each branch gets its own copy, e.g. the Flatten in front of an MLP's branches.
SHAREABLE = ("flatten",)


def _split_branches(layers: list[Layer], output: str,
                    specs: dict | None = None) -> tuple[list[list[Layer]], list[Layer]]:
    """Branches (the disjoint ancestries of a concat that only the merge reads after) and the
    merge. A shared prefix of :data:`SHAREABLE` layers is copied into every branch (new tensor
    names, their specs added to ``specs``)."""
    producer = {l.output: l for l in layers}

    def ancestors(tensor: str) -> set[str]:
        seen, stack = set(), [tensor]
        while stack:
            t = stack.pop()
            l = producer.get(t)
            if l is None or l.name in seen:
                continue
            seen.add(l.name)
            stack.extend(l.inputs)
        return seen

    needed = ancestors(output)
    layers = [l for l in layers if l.name in needed]      # drop dead code
    order = {l.name: i for i, l in enumerate(layers)}

    def cut_at(start: Layer) -> list[Layer] | None:
        """``start`` and everything after it, if nothing after reads around it."""
        merge = [start]
        produced = {start.output}
        for l in layers[order[start.name] + 1:]:
            if l.name in needed and any(t in produced for t in l.inputs):
                if not all(t in produced for t in l.inputs):
                    return None
                merge.append(l)
                produced.add(l.output)
        if output not in produced:
            return None
        rest = {l.name for l in merge}
        if any(l.name not in rest and order[l.name] > order[start.name] for l in layers):
            return None
        return merge

    for l in layers:
        if l.op != "concat":
            continue
        merge = cut_at(l)
        if merge is None:
            continue
        anc = [ancestors(t) for t in l.inputs]
        shared = set().union(*(anc[i] & anc[j] for i in range(len(anc))
                               for j in range(i + 1, len(anc))))
        by_name = {x.name: x for x in layers}
        if any(by_name[n].op not in SHAREABLE for n in shared):
            continue
        if shared and specs is None:
            continue
        branches = []
        for i, a in enumerate(anc):
            alias: dict[str, str] = {}
            br = []
            for x in layers:
                if x.name not in a:
                    continue
                inputs = [alias.get(t, t) for t in x.inputs]
                if x.name in shared:
                    out_name = f"{x.output}_b{i}"
                    alias[x.output] = out_name
                    specs[out_name] = specs[x.output]
                    br.append(Layer(f"{x.name}_b{i}", x.op, inputs, out_name, dict(x.attrs),
                                    {k: v.copy() for k, v in x.params.items()}))
                else:
                    br.append(Layer(x.name, x.op, inputs, x.output, x.attrs, x.params))
            branches.append(br)
        return branches, merge
    # no branch point: one branch, the merge is the last weighted layer onwards
    for l in reversed(layers):
        if l.op in ("dense", "conv"):
            merge = cut_at(l)
            if merge is not None:
                rest = {x.name for x in merge}
                return [[x for x in layers if x.name not in rest]], merge
            break
    return [list(layers)], []


def _rename(name, input_spec, specs, branches, merge, dequant) -> Model:
    """Readable names: ``b{i}_{op}{k}`` in branch i, ``m_{op}{k}`` in the merge; every tensor
    is named after the layer that produces it."""
    mapping = {"input": "input"}
    graphs = []

    def rename_graph(gname, prefix, layers, inputs):
        counts: dict[str, int] = {}
        new = []
        for l in layers:
            k = counts.get(l.op, 0)
            counts[l.op] = k + 1
            nn = f"{prefix}{l.op}{k}"
            mapping[l.output] = nn
            attrs = {k_: v for k_, v in l.attrs.items()}
            new.append(Layer(nn, l.op, [mapping[t] for t in l.inputs], nn, attrs,
                             {k_: v.copy() for k_, v in l.params.items()}))
        return new

    new_branches = []
    for i, layers in enumerate(branches):
        new = rename_graph(f"branch{i}", f"b{i}_", layers, ["input"])
        out = new[-1].output if new else "input"
        new_branches.append(Branch(f"branch{i}", ["input"], new, out))
    merge_inputs = [b.output for b in new_branches]
    new_merge = rename_graph("merge", "m_", merge, merge_inputs)
    merge_out = new_merge[-1].output if new_merge else merge_inputs[0]
    if not new_merge and len(merge_inputs) != 1:
        raise FrontendError("several branches but no merge layer")
    tensors = {mapping[k]: v for k, v in specs.items() if k in mapping}
    return Model(name, input_spec, tensors, new_branches,
                 Branch("merge", merge_inputs, new_merge, merge_out), dequant)


def compile_onnx(source, name: str | None = None) -> Model:
    """Lower a QONNX model (path or ``ModelProto``) to a validated integer IR model.

    Raises :class:`FrontendError` naming the node and op for anything outside the subset.
    """
    if isinstance(source, (str, Path)):
        proto = load_onnx(source)
        name = name or Path(source).stem
        src = Path(source).name
    else:
        proto, src = source, None
        name = name or (proto.graph.name or "model")
    try:
        mw = cleaned(proto)
    except FrontendError:
        raise
    except Exception as e:
        raise FrontendError(f"qonnx cleanup failed: {type(e).__name__}: {e}") from None
    lowering = _Lowering(mw, name)
    model = lowering.run()
    model.meta.update({"source": src, "producer": proto.producer_name,
                       "producer_version": proto.producer_version})
    return model
