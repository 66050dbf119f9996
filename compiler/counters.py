"""Counters computed from the IR (never by hand): parameters, MACs, activation memory and
the bytes that cross the network per inference.

All sizes are per image. Tensor bytes are bit-packed (``ceil(elements * bits / 8)``) at the
tensor's wire width (its IR bit width, one bit for a bipolar tensor); parameter bytes at the
weight width (``weight_bits``, one bit for bipolar weights) and at the bias' exact width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .ir import Branch, Layer, Model

__all__ = ["LayerCount", "GraphCount", "ModelCount", "count_layer", "count_graph", "count"]


@dataclass
class LayerCount:
    name: str
    op: str
    params: int
    param_bytes: int
    macs: int
    out_bytes: int


@dataclass
class GraphCount:
    """One branch or the merge: totals and the peak of live activation bytes while it runs
    layer by layer (inputs and outputs included)."""

    name: str
    params: int
    param_bytes: int
    macs: int
    peak_activation_bytes: int
    input_bytes: int
    output_bytes: int
    layers: list[LayerCount] = field(default_factory=list)


@dataclass
class ModelCount:
    name: str
    branches: int
    params: int
    param_bytes: int
    macs: int
    peak_activation_bytes: int         # largest over branches and merge (one device each)
    peak_activation_bytes_single: int  # everything on one device, branches one after another
    traffic_bytes: int                 # input to every branch + every branch output to merge
                                       # + every exchanged tensor to each branch reading it
    input_bytes: int
    graphs: list[GraphCount] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def count_layer(model: Model, layer: Layer) -> LayerCount:
    """Counters of one layer, from its op's definition (:mod:`lcp.ops`)."""
    out = model.tensors[layer.output]
    op = layer.opdef
    return LayerCount(layer.name, layer.op, op.param_count(layer),
                      (op.param_bits(layer) + 7) // 8, op.macs(layer, out), out.nbytes)


def count_graph(model: Model, graph: Branch) -> GraphCount:
    layers = [count_layer(model, l) for l in graph.layers]
    last_use: dict[str, int] = {}
    for i, l in enumerate(graph.layers):
        for t in l.inputs:
            last_use[t] = i
    live = {t: model.tensors[t].nbytes for t in graph.inputs}
    peak = sum(live.values())
    for i, l in enumerate(graph.layers):
        live[l.output] = model.tensors[l.output].nbytes
        peak = max(peak, sum(live.values()))
        for t in [t for t in live if last_use.get(t, -1) <= i and t != graph.output]:
            live.pop(t)
    return GraphCount(
        graph.name, sum(c.params for c in layers), sum(c.param_bytes for c in layers),
        sum(c.macs for c in layers), peak,
        sum(model.tensors[t].nbytes for t in graph.inputs), model.tensors[graph.output].nbytes,
        layers)


def count(model: Model) -> ModelCount:
    """All counters of ``model``."""
    graphs = [count_graph(model, g) for g in model.graphs]
    inp = model.tensors[model.input.name].nbytes
    branch_out = sum(model.tensors[b.output].nbytes for b in model.branches)
    exchanged = sum(model.tensors[t].nbytes for t, _, _ in model.exchanges)
    # one device: the branches' layers in schedule order, then the merge, with liveness
    whole = Branch("all", [model.input.name],
                   [l for _, l in model.schedule()] + list(model.merge.layers), model.output)
    single = count_graph(model, whole).peak_activation_bytes
    return ModelCount(
        name=model.name, branches=len(model.branches),
        params=sum(g.params for g in graphs), param_bytes=sum(g.param_bytes for g in graphs),
        macs=sum(g.macs for g in graphs),
        peak_activation_bytes=max(g.peak_activation_bytes for g in graphs),
        peak_activation_bytes_single=single,
        traffic_bytes=inp * len(model.branches) + branch_out + exchanged, input_bytes=inp,
        graphs=graphs)
