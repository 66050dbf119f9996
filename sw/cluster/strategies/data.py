"""``data``: the whole model on every node; a batch is split into one chunk per node (a
request fails if any chunk does)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from .. import wire
from ..parts import whole_part
from .base import Req, Slot, Strategy, register

__all__ = ["Data"]


@register
class Data(Strategy):
    name = "data"

    async def place(self, nodes: list[str]) -> list[Slot]:
        whole = whole_part(self.d.model)
        return [Slot(i, whole, a) for i, a in enumerate(nodes)]

    def placement(self, slots: list[Slot]) -> dict[str, str]:
        """``whole#i`` (copy ``i``) -> node name."""
        return {f"{s.part.name}#{s.sid}": self.d._name(s.addr) for s in slots}

    async def serve(self, req: Req, xq: np.ndarray) -> np.ndarray | None:
        d = self.d
        spec = d.model.tensors[d.model.input.name]
        k = min(len(d._slots), len(xq))
        chunks = np.array_split(xq, k)
        tasks = [asyncio.ensure_future(d._call_group(req, [s], wire.encode(c, spec,
                                                                           d.encoding)))
                 for s, c in zip(d._slots[:k], chunks)]
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, req.deadline -
                                                                time.monotonic()))
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            req.error = "request deadline"
            return None
        ys = []
        for t, s in zip(tasks, d._slots[:k]):
            if t.exception() is not None:
                req.error = f"{type(t.exception()).__name__}: {t.exception()}"
                return None
            ys.append(t.result()[s.sid])
        return np.concatenate(ys)
