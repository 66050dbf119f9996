"""``lcp``: every branch on its own node (round robin when there are fewer nodes); the
dispatcher sends the input to each branch node and runs the merge on the branch outputs."""

from __future__ import annotations

from ..parts import branch_parts
from .base import Slot, register
from .fanout import FanOut

__all__ = ["Lcp"]


@register
class Lcp(FanOut):
    name = "lcp"

    async def place(self, nodes: list[str]) -> list[Slot]:
        return [Slot(i, p, nodes[i % len(nodes)])
                for i, p in enumerate(branch_parts(self.d.model))]
