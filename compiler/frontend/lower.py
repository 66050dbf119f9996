"""Front-end pass 1: a cleaned QONNX graph -> a flat IR model (one branch, empty merge).

The graph is walked once in topological order; each ONNX op type has one handler (a function
``handler(lowering, node)`` in the handler modules, listed in :data:`HANDLERS`) that turns its
node's input values (:mod:`lcp.frontend.values`) into its output value, emitting IR layers as
it goes. A ``Quant`` on an activation turns the pending float chain into exact integer
thresholds (:mod:`lcp.frontend.requant`); the model output keeps its chain as the final
dequantization.

Channels whose chain has a negative slope (a negative batch-norm gamma, say) are folded into
the producing convolution or dense layer by negating its weights, so that every threshold
compares ``x >= T`` and max pooling commutes with the requantization.
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ..ir import (Branch, Dequant, InputSpec, Layer, Model, TensorSpec, bits_for_range, infer,
                  parse_input_format)
from . import elementwise, linear, quant, structure, window
from .errors import FrontendError, node_error
from .values import Act, Const, QConst, Raw, affine, channel_scales, per_channel, slope_sign

__all__ = ["HANDLERS", "SUPPORTED_OPS", "Lowering", "lower"]

#: ONNX/QONNX op type -> handler.
HANDLERS = {**quant.HANDLERS, **linear.HANDLERS, **window.HANDLERS, **elementwise.HANDLERS,
            **structure.HANDLERS}
#: ONNX/QONNX op types the front end lowers.
SUPPORTED_OPS = tuple(HANDLERS)


class Lowering:
    """State of one walk: the value of every ONNX tensor, the IR layers and tensor specs so far.

    ``input_format`` is the user's declaration of the input's integer domain (see
    :func:`lcp.ir.parse_input_format`) for a model that reads its float input directly.
    """

    def __init__(self, mw, name: str, input_format: str | None = None,
                 partition: dict | None = None):
        self.mw = mw
        self.partition = partition
        self.weights: dict[str, str] = {}     # weighted layer -> its ONNX weight tensor
        self.graph = mw.graph
        self.name = name
        self.input_format = input_format
        if input_format is not None:
            parse_input_format(input_format)
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
            self.values[init.name] = Const(numpy_helper.to_array(init))
        for i in self.graph.input:
            if i.name not in self.values:
                shape = mw.get_tensor_shape(i.name)
                self.values[i.name] = Raw(tuple(shape[1:]))

    # -- emitting ----------------------------------------------------------------------------
    def fresh(self, op: str) -> str:
        self.counter += 1
        return f"{op}{self.counter}"

    def emit(self, op: str, inputs: list[str], attrs=None, params=None, **spec) -> Layer:
        """Append a layer; its output spec is inferred (``spec`` overrides fields, e.g. the
        scale)."""
        name = self.fresh(op)
        layer = Layer(name, op, inputs, name, dict(attrs or {}), dict(params or {}))
        s = infer(layer, [self.specs[t] for t in inputs])
        self.specs[name] = s.with_(**spec) if spec else s
        self.layers.append(layer)
        return layer

    def reinfer(self):
        for layer in self.layers:
            old = self.specs.get(layer.output)
            new = infer(layer, [self.specs[t] for t in layer.inputs])
            if old is not None and old.scale is not None and new.scale is None:
                new = new.with_(scale=old.scale)
            self.specs[layer.output] = new

    # -- reading values ----------------------------------------------------------------------
    def const(self, node, name: str) -> np.ndarray:
        v = self.values.get(name)
        if isinstance(v, Const):
            return v.value
        raise node_error(node, f"input {name!r} must be a constant")

    def act(self, node, name: str) -> Act:
        v = self.values.get(name)
        if isinstance(v, Act):
            return v
        if isinstance(v, Raw):
            return self.declare_input(node, v)
        if isinstance(v, (Const, QConst)):
            raise node_error(node, f"input {name!r} is a constant where an activation is expected")
        raise node_error(node, f"input {name!r} is not available")

    def qact(self, node, name: str) -> tuple[Act, float]:
        """An activation with one positive scale (per tensor)."""
        a, s = self.scaled_act(node, name)
        if np.unique(s).size != 1:
            raise node_error(node, f"input {name!r} has one scale per channel; this op needs "
                                   f"one scale (requantize it with a per-tensor quantizer)")
        return a, float(s.reshape(-1)[0])

    def scaled_act(self, node, name: str) -> tuple[Act, np.ndarray]:
        """An activation whose chain is positive scales only: per-channel (an array) or per
        tensor (0-d), e.g. a concatenation of tensors quantized at different scales."""
        a = self.act(node, name)
        s = channel_scales(a)
        if s is None:
            raise node_error(node, f"input {name!r} is not a quantized activation (no Quant "
                                   f"between it and the previous layer)")
        return a, s

    def exclusive(self, node) -> bool:
        return all(len(self.consumers.get(o, [])) <= 1 for o in node.output)

    def propagate(self, node, a: Act, **changes) -> Act:
        new = Act(a.tensor, list(a.chain), a.producer, a.foldable and self.exclusive(node))
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    # -- the model input ---------------------------------------------------------------------
    def set_input(self, node, spec: InputSpec) -> None:
        if self.input_spec is not None:
            raise node_error(node, "the model input is quantized twice")
        if self.input_format is not None and not spec.declared:
            raise node_error(node, f"the model quantizes its input itself; --input-format "
                                   f"{self.input_format} applies only to a model that reads "
                                   f"the float input")
        self.input_spec = spec
        self.specs["input"] = TensorSpec(spec.shape, spec.lo, spec.hi,
                                         None if spec.bipolar else spec.scale, spec.bipolar)

    def input_tensor(self, raw: Raw) -> str:
        """The IR tensor of the quantized input (flattened if the raw input was)."""
        if raw.flat and len(self.specs["input"].shape) > 1:
            layer = self.emit("flatten", ["input"])
            return layer.output
        return "input"

    def declare_input(self, node, raw: Raw) -> Act:
        """A float op reads the model input: its integer domain is the user's declaration."""
        if self.input_format is None:
            raise node_error(node, "reads the model input unquantized: declare the input's "
                                   "integer domain with --input-format uint8|uint8:SCALE|"
                                   "int8:SCALE (or quantize it in the model, e.g. a Brevitas "
                                   "QuantIdentity)")
        if self.input_spec is None:
            scale, lo, hi = parse_input_format(self.input_format)
            self.set_input(node, InputSpec("input", raw.shape, scale, lo, hi,
                                           format=self.input_format))
        C = raw.shape[0]
        chain = [("mul", np.float64(self.input_spec.scale))]
        for op, k in raw.pre:
            k = np.asarray(k, dtype=np.float64)
            if k.size == 1:
                chain.append((op, k.reshape(())))
            elif k.size == C and (k.ndim == 1 or k.shape[1:] == (1,) * (k.ndim - 1)):
                chain.append((op, k.reshape(C)))
            else:
                raise node_error(node, f"a float input step with a constant of shape {k.shape} "
                                       f"is neither per tensor nor per channel")
        return Act(self.input_tensor(raw), chain)

    # -- sign folding ------------------------------------------------------------------------
    def fold_negative(self, node, a: Act) -> Act:
        """Make every channel's slope non-negative by negating producer weights."""
        C = self.specs[a.tensor].shape[0]
        neg = slope_sign(a.chain, C) < 0
        if not neg.any():
            return a
        p = a.producer
        if p is None or not a.foldable or self.specs[p.output].shape[0] != C:
            raise node_error(node, "a channel's requantization has a negative slope and cannot "
                                   "be folded into the producing layer")
        p.params["weight"][neg] *= -1
        w = p.params["weight"]
        if p.attrs["weight_format"] == "int" and w.size:
            p.attrs["weight_bits"] = max(p.attrs["weight_bits"], bits_for_range(
                min(int(w.min()), -1), max(int(w.max()), 0))[0])
        if p.bias is not None:
            p.params["bias"][neg] *= -1
        chain = per_channel(a.chain, C)
        op0, arr0 = chain[0]
        assert op0 == "mul"
        arr0 = arr0.copy()
        arr0[neg] *= -1
        chain[0] = ("mul", arr0)
        self.reinfer()
        return Act(a.tensor, chain, p, a.foldable)

    # -- the walk ----------------------------------------------------------------------------
    def run(self) -> Model:
        g = self.graph
        if len(g.input) != 1:
            raise FrontendError(f"the model has {len(g.input)} inputs; exactly one is supported")
        if len(g.output) != 1:
            raise FrontendError(f"the model has {len(g.output)} outputs; exactly one is "
                                f"supported")
        foreign = [n for n in g.node if n.op_type not in HANDLERS]
        if foreign:     # named before any handler runs: an LSTM, not the Transpose before it
            others = list(dict.fromkeys(n.op_type for n in foreign[1:]
                                        if n.op_type != foreign[0].op_type))
            also = f" (nor are {', '.join(others)}, also in this model)" if others else ""
            raise node_error(foreign[0], f"op type {foreign[0].op_type!r} is not supported{also} "
                                         f"(supported: {', '.join(SUPPORTED_OPS)})")
        for node in g.node:
            HANDLERS[node.op_type](self, node)
        if self.input_spec is None:
            raise FrontendError("the model input is never quantized by a Quant node (declare "
                                "its integer domain with --input-format if the model reads "
                                "the float input)")
        out = self.values.get(g.output[0].name)
        if not isinstance(out, Act) or out.tensor == "input":
            raise FrontendError(f"the model output {g.output[0].name!r} is not computed from "
                                f"the input")
        self.reinfer()
        dequant = _dequant(out, self.specs[out.tensor].shape[0])
        meta = {"weights": dict(self.weights)}
        if self.partition:
            meta["partition"] = self.partition
        model = Model(self.name, self.input_spec, dict(self.specs),
                      [Branch("branch0", ["input"], list(self.layers), out.tensor)],
                      Branch("merge", [out.tensor], [], out.tensor), dequant, meta)
        return model.validate()


def _dequant(out: Act, C: int) -> Dequant:
    """The output dequantization: the output's chain as one affine map per channel, then a
    ReLU if the chain ends with one."""
    chain = list(out.chain)
    relu = bool(chain) and chain[-1][0] == "relu"
    if relu:
        chain.pop()
    aff = affine(chain, C)
    if aff is None:
        raise FrontendError("the model output applies float ops after a ReLU without a "
                            "Quant; this output dequantization is not supported")
    return Dequant(aff[0], aff[1], relu)


def lower(mw, name: str, input_format: str | None = None, partition: dict | None = None) -> Model:
    """The flat IR model of a cleaned QONNX graph. ``meta["weights"]`` maps each weighted layer
    to its ONNX weight tensor; ``partition`` (ONNX weight tensor -> branch, from the model's
    ``lcp.partition`` metadata) is kept in ``meta["partition"]`` for :func:`split_branches`."""
    return Lowering(mw, name, input_format, partition).run()
