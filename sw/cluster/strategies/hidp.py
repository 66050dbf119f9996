"""``hidp``: HiDP-style placement.

Every node is profiled (its speed on a reference part, its link's round trip and bandwidth;
:func:`lcp.sw.cluster.hidp.profile`), then a global assignment puts each branch (or the whole
model, or a pipeline of stages, whichever the cost model of :mod:`lcp.sw.cluster.hidp` says is
fastest) on nodes, so that a node may receive several branches and the input only once; the
local split runs a node's branches side by side on its threads (or its accelerator backend for
nodes with an ``fpga`` resource). Branch and whole-model placements are served as
:class:`~.fanout.FanOut`, pipelines as :class:`~.pipeline.Pipeline`.

With the dispatcher's ``replan_interval`` (a model with several branches), the links are
re-profiled while serving and the branches re-placed when a link's bandwidth changes
(:mod:`lcp.sw.cluster.replan`, which calls :meth:`Hidp.place` with the new profile).
``d.plan["hidp"]`` records the plan (kind, estimate, profile by node name, assignment or the
options weighed); ``d.plan_profile`` the profile the current plan assumed.
"""

from __future__ import annotations

import numpy as np

from .. import hidp, replan
from ..parts import branch_parts, choose_cuts, stage_parts, whole_part
from .base import Req, Slot, register
from .fanout import FanOut
from .pipeline import Pipeline, uses_pipeline

__all__ = ["Hidp"]


@register
class Hidp(FanOut):
    name = "hidp"

    def __init__(self, d):
        super().__init__(d)
        self.chain = Pipeline(d)
        self._monitor = None

    async def place(self, nodes: list[str], prof: dict | None = None) -> list[Slot]:
        """The placement the cost model predicts fastest on ``prof`` (node address ->
        profile; default: profile ``nodes`` now)."""
        d = self.d
        m = d.model
        x0 = np.full((1, *m.input.shape), m.input.lo, dtype=np.int64)
        if len(m.branches) > 1:
            parts = branch_parts(m)
            prof = prof or await hidp.profile(d, nodes, parts[0], x0)
            d.plan_profile = prof
            assign, est = hidp.assign_branches(m, parts, prof, nodes)
            slots = [Slot(p.index, p, a) for a in nodes for p in assign[a]]
            slots.sort(key=lambda s: s.sid)
            d.plan["hidp"] = {
                "kind": "branches", "estimate_s": est,
                "profile": {d._name(a): v for a, v in prof.items()},
                "assignment": {d._name(a): [p.name for p in ps] for a, ps in assign.items()
                               if ps}}
            return slots
        whole = whole_part(m)
        prof = await hidp.profile(d, nodes, whole, x0)
        options = hidp.chain_options(m, whole, prof, nodes)
        est, kind, hosts = min(options, key=lambda o: o[0])
        d.plan["hidp"] = {"kind": kind, "estimate_s": est,
                          "profile": {d._name(a): v for a, v in prof.items()},
                          "options": {o[1] + ("@" + d._name(o[2][0]) if o[1] == "whole"
                                              else ""): o[0] for o in options}}
        if kind == "whole":
            return [Slot(0, whole, hosts[0])]
        stages = stage_parts(m, choose_cuts(m, len(hosts)))
        return [Slot(i, p, a) for i, (p, a) in enumerate(zip(stages, hosts))]

    async def start(self) -> None:
        d = self.d
        if uses_pipeline(d._slots):
            await self.chain.start()
        if d.replan_interval and len(d.model.branches) > 1:
            self._monitor = replan.LinkMonitor(d, d.replan_interval).start()

    async def serve(self, req: Req, xq: np.ndarray) -> np.ndarray | None:
        if uses_pipeline(self.d._slots):
            return await self.chain.serve(req, xq)
        return await super().serve(req, xq)

    async def close(self) -> None:
        if self._monitor is not None:
            await self._monitor.stop()
        await self.chain.close()
