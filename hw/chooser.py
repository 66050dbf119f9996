"""The folding chooser: per-layer parallelism for a cycle target or a device budget.

:func:`choose` reads only the plans' cycle and resource models (:mod:`lcp.hw.graph`) and the op
table (:mod:`lcp.hw.plans`: which layers are ``PE x SIMD`` engines, which requantizers may be
narrowed): starting from the smallest folding it repeatedly gives more parallelism to the layer
whose step brings the largest latency reduction per unit of resource, until the latency target
is met (``target``) or no step fits the device any more (``budget``). Layers at the same position
of structurally identical branches share one folding. With a budget, its DSP48 slices go to the
folded layers' multipliers where they save the most LUTs (:func:`allocate_dsps`). MACs are the
compiler's counters (:mod:`lcp.ops`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lcp.ir import IRError, Model
from lcp.ops import get as op_def

from .base import DEVICES, Resources, divisors
from .folding import Folding
from .graph import lower_branch, lower_core
from .mvu import lut_mult_cost
from .plans import plan_for

__all__ = ["choose", "candidates", "Choice", "allocate_dsps"]


def candidates(prefer_pe: bool, O: int, F: int) -> list[tuple[int, int]]:
    """Valid ``(pe, simd)`` of a ``PE x SIMD`` engine, by increasing ``pe * simd``.

    Ties prefer a larger ``pe`` when ``prefer_pe`` (dense layers: outputs in parallel consume the
    input as it arrives), else a larger ``simd`` (convolutions).
    """
    pairs = [(p, s) for p in divisors(O) for s in divisors(F)]
    if prefer_pe:
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


def _groups(model: Model, scope: str, index: int, role: str = "parallel") -> list[list]:
    """Layers whose plan has ``role`` (``parallel`` or ``narrowable``) grouped: the same
    position in structurally identical branches forms one group (one folding); merge layers
    are groups of their own."""
    def has(l):
        return getattr(plan_for(l), role)

    def sig(br):
        return [(l.op, tuple(model.tensors[l.output].shape)) for l in br.layers]

    if scope == "branch":
        brs = [model.branches[index]]
        merge = []
    else:
        brs = model.branches
        merge = [[l] for l in model.merge.layers if has(l)]
    groups: list[list] = []
    if all(sig(b) == sig(brs[0]) for b in brs):
        for k, l in enumerate(brs[0].layers):
            if has(l):
                groups.append([b.layers[k] for b in brs])
    else:
        for b in brs:
            groups += [[l] for l in b.layers if has(l)]
    return groups + merge


#: Smallest latency gain (fraction of the current latency) a parallelism step must bring when
#: the chooser only has a budget (no target): below it, the resources are not worth spending.
MIN_GAIN = 0.005
#: Deepest weight ROM the chooser starts from when it has a latency target (deeper ROMs make
#: huge Verilog initializers and slow simulation builds for the large zoo models).
MAX_ROM_DEPTH = 4096
#: Parallelism factor of one greedy step: a layer steps to the smallest parallelism at least
#: this many times its own (any of its PE x SIMD splits that fits the budget, else a smaller
#: step; a layer is left where it is only when no larger candidate up to the step fits).
STEP = 1.25
#: Default cap on cycle-model evaluations: CNV-w2a2 (9 PE x SIMD layers) at the XC7Z020 budget
#: needs about 950 (the former 400 stopped it at 1.2 M cycles with half the device unused).
MAX_EVALS = 2000
#: Latency and interval a narrower requantizer may cost (fraction) to save its logic.
NARROW_SLACK = 0.01


def choose(model: Model, *, target: int | None = None, budget: str | Resources | None = None,
           scope: str = "branch", index: int = 0, in_width: int = 64, out_width: int = 64,
           max_evals: int = MAX_EVALS) -> Choice:
    """Pick per-layer parallelism.

    Parameters
    ----------
    model : Model
    target : int, optional
        Latency target in cycles (first input word to last output word): stop as soon as it is
        met.
    budget : str or Resources, optional
        A device name of :data:`~lcp.hw.base.DEVICES` or a resource budget: never exceed it.
        Without a target, the latency is minimized within the budget (steps that gain less
        than :data:`MIN_GAIN` of the latency are not taken).
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

    Notes
    -----
    With a target, every layer starts at the parallelism it would need alone to meet it
    (``MACs / target``), and at least ``weights / MAX_ROM_DEPTH``. Greedy: each round tries,
    for every group of conv/dense layers, the smallest parallelism at least :data:`STEP` times
    its own (the first of its PE x SIMD splits that fits the budget; where none does, the
    largest smaller candidate that fits: a layer stops only when no larger candidate up to the
    step fits), and takes the one with the largest latency (and, at a quarter weight,
    interval) gain per unit of cost (LUT, FF and BRAM as fractions of the budget). After
    that, each requantizer (threshold/ReLU) after a wide producer gets the fewest lanes that
    cost at most :data:`NARROW_SLACK` of latency and interval, and the greedy resumes with the
    freed resources. Last, each narrowed requantizer is widened to the lane count that
    lowers the latency most within what the budget still holds.
    """
    if target is None and budget is None:
        raise IRError("choose a folding for a --target-cycles or a --budget (or both)")
    if isinstance(budget, str):
        if budget not in DEVICES:
            raise IRError(f"unknown device {budget!r} (known: {', '.join(DEVICES)})")
        budget = DEVICES[budget]

    def lower(f, timed=True):
        return (lower_branch(model, index, f, timed) if scope == "branch"
                else lower_core(model, f, timed))

    groups = _groups(model, scope, index)
    cands = []
    for grp in groups:
        cls = plan_for(grp[0])
        cands.append(candidates(cls.prefer_pe, *cls.mvu_shape(grp[0])))
    req = _groups(model, scope, index, role="narrowable")
    state = {"pos": [0] * len(groups), "lanes": [None] * len(req), "dram": [False] * len(groups)}

    def valid(gi, pos, dram):
        """The folding ``cands[gi][pos]`` exists for the engine (weights from DRAM or not)."""
        if not dram:
            return True
        l = groups[gi][0]
        pe, simd = cands[gi][pos]
        return plan_for(l).dram.valid(l, model.tensors[l.inputs[0]].shape, pe, simd)
    if target is not None:
        # start every layer at the parallelism it needs alone to meet the target, and at
        # least at the one that keeps its weight ROM within MAX_ROM_DEPTH words
        for gi, grp in enumerate(groups):
            l = grp[0]
            macs = op_def(l.op).macs(l, model.tensors[l.output])
            need = max(macs / max(target, 1), l.weight.size / MAX_ROM_DEPTH)
            state["pos"][gi] = next((k for k, (pe, simd) in enumerate(cands[gi])
                                     if pe * simd >= need), len(cands[gi]) - 1)
    evals = 0
    memo: dict = {}

    def folding_of(pos_, lanes_, dsp=None, dram_=None):
        layers = {}
        dram_ = state["dram"] if dram_ is None else dram_
        for grp, cs, p, d in zip(groups, cands, pos_, dram_):
            pe, simd = cs[p]
            for l in grp:
                layers[l.name] = {"pe": pe, "simd": simd, **({"dram": 1} if d else {})}
        for grp, n in zip(req, lanes_):
            if n is not None:
                for l in grp:
                    layers[l.name] = {"lanes": n}
        for name, n in (dsp or {}).items():
            layers[name]["dsp"] = n
        return Folding(layers, in_width, out_width)

    def evaluate(pos_, lanes_, dram_=None):
        nonlocal evals
        dram_ = state["dram"] if dram_ is None else dram_
        key = (tuple(pos_), tuple(lanes_), tuple(dram_))
        if key not in memo:
            evals += 1
            g = lower(folding_of(pos_, lanes_, dram_=dram_))
            t = g.lowered_timing
            dsp = allocate_dsps(g, int(budget.dsp)) if budget is not None else {}
            # no graph kept: each holds a copy of the weights (ResNet-18 runs to hundreds of
            # evaluations)
            memo[key] = (t, g.resources(), dsp)
        return memo[key]

    def fits(r_):
        return budget is None or r_.fits(budget)

    def check(pos_, lanes_):
        """``(timing, resources)`` of a folding, or ``(None, engines' resources)`` without
        running the cycle model when the engines alone exceed the budget (the cycle model of
        a 224x224 model takes seconds, its FIFOs only add resources). Counted as an
        evaluation, so ``max_evals`` stops the search where it did with the cycle model."""
        nonlocal evals
        if budget is not None and (tuple(pos_), tuple(lanes_), tuple(state["dram"])) not in memo:
            g = lower(folding_of(pos_, lanes_), timed=False)
            allocate_dsps(g, int(budget.dsp))
            rb = g.engine_resources()
            if not fits(rb):
                evals += 1
                return None, rb
        t_, r_, _ = evaluate(pos_, lanes_)
        return t_, r_

    t, r = check(state["pos"], state["lanes"])
    # weights that do not fit the budget's BRAM stream from DRAM: the largest weight
    # matrices first, until the design fits (or every conv/dense layer reads DRAM)
    by_weights = sorted(range(len(groups)), key=lambda k: -groups[k][0].weight.size)
    for gi in by_weights:
        if fits(r) or budget is None:
            break
        pos0 = state["pos"][gi]
        while pos0 and not valid(gi, pos0, True):
            pos0 -= 1
        if not valid(gi, pos0, True):
            continue
        state["pos"][gi] = pos0
        state["dram"][gi] = True
        t, r = check(state["pos"], state["lanes"])
    while not fits(r) and any(state["pos"]):
        # the target's starting point is too large for the budget: back off the biggest layer
        gi = max(range(len(groups)), key=lambda k: cands[k][state["pos"][k]][0]
                 * cands[k][state["pos"][k]][1])
        nxt = max(0, state["pos"][gi] - 1)
        while nxt and not valid(gi, nxt, state["dram"][gi]):
            nxt -= 1
        state["pos"][gi] = nxt
        t, r = check(state["pos"], state["lanes"])
    if not fits(r):
        t, r, _ = evaluate(state["pos"], state["lanes"])
        raise IRError(f"{model.name}: even the smallest folding needs {r.to_json()}, more than "
                      f"the budget {budget.to_json()} (its cycle-model latency: "
                      f"{t.latency:,} cycles, interval {t.interval:,})")

    def met(t_):
        return target is not None and t_.latency <= target

    def steps(gi):
        """Positions to try for group ``gi``, in order: every ``(pe, simd)`` split of the
        smallest parallelism at least :data:`STEP` times the current one, then the candidates
        between the current one and it, largest first."""
        cs, pos = cands[gi], state["pos"][gi]
        prod = [pe * simd for pe, simd in cs]
        nxt = pos + 1
        while nxt + 1 < len(cs) and prod[nxt] < math.ceil(STEP * prod[pos]):
            nxt += 1
        level = [k for k in range(nxt, len(cs)) if prod[k] == prod[nxt]]
        return level + list(range(nxt - 1, pos, -1))

    def greedy(t, r):
        frozen = [False] * len(groups)
        while not met(t) and evals < max_evals:
            best = None
            base = _cost(r, budget)
            for gi in range(len(groups)):
                if frozen[gi] or state["pos"][gi] + 1 >= len(cands[gi]):
                    continue
                # the largest step that fits; the layer stays where it is only when not even
                # the next candidate fits
                dram = state["dram"][gi]
                for nxt in [k for k in steps(gi) if valid(gi, k, dram)]:
                    trial = state["pos"].copy()
                    trial[gi] = nxt
                    t2, r2, _ = evaluate(trial, state["lanes"])
                    if fits(r2):
                        break
                else:
                    frozen[gi] = True
                    continue
                gain = (t.latency - t2.latency) + 0.25 * (t.interval - t2.interval)
                if target is None and gain < MIN_GAIN * t.latency:
                    continue
                score = gain / max(_cost(r2, budget) - base, 1e-6)
                if gain > 0 and (best is None or score > best[0]):
                    best = (score, trial, t2, r2, state["dram"])
            # the other side of each conv/dense layer: on chip or weights from DRAM, whichever
            # is faster (a move that saves resources without a loss scores highest)
            for gi in range(len(groups)) if budget is not None else ():
                flip = list(state["dram"])
                flip[gi] = not flip[gi]
                if not valid(gi, state["pos"][gi], flip[gi]):
                    continue
                t2, r2, _ = evaluate(state["pos"], state["lanes"], flip)
                if not fits(r2):
                    continue
                gain = (t.latency - t2.latency) + 0.25 * (t.interval - t2.interval)
                if gain <= 0 or (target is None and gain < MIN_GAIN * t.latency):
                    continue
                score = gain / max(_cost(r2, budget) - base, 1e-6)
                if best is None or score > best[0]:
                    best = (score, state["pos"], t2, r2, flip)
            if best is None:
                break
            _, state["pos"], t, r, state["dram"] = best
            frozen = [False] * len(groups)
        return t, r

    t, r = greedy(t, r)
    # narrower requantizers where they cost (almost) nothing, then spend what they freed
    g = lower(folding_of(state["pos"], state["lanes"]))
    by_layer = {n.layer: n for n in g.nodes if n.layer is not None}
    changed = False
    for k, grp in enumerate(req):
        node = by_layer.get(grp[0].name)
        if node is None:
            continue
        wide = node.plan.in_fmt.lanes
        for d in divisors(wide)[:-1]:
            trial = list(state["lanes"])
            trial[k] = d
            t2, r2, _ = evaluate(state["pos"], trial)
            if (fits(r2) and t2.latency <= t.latency * (1 + NARROW_SLACK)
                    and t2.interval <= t.interval * (1 + NARROW_SLACK)
                    and _cost(r2, budget) < _cost(r, budget)):
                state["lanes"], t, r, changed = trial, t2, r2, True
                break
    if changed:
        t, r = greedy(t, r)
    # what the budget still holds goes to the narrowed requantizers, where it buys latency
    for k, grp in enumerate(req):
        node = by_layer.get(grp[0].name)
        if node is None or state["lanes"][k] is None or met(t):
            continue
        best = None
        for d in divisors(node.plan.in_fmt.lanes):
            if d <= state["lanes"][k]:
                continue
            trial = list(state["lanes"])
            trial[k] = None if d == node.plan.in_fmt.lanes else d
            t2, r2, _ = evaluate(state["pos"], trial)
            if (fits(r2) and t2.latency < t.latency and t2.interval <= t.interval
                    and (best is None or t2.latency < best[1].latency)):
                best = (trial, t2, r2)
        if best is not None:
            state["lanes"], t, r = best
    ok = target is None or t.latency <= target
    note = "" if ok else f"latency target {target} not reached"
    if evals >= max_evals:
        note = "; ".join(filter(None, [note, f"stopped after {evals} cycle-model evaluations "
                                              f"(max_evals {max_evals}): a larger folding may fit"]))
    _, _, dsp = evaluate(state["pos"], state["lanes"])
    f = folding_of(state["pos"], state["lanes"], dsp)
    return Choice(f, t.latency, t.interval, r, evals, ok, note)


def _cost(r: Resources, budget: Resources | None) -> float:
    """Scalar cost of a design for the chooser: LUT, FF and BRAM as fractions of the budget
    (DSP slices are handed out separately, see :func:`allocate_dsps`)."""
    b = budget or DEVICES["xc7z020"]
    return r.lut / b.lut + r.ff / b.ff + (r.bram / b.bram if b.bram else 0.0)


def allocate_dsps(graph, dsps: int) -> dict[str, int]:
    """Give at most ``dsps`` DSP48 slices to the multipliers of folded (ROM-weight) layers,
    where a LUT multiplier would cost the most LUTs; the rest stay LUT multipliers.

    Changes the plans of ``graph`` in place; returns layer name -> DSP lanes (for every folded
    layer, 0 included).
    """
    mvus = [n.plan.mvu for n in graph.nodes if getattr(n.plan, "mvu", None) is not None
            and not n.plan.mvu.constant and not n.plan.mvu.one_bit]
    mvus.sort(key=lambda p: (-lut_mult_cost(p.wbits, p.xbits), -p.pe * p.simd, p.name))
    left = int(dsps)
    out = {}
    for p in mvus:
        p.dsp = min(p.pe * p.simd, 2 * left)       # two lanes of one input share a slice
        left -= len(p.dsp_pairs())
        out[p.name] = p.dsp
    return out
