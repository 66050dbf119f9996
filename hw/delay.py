"""Per-target delay model: how many adder-tree levels fit one clock period.

The MVU's deepest combinational path is a PE's balanced adder tree (:mod:`lcp.hw.mvu`); it is
registered every ``tree_k`` levels (fold key ``tree_k``). :func:`tree_levels_per_stage` picks
``tree_k`` for a target and a clock from two figures per target (:data:`DELAY_NS`):

``level``
    one adder-tree level: a ripple add of the tree's usual width (about 10-16 bits for 4-bit
    operands) as the target's synthesis maps it, with its share of wiring.
``overhead``
    what the stage spends besides its adders: clock-to-output, setup, the operand register's
    fanout (one input feeds every PE) and the first level's shift/negate of a CSD term.

Both are estimates calibrated on this toolkit's own syntheses, not library data: ASAP7 from the
LeNet-5 split4 core's 564 MHz with whole trees of about 8 levels in one stage (~0.2 ns per level);
OSU 0.18 um from ASAP7 scaled by the libraries' inverter FO4 ratio (about 8x); ECP5 from a CCU2C
carry chain of about 12 bits plus a LUT and a route per level (vendor data-sheet order of
magnitude). 7-series: a least-squares line through the worst paths that :mod:`lcp.synth.paths`
measured per engine in the ``synth_xilinx`` netlist of the CifarNet-split8 branch at the XC7Z020
budget (:data:`XC7_FIT`; Yosys merges a stage's adders into one ``$macc``, about two LUT levels
per tree level): its slope rounded up, its overhead raised until the line covers every
measured path (the constant engine's CSD negations make its first stage one level deeper). A
stage of ``k`` levels must fit ``overhead + k * level`` into the
period; the accumulate stage (one add and a multiplexer) is assumed to fit whenever one level
does.
"""

from __future__ import annotations

import math

__all__ = ["ASIC_TARGETS", "DELAY_NS", "XC7_FIT", "tree_levels_per_stage"]

#: Target -> nanoseconds of one adder level and of a stage's fixed overhead.
DELAY_NS = {
    "asap7": {"level": 0.19, "overhead": 0.22},
    "osu018": {"level": 1.5, "overhead": 1.8},
    "ecp5": {"level": 2.2, "overhead": 2.5},
    "xc7": {"level": 1.65, "overhead": 4.1},
}

#: The 7-series fit: (engine, adder levels in its slowest stage, worst path ns) of the
#: CifarNet-split8 branch 0 folded for the XC7Z020 (``lcp synth --fpga xc7z020``), built with
#: ``tree_k = 8`` and again with ``tree_k = 4``; dense0's path starts at a block RAM, whose
#: 2.45 ns clock-to-out is replaced by a flip-flop's 0.30 ns. The least-squares line through
#: them: 1.61 ns per level, 2.39 ns overhead.
XC7_FIT = (("conv1, LUT multipliers + DSP48", 8, 14.54), ("conv1, tree_k 4", 4, 9.21),
           ("conv0, CSD constants", 7, 14.30), ("conv0, tree_k 4", 4, 10.66),
           ("dense1, LUT multipliers", 5, 9.62), ("dense1, tree_k 4", 4, 8.30),
           ("dense0, LUT multipliers", 2, 4.76))

_ALIASES = {"xc7z020": "xc7", "7series": "xc7"}

#: Standard-cell targets: no hard multiplier slices, so a folding's DSP lanes are built as
#: plain multipliers of their own widths there (:func:`lcp.hw.build.generate`); packing two
#: 4-bit products into one wide multiply pays only on a DSP48 or MULT18X18D.
ASIC_TARGETS = ("asap7", "osu018")


def tree_levels_per_stage(target: str, clock_mhz: float) -> int:
    """Adder-tree levels per pipeline stage at ``clock_mhz`` on ``target`` (at least 1).

    Raises
    ------
    ValueError
        Unknown target or a clock that is not positive.
    """
    t = _ALIASES.get(target, target)
    if t not in DELAY_NS:
        raise ValueError(f"unknown timing target {target!r} (known: {', '.join(DELAY_NS)}, "
                         f"xc7z020)")
    if not clock_mhz > 0:
        raise ValueError(f"clock {clock_mhz} MHz must be positive")
    d = DELAY_NS[t]
    return max(1, math.floor((1e3 / clock_mhz - d["overhead"]) / d["level"]))
