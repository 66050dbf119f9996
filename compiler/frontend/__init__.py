"""Front end: a QONNX model (as Brevitas' ``export_qonnx`` writes it) -> the integer IR.

A pipeline of small passes, each runnable and checkable on its own:

0. :func:`cleaned` (:mod:`.load`): the ONNX file, cleaned and shape-inferred by qonnx;
1. :func:`lower` (:mod:`.lower`): one walk over the graph, one handler per ONNX op type
   (:mod:`.quant`, :mod:`.linear`, :mod:`.window`, :mod:`.elementwise`, :mod:`.structure`),
   giving a flat IR model (one branch, empty merge);
2.-5. IR -> IR (:mod:`.passes`): requantization pushed into concatenations, consecutive
   thresholds fused, branches and merge split, readable names.

:func:`compile_onnx` runs them all. Branch structure: the concatenation that every path to the
output crosses, whose inputs come from disjoint sub-graphs, splits the model into branches and
the merge; without one the model is one branch and the merge is the last weighted layer
onwards.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..ir import Model
from .errors import BIT_RANGE, FrontendError
from .load import cleaned, load_onnx, prefold_constants
from .lower import SUPPORTED_OPS, lower
from .passes import fuse_thresholds, push_requant_into_concat, rename, split_branches

__all__ = ["FrontendError", "SUPPORTED_OPS", "BIT_RANGE", "load_onnx", "cleaned",
           "prefold_constants", "lower", "push_requant_into_concat", "fuse_thresholds",
           "split_branches", "rename", "PASSES", "PARTITION_KEY", "compile_onnx"]

#: The IR -> IR passes after lowering, in order.
PASSES = (push_requant_into_concat, fuse_thresholds, split_branches, rename)


#: ONNX metadata key of a model whose branches exchange tensors before the merge: a JSON
#: object ``{"weights": {ONNX weight tensor: branch index}}`` (written by the exporter of the
#: exchange family, :mod:`lcp.models`), so that each weighted layer lands on its branch.
PARTITION_KEY = "lcp.partition"


def _partition(proto) -> dict | None:
    for p in proto.metadata_props:
        if p.key == PARTITION_KEY:
            try:
                doc = json.loads(p.value)
                return {str(k): int(v) for k, v in doc["weights"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise FrontendError(f"metadata {PARTITION_KEY!r} is not a partition "
                                    f"({type(e).__name__}: {e})") from None
    return None


def compile_onnx(source, name: str | None = None, *, input_format: str | None = None) -> Model:
    """Lower a QONNX model (path or ``ModelProto``) to a validated integer IR model.

    ``input_format`` declares the integer domain of a float input the model reads directly
    (``uint8``, ``uint8:SCALE``, ``int8:SCALE``; see :func:`lcp.ir.parse_input_format`).
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
    model = lower(mw, name, input_format, _partition(proto))
    for p in PASSES:
        model = p(model)
    model.meta.update({"source": src, "producer": proto.producer_name,
                       "producer_version": proto.producer_version})
    return model
