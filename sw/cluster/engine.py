"""A node with a PYNQ engine in the cluster simulator: its compute costs read from the
hardware's cycle model, not fitted and not given as a constant.

:func:`engine_cycles` folds the model the way ``lcp bitstream`` / the ``pynq`` backend would
(the folding chooser, :func:`lcp.hw.chooser.choose`, for the whole model on one chip within a
device budget), lowers it (:func:`lcp.hw.graph.lower_core`) and reads the cycle model's
completion cycle of every layer (``Timing.layer_done``). Layers in order of completion are
each charged the cycles since the previous completion, so the charges add up to the cycle at
which the last layer completes (the engine's latency less the output adapter's last beats);
each op kind then gets its cycles per unit of work (the layer's MACs from the IR counters, or
its output elements: :func:`~.simplan.layer_work`, as every simulated node; a layer the
hardware folds into another, with no engine of its own, counts its work at no cycles). :func:`engine_costs`
turns cycles per unit into :class:`~.simspec.OpCost` at the PL clock
(:data:`lcp.hw.pynq_regs.CLOCK_MHZ`), :func:`engine_node` into a :class:`~.simspec.NodeSpec`.

Dataflow engines overlap their layers, so per-op rates are an average over the model: exact
for the whole model on one engine (``single``), an estimate for parts of it on several.
"""

from __future__ import annotations

from lcp.hw.chooser import choose
from lcp.hw.graph import lower_core
from lcp.hw.pynq_regs import CLOCK_MHZ
from lcp.ir import Model

from .simplan import layer_work
from .simspec import NodeSpec, OpCost

__all__ = ["engine_cycles", "engine_costs", "engine_node"]


def engine_cycles(model: Model, budget: str = "xc7z020") -> dict[str, float]:
    """Cycles per unit of work of each op kind of ``model`` on its engine folded for
    ``budget`` (a device of :data:`lcp.hw.base.DEVICES`), and ``"*"`` over all layers."""
    folding = choose(model, budget=budget, scope="core").folding
    g = lower_core(model, folding)
    timing = g.lowered_timing or g.timing()
    layers = {l.name: l for l in model.layers()}
    done = sorted((c, name) for name, c in timing.layer_done.items() if name in layers)
    cycles = {l.op: 0.0 for l in layers.values()}      # a layer without an engine: 0 cycles
    work = {l.op: 0.0 for l in layers.values()}
    for l in layers.values():
        work[l.op] += layer_work(model, l)
    prev = 0
    for c, name in done:
        cycles[layers[name].op] += max(0, c - prev)
        prev = max(prev, c)
    out = {op: cycles[op] / max(work[op], 1.0) for op in cycles}
    out["*"] = sum(cycles.values()) / max(sum(work.values()), 1.0)
    return out


def engine_costs(cycles_per_op: dict[str, float],
                 clock_hz: float = CLOCK_MHZ * 1e6) -> dict[str, OpCost]:
    """Costs of an accelerator node from its cycle model: ``cycles_per_op[op]`` cycles per
    unit of work (MAC or element) at ``clock_hz``."""
    return {op: OpCost(0.0, c / clock_hz) for op, c in cycles_per_op.items()}


def engine_node(name: str, model: Model, budget: str = "xc7z020", cores: int = 1,
                clock_hz: float = CLOCK_MHZ * 1e6) -> NodeSpec:
    """A simulated node named ``name`` whose engine serves ``model`` (see module doc)."""
    return NodeSpec(name, cores, None, engine_costs(engine_cycles(model, budget), clock_hz))
