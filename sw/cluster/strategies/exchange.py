"""``exchange`` and ``model-parallel``: branches that exchange tensors node to node before the
merge (:mod:`lcp.sw.cluster.exchange` holds the protocol, node and dispatcher side).

``exchange`` serves a model of the exchange family as it is, one branch per node (round
robin); ``model-parallel`` serves a single-branch model divided by
:func:`~lcp.sw.cluster.modelpar.model_parallel` over the nodes (every layer's output channels,
an all-gather wherever a layer needs the whole tensor) the same way. A request whose node fails
is answered ``"failed"`` at its deadline.
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from lcp.ir import Model

from ..exchange import ExchangeServer
from ..modelpar import model_parallel
from .base import Req, Slot, Strategy, register

__all__ = ["Exchange", "ModelParallel"]


@register
class Exchange(Strategy):
    name = "exchange"

    def served(self, nodes: list[str]) -> Model:
        """The model whose branches go to the nodes."""
        return self.d.model

    async def place(self, nodes: list[str]) -> list[Slot]:
        self.server = ExchangeServer(self.served(nodes))
        return [Slot(p.index, p, a) for p, a in self.server.place(nodes)]

    def _pairs(self):
        return [(sl.part, sl.addr) for sl in self.d._slots]

    async def start(self) -> None:
        d = self.d
        await self.server.send_routes(d._rpc, self._pairs(), uuid.uuid4().hex[:8], d.encoding)

    async def serve(self, req: Req, xq: np.ndarray) -> np.ndarray | None:
        d = self.d
        return await self.server.infer(d._rpc, self._pairs(), req.rid, xq, d.encoding,
                                       max(0.0, req.deadline - time.monotonic()))


@register
class ModelParallel(Exchange):
    name = "model-parallel"

    def served(self, nodes: list[str]) -> Model:
        return model_parallel(self.d.model, len(nodes))
