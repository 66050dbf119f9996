"""``single``: the whole model on one node (the first of the chosen nodes)."""

from __future__ import annotations

from ..parts import whole_part
from .base import Slot, register
from .fanout import FanOut

__all__ = ["Single"]


@register
class Single(FanOut):
    name = "single"

    async def place(self, nodes: list[str]) -> list[Slot]:
        return [Slot(0, whole_part(self.d.model), nodes[0])]
