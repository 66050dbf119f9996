"""The PYNQ stack: the overlay driver, the simulated board it also runs against, and commands.

- :mod:`.driver`: :class:`~.driver.LcpEngine` (the register block, a ``pynq.DefaultIP``) and
  :class:`~.driver.LcpDriver` (checks, frames, DMA batches, deadlines, recovery); frames are
  packed by :mod:`lcp.frames`, the one definition the hardware generator also uses.
- :mod:`.executors`: opening it on a board (:class:`~.executors.LcpOverlay`) or on the simulated
  board, and the ``pynq`` / ``pynq-sim`` backends of ``lcp run``.
- :mod:`.sim`: the simulated board (PYNQ's device layer over a Verilated PYNQ top);
  :mod:`.simtb`: its cocotb testbench (AXI DMA model, DDR); :mod:`.wire`: the socket protocol
  between them.
- :mod:`.cli`: ``lcp bitstream``. The driver benchmark is :mod:`lcp.benchmarks.pynq`.
"""
