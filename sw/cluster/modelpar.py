"""Model parallelism as an IR transform: every layer's output channels divided over ``K``
nodes, an all-gather wherever a layer needs the whole tensor.

:func:`model_parallel` turns a single-branch model into an equivalent exchange model
(:attr:`lcp.ir.Model.exchanges`) of ``K`` branches, which the ``exchange`` strategy serves
node to node. Each tensor of the original branch is either *sliced* (branch ``k`` holds
channels ``bounds[k]``) or *full* (every branch holds all of it). Walking the branch in order:

- a conv (``groups == 1``) or dense layer with at least ``K`` outputs, whose input is full,
  computes its slice of output channels (weight and bias rows) in every branch;
- a layer that works channel by channel (threshold, relu, max/avg pool, depthwise conv,
  ``add`` of two tensors sliced alike) and ``flatten`` keep a sliced input sliced;
- any other layer first gathers its sliced inputs (a ``concat`` in each branch of its own slice
  and the others' slices, which are the exchanged tensors) and runs on the full tensor in every
  branch.

So the tensors that cross the network are the activations before every layer that needs them
whole, after the pools that can run on slices ("all-gather after each layer"). The branch
output is sliced (sliced by a ``slice`` layer if the last layer ran full) and the merge
concatenates the slices before the original merge layers. Every layer keeps its integer
semantics: golden on the result equals golden on the original, bit for bit.
"""

from __future__ import annotations

import numpy as np

from lcp.ir import Branch, IRError, Layer, Model

__all__ = ["model_parallel", "CHANNELWISE"]

#: Ops that compute each channel from the same channel only (their params, if any, per row).
CHANNELWISE = ("threshold", "relu", "maxpool", "avgpool")


def _bounds(c: int, k: int) -> list[tuple[int, int]]:
    cuts = np.linspace(0, c, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


def model_parallel(model: Model, nodes: int) -> Model:
    """The ``nodes``-branch model-parallel version of a single-branch ``model`` (module doc).

    Raises
    ------
    IRError
        for a model with several branches (serve it with ``lcp`` or ``exchange``) or
        ``nodes < 2``.
    """
    if len(model.branches) != 1:
        raise IRError(f"{model.name}: model parallelism divides a single-branch model, this one "
                      f"has {len(model.branches)} branches (use the lcp or exchange strategy)")
    if nodes < 2:
        raise IRError(f"model parallelism needs at least 2 nodes, not {nodes}")
    K = nodes
    specs = dict(model.tensors)
    src = model.branches[0]
    sliced: dict[str, list[tuple[int, int]]] = {}       # tensor -> channel bounds per branch
    layers: list[list[Layer]] = [[] for _ in range(K)]
    extra: list[list[str]] = [[] for _ in range(K)]
    gathered: dict[str, str] = {}                         # tensor -> name of its gather

    def part(t: str, k: int) -> str:
        return t if t == model.input.name else f"{t}@{k}"

    def full(t: str, k: int) -> str:
        """Name of the whole tensor ``t`` in branch ``k`` (gathering it if sliced)."""
        if t not in sliced:
            return part(t, k)
        g = gathered.get(t)
        if g is None:
            g = gathered[t] = f"{t}@all"
        name = f"{g}{k}"
        if name not in specs:
            ins = [part(t, j) for j in range(K)]
            for j in range(K):
                if j != k and ins[j] not in extra[k]:
                    extra[k].append(ins[j])
            layers[k].append(Layer(f"gather_{t}@{k}", "concat", ins, name, {}, {}))
            specs[name] = model.tensors[t]
        return name

    def add_sliced(l: Layer, bounds, make_params, attrs_for=None, whole_inputs=False):
        spec = model.tensors[l.output]
        for k, (a, b) in enumerate(bounds):
            out = part(l.output, k)
            ins = [full(t, k) if whole_inputs else part(t, k) for t in l.inputs]
            attrs = dict(l.attrs) if attrs_for is None else attrs_for(a, b)
            layers[k].append(Layer(f"{l.name}@{k}", l.op, ins, out, attrs, make_params(a, b)))
            specs[out] = spec.with_(shape=(b - a, *spec.shape[1:]))
        sliced[l.output] = bounds

    for l in src.layers:
        ins_sliced = [t in sliced for t in l.inputs]
        c_out = model.tensors[l.output].shape[0]
        if l.op in ("conv", "dense") and (l.op == "dense" or l.attrs.get("groups", 1) == 1) \
                and c_out >= K:
            add_sliced(l, _bounds(c_out, K),
                       lambda a, b, l=l: {n: v[a:b].copy() for n, v in l.params.items()},
                       whole_inputs=True)
            continue
        if all(ins_sliced) and len({tuple(sliced[t]) for t in l.inputs}) == 1:
            bounds = sliced[l.inputs[0]]
            c_in = model.tensors[l.inputs[0]].shape[0]
            if l.op in CHANNELWISE or l.op == "add":
                def params(a, b, l=l):
                    return {n: v[a:b].copy() if v.shape[0] == c_out > 1 else v.copy()
                            for n, v in l.params.items()}
                add_sliced(l, bounds, params)
                continue
            if l.op == "flatten":
                hw = c_out // c_in
                add_sliced(l, [(a * hw, b * hw) for a, b in bounds], lambda a, b: {})
                continue
            if l.op == "conv" and l.attrs.get("groups", 1) == c_out == c_in:    # depthwise
                add_sliced(l, bounds,
                           lambda a, b, l=l: {n: v[a:b].copy() for n, v in l.params.items()},
                           lambda a, b, l=l: {**l.attrs, "groups": b - a})
                continue
        for k in range(K):                                   # whole tensor, every branch
            ins = [full(t, k) for t in l.inputs]
            layers[k].append(Layer(f"{l.name}@{k}", l.op, ins, part(l.output, k),
                                   dict(l.attrs), {n: v.copy() for n, v in l.params.items()}))
            specs[part(l.output, k)] = model.tensors[l.output]

    out = src.output
    if out not in sliced:                                    # hand the merge one slice each
        spec = model.tensors[out]
        bounds = _bounds(spec.shape[0], K)
        if any(a == b for a, b in bounds):
            raise IRError(f"{model.name}: the branch output has {spec.shape[0]} channels, "
                          f"fewer than {K} nodes")
        for k, (a, b) in enumerate(bounds):
            name = f"{out}@out{k}"
            layers[k].append(Layer(f"slice_{out}@{k}", "slice", [part(out, k)], name,
                                   {"start": a, "stop": b}, {}))
            specs[name] = spec.with_(shape=(b - a, *spec.shape[1:]))
        outs = [f"{out}@out{k}" for k in range(K)]
    else:
        outs = [part(out, k) for k in range(K)]
    cat = Layer(f"gather_{out}@merge", "concat", outs, f"{out}@merge", {}, {})
    specs[cat.output] = model.tensors[out]
    merge_layers = [cat] + [Layer(l.name, l.op, [cat.output if t == out else t
                                                 for t in l.inputs], l.output, l.attrs, l.params)
                            for l in model.merge.layers]
    merge_out = model.merge.output if model.merge.layers else cat.output
    used = {model.input.name, *(t for ls in layers for l in ls for t in l.inputs),
            *(l.output for ls in layers for l in ls), *(t for l in merge_layers for t in l.inputs),
            *(l.output for l in merge_layers)}
    tensors = {t: s for t, s in specs.items() if t in used}
    branches = [Branch(f"branch{k}", [model.input.name, *extra[k]], layers[k], outs[k])
                for k in range(K)]
    meta = {k: v for k, v in model.meta.items() if k not in ("weights",)}
    meta["model_parallel"] = K
    return Model(f"{model.name}:mp{K}", model.input, tensors, branches,
                 Branch("merge", outs, merge_layers, merge_out), model.dequant, meta).validate()
