"""The DRAM weight buffer of a design whose layers read their weights from DRAM.

:class:`WeightBuffer` allocates one contiguous buffer with ``pynq.allocate`` (or the simulated
board's ``allocate``), copies every DRAM layer's packed weights into it
(:func:`lcp.hw.weightstream.pack_blocks`, each image at a 4 KiB-aligned offset), writes it back
from the CPU caches (``flush``) and gives each layer's physical address, the ``w_base`` its
engine reads from over the HP port. The buffer stays allocated as long as the object lives.

Not yet wired: the PYNQ top (:mod:`lcp.hw.pynq_top`) has no register for the addresses (its
designs keep every weight on chip); the addresses are what such a register would receive.
"""

from __future__ import annotations

import numpy as np
import pynq

from lcp.hw.weightstream import DramConvPlan, DramDensePlan, pack_blocks

__all__ = ["WeightBuffer", "ALIGN"]

#: Alignment of each layer's image in the buffer (a page; bursts never cross 4 KiB).
ALIGN = 4096


class WeightBuffer:
    """Weights of every DRAM layer of ``graph`` (a :class:`~lcp.hw.graph.PlanGraph`) in one
    buffer from ``allocate`` (default ``pynq.allocate``).

    Members
    -------
    buffer : PynqBuffer or numpy.ndarray
    offsets : dict
        layer name -> byte offset of its image in the buffer.
    addresses : dict
        layer name -> physical address (``buffer.physical_address + offset``; the offset when
        the buffer has no physical address).
    """

    def __init__(self, graph, allocate=None):
        allocate = allocate if allocate is not None else pynq.allocate
        images = {n.plan.layer.name: pack_blocks(n.plan.mvu) for n in graph.nodes
                  if isinstance(n.plan, (DramConvPlan, DramDensePlan))}
        self.offsets, end = {}, 0
        for name, img in images.items():
            self.offsets[name] = end
            end += -(-img.size // ALIGN) * ALIGN
        self.buffer = allocate((max(end, ALIGN),), np.uint8)
        for name, img in images.items():
            off = self.offsets[name]
            self.buffer[off:off + img.size] = img
        if hasattr(self.buffer, "flush"):
            self.buffer.flush()
        base = int(getattr(self.buffer, "physical_address", 0))
        self.addresses = {name: base + off for name, off in self.offsets.items()}

    @property
    def nbytes(self) -> int:
        return int(self.buffer.size)

    def close(self) -> None:
        """Free the buffer (``PynqBuffer.freebuffer`` when it has one)."""
        if hasattr(self.buffer, "freebuffer"):
            self.buffer.freebuffer()
