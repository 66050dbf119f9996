"""Partition an IR model into *parts* that nodes run: the whole model, one branch, or a stage
(a contiguous slice of layers) of a single-branch model.

Every part is itself a valid, standalone :class:`~lcp.ir.Model` (one branch, an empty merge,
identity dequantization) whose input is the tensor the part reads, so any executor from
:func:`lcp.executor.get_executor` runs it, and a part ships to a node as IR JSON + npz bytes
(:func:`part_to_wire`, :func:`part_from_wire`), never pickled.

Pipeline cuts are allowed only after a layer whose output is the one tensor that the rest of
the model still needs (so residual blocks are never cut in the middle) and is a low-bit
activation (``threshold``, ``maxpool``, ``avgpool``, ``flatten``, ``relu``), never a wide
accumulator.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lcp.counters import count_layer
from lcp.ir import Branch, Dequant, InputSpec, IRError, Layer, Model, load, save

__all__ = ["Part", "whole_part", "branch_parts", "chain", "cut_candidates", "choose_cuts",
           "stage_parts", "part_to_wire", "part_from_wire", "model_to_bytes",
           "model_from_bytes"]

@dataclass(frozen=True)
class Part:
    """A runnable piece of a model.

    Members
    -------
    key : str
        The part model's digest (first 24 hex digits): what nodes key loaded parts by.
    kind : str
        ``"whole"``, ``"branch"`` or ``"stage"``.
    index : int
        Branch index, or stage index in the chain (0 for ``whole``).
    model : Model
        The standalone part model; its input is ``input``, its output ``output``.
    input, output : str
        Tensor names in the full model.
    macs : int
        Multiply-accumulates per image.
    param_bytes : int
        Bit-packed parameter bytes (IR counters).
    """

    key: str
    kind: str
    index: int
    model: Model
    input: str
    output: str
    macs: int
    param_bytes: int

    @property
    def name(self) -> str:
        return "whole" if self.kind == "whole" else f"{self.kind}{self.index}"


def _identity_merge(out: str) -> Branch:
    return Branch("merge", [out], [], out)


def _sub_model(model: Model, name: str, inp: str, layers: list[Layer], out: str) -> Model:
    """A standalone model reading tensor ``inp`` and running ``layers`` to ``out``."""
    spec = model.tensors[inp]
    if inp == model.input.name:
        ispec = model.input
    else:
        ispec = InputSpec(inp, spec.shape, float(spec.scale) if spec.scale else 1.0,
                          spec.lo, spec.hi)
    names = {inp, out, *(l.output for l in layers), *(t for l in layers for t in l.inputs)}
    tensors = {t: model.tensors[t] for t in names}
    sub = Model(name=f"{model.name}:{name}", input=ispec, tensors=tensors,
                branches=[Branch(name, [inp], list(layers), out)], merge=_identity_merge(out),
                dequant=Dequant(np.ones(1), np.zeros(1)),
                meta={"part_of": model.name, "part": name})
    return sub.validate()


def _make(model: Model, kind: str, index: int, sub: Model, inp: str, out: str) -> Part:
    layers = list(sub.layers())
    counts = [count_layer(sub, l) for l in layers]
    return Part(sub.digest()[:24], kind, index, sub, inp, out,
                sum(c.macs for c in counts), sum(c.param_bytes for c in counts))


def whole_part(model: Model) -> Part:
    """The whole model as one part (its output is the model output)."""
    return _make(model, "whole", 0, model, model.input.name, model.output)


def branch_parts(model: Model) -> list[Part]:
    """One part per branch, in branch order; the merge stays with the dispatcher."""
    return [_make(model, "branch", i,
                  _sub_model(model, f"branch{i}", model.input.name, b.layers, b.output),
                  model.input.name, b.output)
            for i, b in enumerate(model.branches)]


def chain(model: Model) -> list[Layer]:
    """Layers of a single-branch model in execution order (the branch, then the merge).

    Raises
    ------
    IRError
        if the model has more than one branch (split it with :func:`branch_parts`).
    """
    if len(model.branches) != 1:
        raise IRError(f"{model.name}: a layer pipeline needs a single-branch model, this one "
                      f"has {len(model.branches)} branches (use the lcp strategy)")
    return [*model.branches[0].layers, *model.merge.layers]


def cut_candidates(model: Model) -> list[int]:
    """Indices ``i`` into :func:`chain` after which the chain may be cut (see module doc)."""
    layers = chain(model)
    produced_at = {model.input.name: -1}
    for i, l in enumerate(layers):
        produced_at[l.output] = i
    last_use: dict[str, int] = {}
    for i, l in enumerate(layers):
        for t in l.inputs:
            last_use[t] = i
    out = []
    for i, l in enumerate(layers[:-1]):
        live = {t for t, p in produced_at.items() if p <= i and last_use.get(t, -1) > i}
        if live == {l.output} and l.opdef.narrow_output:    # low-bit activations only
            out.append(i)
    return out


def choose_cuts(model: Model, stages: int) -> list[int]:
    """Cut indices that split :func:`chain` into at most ``stages`` stages.

    With at least ``stages - 1`` candidates the cuts minimize the largest stage's MACs (ties:
    fewer bytes crossing the cuts); with fewer candidates every candidate is a cut (one layer
    group per stage, the per-layer pipeline).
    """
    if stages < 1:
        raise IRError(f"stages must be >= 1, not {stages}")
    cands = cut_candidates(model)
    if stages - 1 >= len(cands):
        return cands
    layers = chain(model)
    cost = [count_layer(model, l).macs + 1 for l in layers]
    prefix = np.concatenate([[0], np.cumsum(cost)])
    bounds = [-1, *cands, len(layers) - 1]          # stage = (bounds[a], bounds[b]]
    nb = len(bounds)
    inf = (math.inf, math.inf)
    # best[k][j]: (max stage cost, cut bytes) covering layers up to bounds[j] with k stages
    best = [[inf] * nb for _ in range(stages + 1)]
    arg = [[-1] * nb for _ in range(stages + 1)]
    best[0][0] = (0, 0)
    for k in range(1, stages + 1):
        for j in range(1, nb):
            for a in range(j):
                prev = best[k - 1][a]
                if prev == inf:
                    continue
                c = prefix[bounds[j] + 1] - prefix[bounds[a] + 1]
                cut_bytes = model.tensors[layers[bounds[a]].output].nbytes if a > 0 else 0
                cand = (max(prev[0], c), prev[1] + cut_bytes)
                if cand < best[k][j]:
                    best[k][j], arg[k][j] = cand, a
    k = stages
    j, cuts = nb - 1, []
    while j > 0:
        a = arg[k][j]
        if a > 0:
            cuts.append(bounds[a])
        j, k = a, k - 1
    return sorted(cuts)


def stage_parts(model: Model, cuts: list[int] | int) -> list[Part]:
    """Stages of a single-branch model cut after the layers at ``cuts`` (indices into
    :func:`chain`), or into ``cuts`` stages chosen by :func:`choose_cuts` when an int.

    Raises
    ------
    IRError
        on a multi-branch model or a cut that is not in :func:`cut_candidates`.
    """
    layers = chain(model)
    if isinstance(cuts, int):
        cuts = choose_cuts(model, cuts)
    allowed = set(cut_candidates(model))
    bad = [c for c in cuts if c not in allowed]
    if bad:
        raise IRError(f"{model.name}: cannot cut after layer index {bad[0]} (allowed: "
                      f"{sorted(allowed)})")
    bounds = [-1, *sorted(set(cuts)), len(layers) - 1]
    parts = []
    for s in range(len(bounds) - 1):
        sl = layers[bounds[s] + 1: bounds[s + 1] + 1]
        inp = model.input.name if s == 0 else layers[bounds[s]].output
        out = sl[-1].output
        parts.append(_make(model, "stage", s, _sub_model(model, f"stage{s}", inp, sl, out),
                           inp, out))
    return parts


# -- shipping ------------------------------------------------------------------------------

def model_to_bytes(model: Model) -> tuple[str, bytes]:
    """The IR files of ``model`` (:func:`lcp.ir.save`) as ``(json text, npz bytes)``."""
    with tempfile.TemporaryDirectory(prefix="lcp-part-") as d:
        j, n = save(model, Path(d) / "part")
        return j.read_text(), n.read_bytes()


def model_from_bytes(doc: str, npz: bytes) -> Model:
    """Inverse of :func:`model_to_bytes` (:func:`lcp.ir.load`: validated, no pickle)."""
    with tempfile.TemporaryDirectory(prefix="lcp-part-") as d:
        base = Path(d) / "part"
        base.with_suffix(".json").write_text(doc)
        base.with_suffix(".npz").write_bytes(npz)
        return load(base)


def part_to_wire(part: Part) -> dict:
    """A load message for a node: ``{"key", "kind", "index", "doc", "npz"}``."""
    doc, npz = model_to_bytes(part.model)
    return {"key": part.key, "kind": part.kind, "index": part.index, "doc": doc, "npz": npz}


def part_from_wire(msg: dict) -> Model:
    """The part model of a load message; :class:`IRError` if its digest is not ``key``."""
    model = model_from_bytes(msg["doc"], msg["npz"])
    if not model.digest().startswith(msg["key"]):
        raise IRError(f"part {msg['key']}: the shipped IR does not match its digest")
    return model
