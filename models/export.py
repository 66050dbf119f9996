"""QONNX export of LCP networks and the export contract the compiler relies on.

Export contract (checked by :func:`check_export_contract`):

1. The first node is a ``Quant`` reading the graph input: unsigned (``signed=0``), 8 bit,
   scale 1/255, zero point 0.
2. Only these ops occur: ``Quant``, ``Conv``, ``Gemm``, ``Relu``, ``BatchNormalization``,
   ``MaxPool``, ``GlobalAveragePool``/``ReduceMean`` and ``Trunc`` (the global average pool),
   ``Flatten``/``Reshape``, ``Add``, ``Concat``. No ``Mul``, ``Dropout``, ``Softmax``.
3. The data input of every ``Conv``/``Gemm`` is an activation ``Quant`` output, possibly through
   ``MaxPool``, average pool, ``Trunc``, ``Flatten``/``Reshape`` or ``Concat`` (of such outputs);
   its weight and bias inputs are ``Quant`` of initializers. So there is no conv->conv without an
   activation quantizer in between.
4. The graph output is produced by one ``Gemm`` (the merge, no quantizer after it). For
   ``split > 1`` its input is the only ``Concat`` (axis 1), whose ``split`` inputs are ``Quant``
   nodes after a ``Relu`` (the shared branch QuantReLU) with one scale value, zero point and bit
   width; for ``split == 1`` the Gemm reads that ``Quant`` directly (no ``Concat``).
5. Every ``Add`` (residual) reads two activation ``Quant`` outputs with one scale value, and its
   only consumer is a ``Relu`` followed by a ``Quant`` (QuantReLU).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from brevitas.export import export_qonnx as _brevitas_export_qonnx
from brevitas.graph.calibrate import finalize_collect_stats

from .common import INPUT_BITS, INPUT_SCALE
from .exchange import PARTITION_KEY, partition_metadata

__all__ = ["export_qonnx", "example_input", "calibrate", "check_export_contract",
           "CONTRACT_OPS", "without_graph_lint"]

#: Op types allowed in an exported LCP network.
CONTRACT_OPS = frozenset({
    "Quant", "Conv", "Gemm", "Relu", "BatchNormalization", "MaxPool", "GlobalAveragePool",
    "ReduceMean", "Trunc", "Flatten", "Reshape", "Add", "Concat",
})
_PASS_THROUGH = {"MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Trunc",
                 "Flatten", "Reshape"}


@contextlib.contextmanager
def without_graph_lint():
    """TorchScript's ONNX export without its graph lint passes (``torch._C._jit_pass_lint``).

    The lint is a consistency check that leaves the graph unchanged, run about ten times per
    export, and it grows faster than the graph: on ResNet-50 split8 (eight bottleneck branches)
    it kept the export busy for over an hour, against under two minutes for split4. The exported
    file is byte for byte the same with and without it (tests/models/test_models_export.py).
    """
    lint = torch._C._jit_pass_lint
    torch._C._jit_pass_lint = lambda graph: None
    try:
        yield
    finally:
        torch._C._jit_pass_lint = lint


def example_input(in_shape, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Random images ``(batch, *in_shape)`` on the input grid ``k/255``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *in_shape), generator=g).float() / 255.0


def calibrate(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> torch.nn.Module:
    """Set activation scales (and BatchNorm statistics) of an untrained model from ``batches``.

    Runs the batches in training mode without gradients, fixes every activation scale to its
    collected statistic and returns the model in eval mode. For random-weight models that are
    exported or compiled; training does this by itself.
    """
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    model.apply(finalize_collect_stats)
    return model.eval()


def export_qonnx(model: torch.nn.Module, path, *, dynamo: bool = False,
                 example: torch.Tensor | None = None) -> Path:
    """Export ``model`` (eval mode) to QONNX at ``path``; return the path.

    Parameters
    ----------
    model : LCPNet
        Exported in eval mode; its training flag is restored afterwards.
    path : str or Path
        The ``.onnx`` file; its folder is created. With ``dynamo=True`` the weights go to an extra
        ``path + ".data"`` file next to it. An exchange net
        (:class:`~lcp.models.exchange.ExchangeNet`) gets its branch partition as the model's
        ``lcp.partition`` metadata.
    dynamo : bool
        Use the torch.export based exporter (default: TorchScript, one self-contained file).
    example : Tensor, optional
        Example input; default one random image of ``model.in_shape`` on the 1/255 grid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if example is None:
        example = example_input(model.in_shape)
    was_training = model.training
    model.eval()
    try:
        with without_graph_lint():
            _brevitas_export_qonnx(model, example, export_path=os.fspath(path), dynamo=dynamo)
    finally:
        model.train(was_training)
    part = partition_metadata(model)
    if part is not None:               # branches that exchange: tell the compiler which is which
        import onnx
        proto = onnx.load(os.fspath(path), load_external_data=False)
        proto.metadata_props.add(key=PARTITION_KEY, value=part)
        onnx.save(proto, os.fspath(path))
    return path


class _Graph:
    """Producer/consumer maps and constant values of a raw ONNX graph (no qonnx cleanup, which
    takes minutes on a ResNet: nodes computed only from constants count as constants)."""

    def __init__(self, model):
        from onnx import numpy_helper

        g = model.graph
        self.nodes = list(g.node)
        self.values = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.const = set(self.values)
        self.producer, self.consumers = {}, {}
        for n in self.nodes:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.values[n.output[0]] = numpy_helper.to_array(a.t)
            if n.op_type == "Constant" or all(i in self.const for i in n.input if i):
                self.const.update(n.output)
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def is_const(self, node) -> bool:
        return all(o in self.const for o in node.output)

    def quant_params(self, node):
        """(scale, zero point, bit width) arrays of a Quant node, or None if not constant."""
        vals = [self.values.get(name) for name in node.input[1:4]]
        return None if any(v is None for v in vals) else vals


def check_export_contract(path, split: int | None = None) -> list[str]:
    """Check an exported LCP network against the export contract (module docstring).

    Nodes computed only from constants (weight quantizers, bit-width arithmetic) are treated as
    constants, as a constant-folding pass would.

    Parameters
    ----------
    path : str or Path
        A QONNX file written by :func:`export_qonnx` (either exporter).
    split : int, optional
        Expected number of branches (inputs of the ``Concat``).

    Returns
    -------
    list of str
        One line per violation; empty when the graph obeys the contract.
    """
    import onnx

    bad: list[str] = []
    gr = _Graph(onnx.load(os.fspath(path)))
    model_in = onnx.load(os.fspath(path), load_external_data=False).graph
    g_in = model_in.input[0].name
    data_nodes = [n for n in gr.nodes if not gr.is_const(n)]
    producer = gr.producer.get

    def consumers(t):
        return gr.consumers.get(t, [])

    def is_act_quant(node):
        return node is not None and node.op_type == "Quant" and not gr.is_const(node)

    def attr(node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    first = gr.nodes[0]
    if first.op_type != "Quant" or first.input[0] != g_in:
        bad.append(f"first node is {first.op_type} on {list(first.input)[:1]}, "
                   f"not Quant on the input {g_in!r}")
    for node in data_nodes:
        if node.op_type not in CONTRACT_OPS:
            bad.append(f"op {node.op_type} ({node.name}) is not allowed")

    readers = consumers(g_in)
    if len(readers) != 1 or readers[0].op_type != "Quant":
        bad.append(f"graph input read by {[n.op_type for n in readers]}, not one Quant")
    else:
        q = gr.quant_params(readers[0])
        if q is None:
            bad.append("input Quant parameters are not constant")
        else:
            scale, zp, bits = (np.asarray(v, dtype=np.float64) for v in q)
            if scale.size != 1 or not np.isclose(scale.item(), INPUT_SCALE, rtol=1e-6, atol=0):
                bad.append(f"input scale {scale.ravel()[:4]} is not 1/255")
            if np.any(zp != 0) or bits.item() != INPUT_BITS or attr(readers[0], "signed") != 0:
                bad.append(f"input Quant is not unsigned {INPUT_BITS} bit with zero point 0")

    def data_ok(tensor, depth=0) -> bool:
        p = producer(tensor)
        if p is None or depth > 64:
            return False
        if is_act_quant(p):
            return True
        if p.op_type in _PASS_THROUGH:
            return data_ok(p.input[0], depth + 1)
        if p.op_type == "Concat":
            return all(data_ok(t, depth + 1) for t in p.input)
        return False

    def param_ok(tensor) -> bool:
        p = producer(tensor)
        return p is not None and p.op_type == "Quant" and gr.is_const(p)

    for node in data_nodes:
        if node.op_type in ("Conv", "Gemm"):
            if not data_ok(node.input[0]):
                src = producer(node.input[0])
                bad.append(f"{node.op_type} {node.name} reads {src.op_type if src else 'input'}, "
                           "not a quantized activation")
            if not all(param_ok(t) for t in node.input[1:] if t):
                bad.append(f"{node.op_type} {node.name} has an unquantized weight or bias")

    def same_quant(nodes, what):
        params = [gr.quant_params(n) for n in nodes]
        if any(p is None for p in params):
            bad.append(f"{what}: quantizer parameters are not constant")
            return
        for p in params[1:]:
            if not all(np.array_equal(a, b) for a, b in zip(params[0], p)):
                bad.append(f"{what}: operands have different scale/zero point/bit width")
                return

    outs = [producer(o.name) for o in model_in.output]
    concats = [n for n in data_nodes if n.op_type == "Concat"]
    if len(outs) != 1 or outs[0] is None or outs[0].op_type != "Gemm":
        bad.append(f"graph output comes from {[o.op_type if o else None for o in outs]}, "
                   "not one Gemm")
    if len(outs) == 1 and outs[0] is not None and outs[0].op_type in ("Gemm", "MatMul"):
        src = producer(outs[0].input[0])
        if src is not None and src.op_type == "Concat":
            if len(concats) != 1:
                bad.append(f"{len(concats)} Concat nodes, expected one")
            if attr(src, "axis") != 1:
                bad.append(f"Concat axis {attr(src, 'axis')}, expected 1")
            if split is not None and len(src.input) != split:
                bad.append(f"Concat has {len(src.input)} inputs, expected split={split}")
            branch_q = [producer(t) for t in src.input]
        else:
            if split not in (None, 1):
                bad.append(f"merge Gemm reads {src.op_type if src else 'input'}, "
                           f"expected a Concat of {split}")
            if concats:
                bad.append("a Concat that does not feed the merge")
            branch_q = [src]
        if not all(is_act_quant(q) for q in branch_q):
            bad.append("merge input is not (a Concat of) quantized activations")
        else:
            relu = [producer(q.input[0]) for q in branch_q]
            if not all(r is not None and r.op_type == "Relu" for r in relu):
                bad.append("branch outputs are not QuantReLU outputs")
            same_quant(branch_q, "branch outputs")
        if consumers(outs[0].output[0]):
            bad.append("the merge Gemm output is consumed by another node")

    for node in data_nodes:
        if node.op_type != "Add":
            continue
        qs = [producer(t) for t in node.input]
        if not all(is_act_quant(q) for q in qs):
            bad.append(f"Add {node.name} reads {[q.op_type if q else None for q in qs]}, "
                       "not two quantized activations")
        else:
            same_quant(qs, f"Add {node.name}")
        cons = consumers(node.output[0])
        nxt = consumers(cons[0].output[0]) if len(cons) == 1 else []
        if not (len(cons) == 1 and cons[0].op_type == "Relu" and len(nxt) == 1
                and nxt[0].op_type == "Quant"):
            bad.append(f"Add {node.name} is not followed by a QuantReLU")
    return bad
