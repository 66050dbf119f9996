"""The independent oracle: run a QONNX model with qonnx's own op implementations.

Two precisions:

``float32``
    ``qonnx.core.onnx_exec.execute_onnx`` unchanged: qonnx's executor, standard ops through
    onnxruntime in float32, exactly as FINN and qonnx users run it. Its float32 convolutions
    round, so a value that lands within float32 error of a quantizer's rounding tie can come
    out one step away from the exact result.
``float64`` (default)
    The same graph with every computed tensor in float64: ONNX's reference evaluator
    (``onnx.reference``) for the standard ops, its ``Conv`` vectorised
    (:mod:`lcp.oracle_conv`), and qonnx's ``int_quant``/``trunc`` functions for
    ``Quant``/``Trunc``. The graph is prepared with qonnx's domain fix, shape inference and constant
    folding only: the reference evaluator needs neither qonnx's renaming passes nor its shape
    annotations, which cost a minute per run on a MobileNet export. A ``Quant`` on float32 data (the model input, the weights) divides in
    float32 as Brevitas and qonnx do, then dequantizes exactly. This is the arithmetic the
    model describes, up to float64 rounding (about 1e-16), and the golden reference must equal
    it bit for bit.

Neither path shares code with the front end or the golden reference.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .executor import Executor
from .ir import IRError, Model
from .oracle_conv import conv

__all__ = ["run_oracle", "PRECISIONS", "QonnxExecutor"]

PRECISIONS = ("float64", "float32")


def _prefold(mw, keep=("Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear")):
    """Fold every node computed from constants only, in one topological pass, with qonnx's own
    ``execute_node`` (the numerics of its ``FoldConstants``, which folds one node per round and
    re-sorts the graph after each: minutes on a ResNet-18 export)."""
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


def _load(source):
    return onnx.load(str(source)) if isinstance(source, (str, Path)) else source


def _cleaned(source):
    """qonnx's own ``cleanup_model`` (shape inference, constant folding): the oracle shares no
    code with the front end."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cleanup_model(_prefold(ModelWrapper(_load(source)).transform(InferShapes())))


_QONNX_OPS = ("Quant", "Trunc", "BipolarQuant")


def _folded(source):
    """The float64 path's graph: qonnx's op domains set (as ``cleanup_model`` does), its shapes
    inferred and every constant-only node folded (:func:`_prefold`)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    proto = onnx.ModelProto()
    proto.CopyFrom(_load(source))
    for n in proto.graph.node:
        if n.op_type in _QONNX_OPS:
            n.domain = "qonnx.custom_op.general"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _prefold(ModelWrapper(proto, fix_missing_initializer_valueinfo=False)
                        .transform(InferShapes(), make_deepcopy=False, cleanup=False))


def _run_float32(mw, x: np.ndarray) -> np.ndarray:
    from qonnx.core.onnx_exec import execute_onnx

    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    outs = []
    for xi in x:   # the exported graph has batch 1 baked into its shapes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs.append(execute_onnx(mw, {iname: xi[None].astype(np.float32)})[oname])
    return np.concatenate(outs, axis=0)


def _run_float64(mw, x: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.intquant import int_quant
    from qonnx.custom_op.general.trunc import trunc_v2

    class Quant(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):
            rm = rounding_mode.decode() if isinstance(rounding_mode, bytes) else rounding_mode
            y = int_quant(x, scale, zeropt, bitwidth, signed, narrow, rm)
            if y.dtype != np.float64:
                # float32 data: keep qonnx's float32 integers, dequantize exactly
                s64, z64 = scale.astype(np.float64), zeropt.astype(np.float64)
                q = np.round(y.astype(np.float64) / s64 + z64)
                y = (q - z64) * s64
            return (y,)

    class BipolarQuant(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, scale):
            return (binary_quant(x, scale.astype(np.float64)),)

    class Conv(OpRun):
        op_domain = ""

        def _run(self, x, w, b=None, auto_pad="NOTSET", dilations=None, group=1,
                 kernel_shape=None, pads=None, strides=None):
            return (conv(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
                         kernel_shape=kernel_shape, pads=pads, strides=strides),)

    def promoting(name, fn):
        """ONNX's elementwise op with numpy's type promotion: float32 constants meet float64
        activations (the float32 input and its constants stay float32)."""
        return type(name, (OpRun,), {"op_domain": "", "_run": lambda self, a, b: (fn(a, b),)})

    elementwise = [promoting(n, f) for n, f in (("Add", np.add), ("Sub", np.subtract),
                                               ("Mul", np.multiply), ("Div", np.divide))]

    class Trunc(OpRun):
        op_domain = "qonnx.custom_op.general"

        def _run(self, x, scale, zeropt, in_bits, out_scale, out_bits, narrow=0, signed=1,
                 rounding_mode="FLOOR"):
            rm = rounding_mode.decode() if isinstance(rounding_mode, bytes) else rounding_mode
            return (trunc_v2(x.astype(np.float64), scale, zeropt, in_bits, narrow, signed,
                             out_scale, out_bits, rm),)

    proto = onnx.ModelProto()
    proto.CopyFrom(mw.model)
    g = proto.graph
    # let flatten-style Reshapes take any batch size
    shapes = {n.input[1] for n in g.node if n.op_type == "Reshape"}
    for init in g.initializer:
        if init.name in shapes:
            v = numpy_helper.to_array(init)
            if v.ndim == 1 and v.size == 2 and v[0] == 1:
                new = [0, -1] if v[1] == -1 else [-1, v[1]]   # 0: keep the batch axis
                init.CopyFrom(numpy_helper.from_array(np.array(new, dtype=v.dtype), init.name))
    exact_input = x.dtype == np.float64
    for vi in list(g.value_info) + list(g.output) + (list(g.input) if exact_input else []):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    del g.value_info[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = ReferenceEvaluator(proto, new_ops=[Quant, BipolarQuant, Trunc, Conv, *elementwise])
        (y,) = ev.run(None, {g.input[0].name: x if exact_input else x.astype(np.float32)})
    return np.asarray(y, dtype=np.float64)


def run_oracle(source, x: np.ndarray, precision: str = "float64", batch: int = 256) -> np.ndarray:
    """Run the QONNX model ``source`` (path or ``ModelProto``) on float inputs ``x`` (batch
    first) and return its float output.

    With ``precision="float64"``, float64 inputs are fed as they are (the exact real values
    of a declared input format, e.g. ``k / 255``, which float32 cannot hold); any other dtype
    is fed as float32, the model's own input type."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "float64":
        mw, run = _folded(source), _run_float64
    else:
        mw, run = _cleaned(source), _run_float32
    x = np.asarray(x)
    return np.concatenate([run(mw, x[i:i + batch]) for i in range(0, len(x), batch)], axis=0)


class QonnxExecutor(Executor):
    """``--backend qonnx``: the oracle on the source ONNX file (option ``precision``).

    ``run_int`` feeds the exact float image of the integer input and maps the float output
    back to integers with the IR's dequantization (``round((y - offset) / scale)``).
    """

    name = "qonnx"

    def __init__(self, model: Model, *, source=None, precision: str = "float64", **kwargs):
        super().__init__(model, source=source, **kwargs)
        if self.source is None:
            raise IRError("the qonnx backend needs the source ONNX model")
        if precision not in PRECISIONS:
            raise IRError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.precision = precision

    def run(self, x: np.ndarray) -> np.ndarray:
        spec = self.model.input
        q = spec.quantize(x)     # same shape and dtype checks as every backend
        if spec.declared and self.precision == "float64":
            return run_oracle(self.source, spec.dequantize(q), self.precision)
        return run_oracle(self.source, np.asarray(x, dtype=np.float32), self.precision)

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        y = self.run(self.model.input.dequantize(xq))
        d = self.model.dequant
        if d.relu:
            raise IRError("cannot recover integers through an output ReLU")
        shape = (1, -1) + (1,) * (y.ndim - 2)
        return np.round((y - d.offset.reshape(shape)) / d.scale.reshape(shape)).astype(np.int64)
