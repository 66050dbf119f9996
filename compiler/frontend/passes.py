"""Front-end passes 2..5 on the IR (each ``Model -> Model``, each result validated):

:func:`push_requant_into_concat`
    ``threshold(concat(a, b))`` -> ``concat(threshold(a), threshold(b))`` when the concat has
    no other reader and no input gets wider, so branches send low-bit activations to the merge
    (and a concatenation of differently scaled tensors is requantized per input, exactly); a
    branch receiving narrower tensors at an exchange point requantizes them after they cross.
:func:`fuse_thresholds`
    ``threshold(threshold(x))`` -> one ``threshold(x)`` when nothing else reads the inner
    one (an LCP branch's own quantizer followed by the merge's requantization).
:func:`split_branches`
    the flat model (one branch, empty merge) -> branches and merge.
:func:`rename`
    readable names: ``b{i}_{op}{k}`` in branch i, ``m_{op}{k}`` in the merge.

Passes 2..4 expect a flat model (everything in one branch), as :mod:`lcp.frontend.lower`
writes it.
"""

from __future__ import annotations

import numpy as np

from ..ir import Branch, IRError, Layer, Model, infer
from .errors import FrontendError

__all__ = ["push_requant_into_concat", "fuse_thresholds", "split_branches", "rename",
           "SHAREABLE"]

#: Ops the branches of an LCP model may share before they part (pure data movement, no
#: weights): each branch gets its own copy, e.g. the Flatten in front of an MLP's branches.
SHAREABLE = ("flatten",)


def _flat_layers(model: Model) -> list[Layer]:
    if len(model.branches) != 1 or model.merge.layers:
        raise IRError(f"{model.name}: this pass expects a flat model (one branch, empty merge)")
    return list(model.branches[0].layers)


def _flat_model(model: Model, layers: list[Layer], output: str | None = None) -> Model:
    """The flat model with ``layers``: specs re-inferred (scales kept where the op gives
    none), unused specs dropped."""
    output = output or model.output
    specs = {model.input.name: model.tensors[model.input.name]}
    for l in layers:
        new = infer(l, [specs[t] for t in l.inputs])
        old = model.tensors.get(l.output)
        if new.scale is None and old is not None and old.scale is not None:
            new = new.with_(scale=old.scale)
        specs[l.output] = new
    return Model(model.name, model.input, specs, [Branch("branch0", [model.input.name], layers,
                                                         output)],
                 Branch("merge", [output], [], output), model.dequant, dict(model.meta)).validate()


def _readers(layers: list[Layer]) -> dict[str, list[Layer]]:
    readers: dict[str, list[Layer]] = {}
    for l in layers:
        for t in l.inputs:
            readers.setdefault(t, []).append(l)
    return readers


def push_requant_into_concat(model: Model) -> Model:
    layers = _flat_layers(model)
    readers = _readers(layers)
    out, removed = [], set()
    for l in layers:
        if l.name in removed:
            continue
        r = readers.get(l.output, [])
        if l.op == "concat" and len(r) == 1 and r[0].op == "threshold" and \
                l.output != model.output and r[0].params["thresholds"].shape[1] > 0 and \
                all(model.tensors[r[0].output].wire_bits <= model.tensors[t].wire_bits
                    for t in l.inputs):
            thr = r[0]
            t = thr.params["thresholds"]
            new_inputs, start = [], 0
            for i, src in enumerate(l.inputs):
                n = model.tensors[src].shape[0]
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
    return _flat_model(model, out)


def _compose(inner: Layer, outer: Layer, lo: int, hi: int) -> np.ndarray:
    """Thresholds on ``inner``'s input ``x`` in ``[lo, hi]`` of ``outer(inner(x))``."""
    t1, t2 = inner.params["thresholds"], outer.params["thresholds"]
    lo1, hi1 = inner.attrs["out_lo"], inner.attrs["out_hi"]
    C = max(t1.shape[0], t2.shape[0])
    t1 = np.broadcast_to(t1, (C, t1.shape[1]))
    t2 = np.broadcast_to(t2, (C, t2.shape[1]))
    # inner(x) >= m  <=>  m <= lo1, or m <= hi1 and x >= t1[m - lo1 - 1]
    idx = np.clip(t2 - lo1 - 1, 0, max(t1.shape[1] - 1, 0))
    picked = np.take_along_axis(t1, idx, axis=1) if t1.shape[1] else np.full_like(t2, hi + 1)
    t = np.where(t2 <= lo1, lo, np.where(t2 > hi1, hi + 1, picked))
    return t[:1].copy() if np.all(t == t[:1]) else t.copy()


def fuse_thresholds(model: Model) -> Model:
    layers = _flat_layers(model)
    readers = _readers(layers)
    by_out = {l.output: l for l in layers}
    out, removed = [], set()
    for l in layers:
        inner = by_out.get(l.inputs[0]) if l.op == "threshold" else None
        if (inner is None or inner.op != "threshold" or len(readers[inner.output]) != 1
                or inner.output == model.output):
            out.append(l)
            continue
        x = model.tensors[inner.inputs[0]]
        t = _compose(inner, l, x.lo, x.hi)
        fused = Layer(l.name, "threshold", list(inner.inputs), l.output, dict(l.attrs),
                      {"thresholds": t})
        out = [o for o in out if o.name != inner.name]
        removed.add(inner.name)
        out.append(fused)
        by_out[l.output] = fused
    return _flat_model(model, out)


def split_branches(model: Model) -> Model:
    """Branches (the disjoint ancestries of a concat that only the merge reads after) and the
    merge. A shared prefix of :data:`SHAREABLE` layers is copied into every branch. Without
    such a concat the model is one branch and the merge is the last weighted layer onwards."""
    layers = _flat_layers(model)
    output = model.output
    specs = dict(model.tensors)
    producer = {l.output: l for l in layers}

    def ancestors(tensor: str) -> set[str]:
        seen, stack = set(), [tensor]
        while stack:
            l = producer.get(stack.pop())
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
        merge, produced = [start], {start.output}
        for l in layers[order[start.name] + 1:]:
            if any(t in produced for t in l.inputs):
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

    def build(branches: list[list[Layer]], merge: list[Layer]) -> Model:
        outs = [br[-1].output if br else model.input.name for br in branches]
        if not merge and len(outs) != 1:
            raise FrontendError("several branches but no merge layer")
        bs = [Branch(f"branch{i}", [model.input.name], br, o)
              for i, (br, o) in enumerate(zip(branches, outs))]
        return Model(model.name, model.input, specs, bs,
                     Branch("merge", outs, merge, merge[-1].output if merge else outs[0]),
                     model.dequant, dict(model.meta)).validate()

    part = model.meta.get("partition")
    for l in layers:
        if l.op != "concat":
            continue
        merge = cut_at(l)
        if merge is None:
            continue
        if part:
            return _by_partition(model, layers, merge, l, part, specs, build)
        anc = [ancestors(t) for t in l.inputs]
        shared = set().union(*(anc[i] & anc[j] for i in range(len(anc))
                               for j in range(i + 1, len(anc))))
        by_name = {x.name: x for x in layers}
        if any(by_name[n].op not in SHAREABLE for n in shared):
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
        return build(branches, merge)
    for l in reversed(layers):
        if l.opdef.weighted:
            merge = cut_at(l)
            if merge is not None:
                rest = {x.name for x in merge}
                return build([[x for x in layers if x.name not in rest]], merge)
            break
    return build([list(layers)], [])


def _by_partition(model: Model, layers: list[Layer], merge: list[Layer], cat: Layer,
                  part: dict, specs: dict, build) -> Model:
    """Branches of a model whose branches exchange tensors before the merge, from its
    partition (ONNX weight tensor -> branch): every weighted layer goes to its weight's branch,
    every other layer to the branch of its producers (data flowing on), a concatenation to the
    branch of its readers (the receiving side), a layer shared by several branches and only
    moving data (:data:`SHAREABLE`) is copied into each. A tensor one branch reads from another
    becomes an exchange input of the reader."""
    weights = model.meta.get("weights", {})
    in_merge = {l.name for l in merge}
    body = [l for l in layers if l.name not in in_merge]
    producer = {l.output: l for l in body}
    readers: dict[str, list[Layer]] = {}
    for l in layers:
        for t in l.inputs:
            readers.setdefault(t, []).append(l)
    S = len(cat.inputs)
    owner: dict[str, int] = {}
    for l in body:
        if l.opdef.weighted:
            w = weights.get(l.name)
            if w not in part:
                raise FrontendError(f"the model's partition names no branch for layer "
                                    f"{l.name!r} (weight {w!r})")
            owner[l.name] = int(part[w])
            if not 0 <= owner[l.name] < S:
                raise FrontendError(f"the partition puts weight {w!r} in branch "
                                    f"{owner[l.name]}, the merge reads {S} branches")
    for i, t in enumerate(cat.inputs):            # the merge reads branch i's output i-th
        if t in producer and producer[t].name not in owner and not producer[t].opdef.weighted:
            owner.setdefault(producer[t].name, i)
    changed = True
    while changed:
        changed = False
        for l in body:
            if l.name in owner:
                continue
            if l.op != "concat":
                src = {owner.get(producer[t].name) for t in l.inputs if t in producer}
                if len(src) == 1 and None not in src:
                    owner[l.name] = src.pop()
                    changed = True
                    continue
            dst = {owner.get(r.name, -1) if r.name not in in_merge else -2
                   for r in readers.get(l.output, [])}
            if len(dst) == 1 and min(dst) >= 0:
                owner[l.name] = dst.pop()
                changed = True
    for i, t in enumerate(cat.inputs):
        if t not in producer or owner.get(producer[t].name) != i:
            raise FrontendError(f"the merge's input {i} does not come from branch {i} of the "
                                f"model's partition")
    branches = []
    for i in range(S):
        alias: dict[str, str] = {}
        br, extra = [], []
        mine = {l.name for l in body if owner.get(l.name) == i}

        def need(l):     # unowned data movement this branch reads: copied into the branch
            return l.name not in owner and any(
                r.name in mine or (r.name not in owner and need(r))
                for r in readers.get(l.output, []) if r.name not in in_merge)
        for l in body:
            if l.name not in owner:
                if not need(l):
                    continue
                if l.op not in SHAREABLE:
                    raise FrontendError(f"cannot tell which branch layer {l.name!r} ({l.op}) "
                                        f"belongs to")
                out_name = f"{l.output}_b{i}"
                alias[l.output] = out_name
                specs[out_name] = specs[l.output]
                br.append(Layer(f"{l.name}_b{i}", l.op, [alias.get(t, t) for t in l.inputs],
                                out_name, dict(l.attrs),
                                {k: v.copy() for k, v in l.params.items()}))
                continue
            if l.name not in mine:
                continue
            for t in l.inputs:
                if t in producer and producer[t].name not in mine and t not in alias \
                        and t not in extra:
                    extra.append(t)
            br.append(Layer(l.name, l.op, [alias.get(t, t) for t in l.inputs], l.output,
                            l.attrs, l.params))
        branches.append((br, extra))
    outs = list(cat.inputs)
    bs = [Branch(f"branch{i}", [model.input.name, *extra], br, outs[i])
          for i, (br, extra) in enumerate(branches)]
    return Model(model.name, model.input, specs, bs, Branch("merge", outs, merge,
                                                            merge[-1].output),
                 model.dequant, dict(model.meta)).validate()


def rename(model: Model) -> Model:
    """Readable names: ``b{i}_{op}{k}`` in branch i, ``m_{op}{k}`` in the merge; every tensor
    is named after the layer that produces it."""
    mapping = {model.input.name: "input"}
    names: dict[str, str] = {}          # old layer name -> its output tensor
    graphs = [(f"b{i}_", b) for i, b in enumerate(model.branches)] + [("m_", model.merge)]
    for prefix, g in graphs:            # every name first: branches read each other's tensors
        counts: dict[str, int] = {}
        for l in g.layers:
            k = counts.get(l.op, 0)
            counts[l.op] = k + 1
            mapping[l.output] = f"{prefix}{l.op}{k}"
            names[l.name] = l.output

    def rename_graph(layers):
        return [Layer(mapping[l.output], l.op, [mapping[t] for t in l.inputs], mapping[l.output],
                      dict(l.attrs), {k: v.copy() for k, v in l.params.items()})
                for l in layers]

    branches = [Branch(f"branch{i}", ["input", *(mapping[t] for t in b.inputs[1:])],
                       rename_graph(b.layers), mapping[b.output])
                for i, b in enumerate(model.branches)]
    merge = Branch("merge", [b.output for b in branches], rename_graph(model.merge.layers),
                   mapping[model.merge.output])
    tensors = {mapping[k]: v for k, v in model.tensors.items() if k in mapping}
    if model.input.name != "input":
        raise IRError("the model input must be named 'input'")
    meta = {k: v for k, v in model.meta.items() if k != "partition"}
    meta["weights"] = {mapping.get(names.get(k, k), k): v
                       for k, v in model.meta.get("weights", {}).items()}
    return Model(model.name, model.input, tensors, branches, merge, model.dequant,
                 meta).validate()
