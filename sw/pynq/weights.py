"""The DRAM weight buffer of a design whose engines read their weights from DRAM.

:class:`WeightBuffer` allocates one contiguous buffer with ``pynq.allocate`` (or the simulated
board's ``allocate``) and copies the weight images into it: for a dataflow design
(a :class:`~lcp.hw.graph.PlanGraph`) every DRAM layer's packed weights
(:func:`lcp.hw.weightstream.pack_blocks`, each at a 4 KiB-aligned offset); for the reused
engine (a :class:`~lcp.hw.reuse_program.ReusedProgram`) its one image
(:meth:`~lcp.hw.reuse_program.ReusedProgram.dram_image`). It writes the buffer back from the CPU
caches (``flush``) and gives its physical address :attr:`WeightBuffer.base` (and each
layer's, ``base + offset``). :meth:`WeightBuffer.attach` writes ``base`` into the engine's
``WEIGHT_BASE`` register (register map 1.1, :class:`lcp.hw.pynq_axil.RegisterFile`). The
buffer stays allocated as long as the object lives.
"""

from __future__ import annotations

import numpy as np
import pynq

from lcp.hw.reuse_program import ReusedProgram
from lcp.hw.weightstream import DramConvPlan, DramDensePlan, pack_blocks

__all__ = ["WeightBuffer", "ALIGN"]

#: Alignment of each layer's image in the buffer (a page; bursts never cross 4 KiB).
ALIGN = 4096


class WeightBuffer:
    """The weights of ``design`` (a :class:`~lcp.hw.graph.PlanGraph`: its DRAM layers; or a
    :class:`~lcp.hw.reuse_program.ReusedProgram`: its image, named ``"reused"``) in one buffer
    from ``allocate`` (default ``pynq.allocate``).

    Members
    -------
    buffer : PynqBuffer or numpy.ndarray
    offsets : dict
        layer name -> byte offset of its image in the buffer.
    addresses : dict
        layer name -> physical address (``buffer.physical_address + offset``; the offset when
        the buffer has no physical address).
    """

    def __init__(self, design, allocate=None):
        allocate = allocate if allocate is not None else pynq.allocate
        if isinstance(design, ReusedProgram):
            images = {"reused": design.dram_image()}
        else:
            images = {n.plan.layer.name: pack_blocks(n.plan.mvu) for n in design.nodes
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
        self.base = int(getattr(self.buffer, "physical_address", 0))
        self.addresses = {name: self.base + off for name, off in self.offsets.items()}

    def attach(self, engine) -> None:
        """Point ``engine`` (an :class:`~lcp.sw.pynq.driver.LcpEngine`) at the buffer: write
        :attr:`base` into ``WEIGHT_BASE`` and read it back."""
        engine.set_weight_base(self.base)

    @property
    def nbytes(self) -> int:
        return int(self.buffer.size)

    def close(self) -> None:
        """Free the buffer (``PynqBuffer.freebuffer`` when it has one)."""
        if hasattr(self.buffer, "freebuffer"):
            self.buffer.freebuffer()
