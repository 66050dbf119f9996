"""Front-end pass 0: read an ONNX file and clean it (``ModelProto`` -> :class:`Graph`: constants
folded, shapes inferred, node names unique)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from .errors import FrontendError

__all__ = ["FrontendError", "Graph", "QUANTIZERS", "load_onnx", "prefold_constants",
           "cleaned"]


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


#: QONNX quantizers: never folded, and shape-preserving (their output has input 0's shape).
QUANTIZERS = ("Quant", "BipolarQuant", "Trunc", "QuantizeLinear", "DequantizeLinear")


class Graph:
    """A cleaned ONNX model with O(1) lookups: ``model`` (``ModelProto``), ``graph``,
    :meth:`get_tensor_shape` and :meth:`get_initializer` (what the lowering reads)."""

    def __init__(self, model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]):
        self.model = model
        self.graph = model.graph
        self._shapes = shapes
        self._inits = {i.name: i for i in model.graph.initializer}

    def get_tensor_shape(self, name: str) -> list[int] | None:
        s = self._shapes.get(name)
        return list(s) if s is not None else None

    def get_initializer(self, name: str):
        i = self._inits.get(name)
        return numpy_helper.to_array(i) if i is not None else None


def _run_node(node, inputs: dict, opset: int) -> list:
    """One standard ONNX node on constant inputs, in onnxruntime (the numerics qonnx's and
    FINN's constant folding use)."""
    ins = [onnx.helper.make_tensor_value_info(
        k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()]
    outs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output]
    g = onnx.helper.make_graph([node], "fold", ins, outs)
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, inputs)
    except Exception:       # an op or type onnxruntime lacks: ONNX's reference implementation
        return ReferenceEvaluator(node).run(None, inputs)


def prefold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every node computed from constants only (shape arithmetic, the bit widths Brevitas
    computes for a ``Trunc``, weight transposes, a ``TensorNorm``'s square root), in one
    topological pass, each node run by onnxruntime. Quantizers (:data:`QUANTIZERS`) are never
    folded."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    keep = []
    for n in g.node:
        if n.op_type in QUANTIZERS or n.domain not in ("", "ai.onnx") or \
                any(i and i not in consts for i in n.input) or not n.input:
            if n.op_type == "Constant" and not n.input:
                out = ReferenceEvaluator(n).run(None, {})
                consts[n.output[0]] = out[0]
                g.initializer.append(numpy_helper.from_array(np.asarray(out[0]), n.output[0]))
                continue
            keep.append(n)
            continue
        outs = _run_node(n, {i: consts[i] for i in n.input if i}, opset)
        for name, v in zip(n.output, outs):
            consts[name] = np.asarray(v)
            g.initializer.append(numpy_helper.from_array(np.asarray(v), name))
    del g.node[:]
    g.node.extend(keep)
    return model


def _infer_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor: ONNX's shape inference on a copy in which each custom op
    (a QONNX quantizer) stands in as an Identity of its first input."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = []
    for n in m.graph.node:
        if n.domain not in ("", "ai.onnx"):
            nodes.append(onnx.helper.make_node("Identity", [n.input[0]], [n.output[0]],
                                               name=n.name))
        else:
            nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    del m.graph.value_info[:]
    m = onnx.shape_inference.infer_shapes(m)
    shapes = {}
    for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    for i in m.graph.initializer:
        shapes[i.name] = tuple(i.dims)
    return shapes


def cleaned(model: onnx.ModelProto) -> Graph:
    """The model ready for lowering: constants folded, nodes named ``{op_type}_{k}`` (as qonnx's
    ``GiveUniqueNodeNames`` names them), initializers removed from the graph inputs, unused
    initializers dropped, every tensor's static shape known.

    The same result as qonnx's ``cleanup_model`` for what the lowering reads, in time linear in
    the graph (qonnx's transformations look tensors up by scanning the graph: 170 s for a
    ResNet-50 split2, 40 min for the ImageNet ResNet-50 split8).
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:                   # Brevitas leaves the domain empty at times
        if n.op_type in ("Quant", "BipolarQuant", "Trunc"):
            n.domain = "qonnx.custom_op.general"
    g = m.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    del g.input[:]
    g.input.extend(real_inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prefold_constants(m)
    counts: dict[str, int] = {}
    for n in g.node:
        k = counts.get(n.op_type, 0)
        counts[n.op_type] = k + 1
        n.name = f"{n.op_type}_{k}"
    used = {t for n in g.node for t in n.input} | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return Graph(m, _infer_shapes(m))
