"""Serving parts that all read the model input: the input goes once to every node holding
parts, each node runs its parts, the dispatcher merges the branch outputs (``single``, ``lcp``,
and ``hidp``'s whole-model and branch placements).

A branch whose node cannot answer before the request's deadline is answered with zeros and
recorded in ``req.missing`` (the result is ``"degraded"``); the whole model's missing output,
or every branch missing, fails the request.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from .. import wire
from .base import Req, Slot, Strategy

__all__ = ["FanOut"]


class FanOut(Strategy):
    """Base of the strategies served by :meth:`serve` (module doc); subclasses place."""

    async def serve(self, req: Req, xq: np.ndarray) -> np.ndarray | None:
        """single, lcp, hidp: the input once per node holding parts, merge if branches."""
        d = self.d
        xmsg = wire.encode(xq, d.model.tensors[d.model.input.name], d.encoding)
        slots = d._slots             # a re-plan swaps d._slots; this request keeps its own
        groups: dict[str, list[Slot]] = {}
        for s in slots:
            groups.setdefault(s.addr, []).append(s)
        tasks = {asyncio.ensure_future(d._call_group(req, g, xmsg)): g
                 for g in groups.values()}
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, req.deadline -
                                                                time.monotonic()))
        for t in pending:
            t.cancel()
        outs: dict[int, np.ndarray] = {}
        for t in tasks:
            if t in done and t.exception() is None:
                outs.update(t.result())
            elif t in done:
                req.error = f"{type(t.exception()).__name__}: {t.exception()}"
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if slots[0].part.kind == "whole":
            if 0 not in outs:
                return None
            return outs[0]
        n = len(xq)
        branch_outs = []
        for s in slots:
            if s.sid in outs:
                branch_outs.append(outs[s.sid])
            else:
                req.missing.add(s.part.index)
                spec = d.model.tensors[s.part.output]
                branch_outs.append(np.full((n, *spec.shape), np.clip(0, spec.lo, spec.hi),
                                           dtype=np.int64))
        if len(req.missing) == len(slots):
            return None
        return d._golden.run_merge(branch_outs)
