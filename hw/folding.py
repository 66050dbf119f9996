"""Per-layer parallelism (folding) and the chooser that picks it for a cycle or resource target.

A :class:`Folding` maps layer names to ``{"pe": P, "simd": S}`` (conv and dense layers; other
engines take one beat per cycle and follow their producer's lanes) and fixes the AXI4-Stream
widths of the boundary. Missing layers default to ``pe = simd = 1``.

:func:`choose` reads only the plans' cycle and resource models (:mod:`lcp.hw.graph`): starting
from the smallest folding it repeatedly gives more parallelism to the layer whose step brings the
largest latency reduction per unit of resource, until the latency target is met (``target``)
or no step fits the device any more (``budget``). Layers at the same position of structurally
identical branches share one folding.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from lcp.ir import IRError, Model

from .base import DEVICES, Resources, divisors

__all__ = ["Folding", "DEFAULT_AXIS_WIDTH", "choose", "candidates", "Choice"]

#: Default ``tdata`` width of the input and output AXI4-Stream ports.
DEFAULT_AXIS_WIDTH = 64


@dataclass
class Folding:
    """Per-layer parallelism and boundary widths.

    Members
    -------
    layers : dict
        Layer name -> ``{"pe": int, "simd": int}``.
    in_width, out_width : int
        ``tdata`` bits of the input and output AXI4-Stream ports (multiples of 8).
    """

    layers: dict[str, dict] = field(default_factory=dict)
    in_width: int = DEFAULT_AXIS_WIDTH
    out_width: int = DEFAULT_AXIS_WIDTH

    def layer(self, name: str) -> dict:
        return dict(self.layers.get(name, {}))

    def with_layer(self, name: str, **kw) -> "Folding":
        layers = {k: dict(v) for k, v in self.layers.items()}
        layers[name] = {**layers.get(name, {}), **kw}
        return Folding(layers, self.in_width, self.out_width)

    def to_json(self) -> dict:
        return {"format": "lcp-folding", "version": 1, "in_width": self.in_width,
                "out_width": self.out_width,
                "layers": {k: dict(sorted(v.items())) for k, v in sorted(self.layers.items())}}

    @classmethod
    def from_json(cls, d: dict) -> "Folding":
        if d.get("format") != "lcp-folding":
            raise IRError("not an lcp-folding document")
        layers = {str(k): {kk: int(vv) for kk, vv in v.items()} for k, v in d["layers"].items()}
        return cls(layers, int(d.get("in_width", DEFAULT_AXIS_WIDTH)),
                   int(d.get("out_width", DEFAULT_AXIS_WIDTH)))

    @classmethod
    def load(cls, path: str | Path) -> "Folding":
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as e:
            raise IRError(f"{path}: not a readable folding file ({e})") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def candidates(kind: str, O: int, F: int) -> list[tuple[int, int]]:
    """Valid ``(pe, simd)`` of a conv/dense layer, by increasing ``pe * simd``.

    Ties prefer a larger ``pe`` for dense layers (outputs in parallel consume the input as it
    arrives) and a larger ``simd`` for convolutions.
    """
    pairs = [(p, s) for p in divisors(O) for s in divisors(F)]
    if kind == "dense":
        return sorted(pairs, key=lambda ps: (ps[0] * ps[1], -ps[0]))
    return sorted(pairs, key=lambda ps: (ps[0] * ps[1], -ps[1]))


@dataclass
class Choice:
    """Result of :func:`choose`: the folding and the model figures it was chosen on."""

    folding: Folding
    latency: int
    interval: int
    resources: Resources
    evaluations: int
    met: bool
    note: str = ""


def _groups(model: Model, scope: str, index: int) -> list[list]:
    """Foldable layers grouped: same position in structurally identical branches -> one group."""
    def sig(br):
        return [(l.op, tuple(model.tensors[l.output].shape)) for l in br.layers]

    if scope == "branch":
        brs = [model.branches[index]]
        merge = []
    else:
        brs = model.branches
        merge = [[l] for l in model.merge.layers if l.op in ("conv", "dense")]
    groups: list[list] = []
    if all(sig(b) == sig(brs[0]) for b in brs):
        for k, l in enumerate(brs[0].layers):
            if l.op in ("conv", "dense"):
                groups.append([b.layers[k] for b in brs])
    else:
        for b in brs:
            groups += [[l] for l in b.layers if l.op in ("conv", "dense")]
    return groups + merge


def choose(model: Model, *, target: int | None = None, budget: str | Resources | None = None,
           scope: str = "branch", index: int = 0, in_width: int = 64, out_width: int = 64,
           max_evals: int = 400) -> Choice:
    """Pick per-layer parallelism.

    Parameters
    ----------
    model : Model
    target : int, optional
        Latency target in cycles (first input word to last output word): stop as soon as it is
        met.
    budget : str or Resources, optional
        A device name of :data:`~lcp.hw.base.DEVICES` or a resource budget: never exceed it.
        Without a target, the latency is minimized within the budget.
    scope : str
        ``"branch"`` (branch ``index`` alone, one device per branch) or ``"core"`` (the whole
        model on one chip).

    Returns
    -------
    Choice

    Raises
    ------
    IRError
        when neither a target nor a budget is given, the device is unknown, or even the
        smallest folding exceeds the budget.
    """
    from .graph import lower_branch, lower_core

    if target is None and budget is None:
        raise IRError("choose a folding for a --target-cycles or a --budget (or both)")
    if isinstance(budget, str):
        if budget not in DEVICES:
            raise IRError(f"unknown device {budget!r} (known: {', '.join(DEVICES)})")
        budget = DEVICES[budget]

    def lower(f):
        return lower_branch(model, index, f) if scope == "branch" else lower_core(model, f)

    groups = _groups(model, scope, index)
    cands = []
    for grp in groups:
        l = grp[0]
        if l.op == "conv":
            O, C, kh, kw = l.weight.shape
            cands.append(candidates("conv", O, C * kh * kw))
        else:
            cands.append(candidates("dense", *l.weight.shape))
    pos = [0] * len(groups)

    def folding_of(pos_):
        layers = {}
        for grp, cs, p in zip(groups, cands, pos_):
            pe, simd = cs[p]
            for l in grp:
                layers[l.name] = {"pe": pe, "simd": simd}
        return Folding(layers, in_width, out_width)

    evals = 0

    def evaluate(pos_):
        nonlocal evals
        evals += 1
        g = lower(folding_of(pos_))
        t = g.timing()
        return t, g.resources()

    t, r = evaluate(pos)
    if budget is not None and not r.fits(budget):
        raise IRError(f"{model.name}: even the smallest folding needs {r.to_json()}, more than "
                      f"the budget {budget.to_json()}")

    def done(t_, r_):
        return target is not None and t_.latency <= target

    frozen = [False] * len(groups)
    while not done(t, r) and evals < max_evals:
        best = None
        base_use = r.usage(budget) if budget is not None else r.lut / 50_000
        for gi in range(len(groups)):
            if frozen[gi] or pos[gi] + 1 >= len(cands[gi]):
                continue
            cur = cands[gi][pos[gi]]
            cur_p = cur[0] * cur[1]
            # next step: at least 1.25x the parallelism
            nxt = pos[gi] + 1
            while nxt + 1 < len(cands[gi]) and (cands[gi][nxt][0] * cands[gi][nxt][1]
                                                < math.ceil(1.25 * cur_p)):
                nxt += 1
            trial = pos.copy()
            trial[gi] = nxt
            t2, r2 = evaluate(trial)
            if budget is not None and not r2.fits(budget):
                frozen[gi] = True
                continue
            gain = (t.latency - t2.latency) + 0.25 * (t.interval - t2.interval)
            use = (r2.usage(budget) if budget is not None else r2.lut / 50_000) - base_use
            score = gain / max(use, 1e-6)
            if gain > 0 and (best is None or score > best[0]):
                best = (score, trial, t2, r2)
        if best is None:
            break
        _, pos, t, r = best
    met = target is None or t.latency <= target
    note = "" if met else f"latency target {target} not reached"
    return Choice(folding_of(pos), t.latency, t.interval, r, evals, met, note)
