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

``ram`` (FPGAs)
    a block RAM's clock-to-output (the weight ROM and the input-vector buffer are read
    synchronously): where it, the overhead and one adder level do not fit the period, the
    memory reads get a register of their own (fold key ``ram_reg``, :func:`ram_register`).
    ECP5: a DP16KD's 5.61 ns, nextpnr's post-route figure for the CifarNet-split8 branch, whose
    critical path it started (the weight ROM, then a product and three adder levels: 15.4 ns);
    7-series: the RAMB36E1's 2.45 ns of :data:`XC7_FIT`. Standard-cell targets have no block
    RAM (memories are flip-flops).
``ram_route`` (ECP5)
    the route from the registered read to the lanes it feeds, across the chip from the DP16KD
    column: where it, the overhead and a level miss the period, a second register
    (``ram_reg = 2``). ECP5: 5.57 ns, that route in nextpnr's post-route critical path of the
    CifarNet-split8 branch (dense0's weight register, then a product and two adder levels:
    11.4 ns).

Both are estimates calibrated on this toolkit's own syntheses, not library data: ASAP7 from the
LeNet-5 split4 core's 564 MHz with whole trees of about 8 levels in one stage (~0.2 ns per
level); OSU 0.18 um from ASAP7 scaled by the libraries' inverter FO4 ratio (about 8x); ECP5 from
nextpnr's post-route critical path of the CifarNet-split8 branch (10,000-cycle folding on an
LFE5U-85F, built for 100 MHz, once the handshake paths were gone): a stage of 3 levels of
conv0's constant (CSD) adder tree, two CCU2C chains and three LUTs with their routes, 12.8 ns;
the overhead kept above the 2.5 ns of a flip-flop, a route and the first level's shift/negate,
the level the rest (a one-point fit, not a characterization). 7-series: a least-squares line
through the worst paths that :mod:`lcp.synth.paths` measured per engine in the ``synth_xilinx``
netlist of the CifarNet-split8 branch at the XC7Z020 budget (:data:`XC7_FIT`; Yosys merges a
stage's adders into one ``$macc``, about two LUT levels per tree level): its slope rounded up,
its overhead raised until the line covers every measured path (the constant engine's CSD
negations make its first stage one level deeper). A stage of ``k`` levels must fit
``overhead + k * level`` into the period; the accumulate stage (one add and a multiplexer) is
assumed to fit whenever one level does.
"""

from __future__ import annotations

import math

__all__ = ["ASIC_TARGETS", "DELAY_NS", "DSP_PATH_NS", "LINK_PATH_NS", "THRESHOLD_PATH_NS",
           "XC7_FIT", "keeps_dsp", "link_register", "ram_register", "threshold_in_register",
           "tree_levels_per_stage"]

#: Target -> nanoseconds of one adder level and of a stage's fixed overhead.
DELAY_NS = {
    "asap7": {"level": 0.19, "overhead": 0.22},
    "osu018": {"level": 1.5, "overhead": 1.8},
    "ecp5": {"level": 3.15, "overhead": 3.4, "ram": 5.61, "ram_route": 5.57},
    "xc7": {"level": 1.65, "overhead": 4.1, "ram": 2.45},
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

#: Nanoseconds of the register-to-register path through a hard multiplier as the generator
#: builds a DSP lane pair (operands registered in the fabric, the packing add of the two
#: weights, the multiply, the product registered in the fabric). ECP5: nextpnr's post-route
#: path of the CifarNet-split8 branch folded for 10,000 cycles on an LFE5U-85F: the weight
#: ROM's DP16KD (5.61 ns clock-to-output), the add (0.8 ns), a 3.7 ns route to the DSP row,
#: the MULT18X18D's 3.93 ns and a 2.2 ns route back, 18.0 ns; with the ROM read registered
#: (``ram_reg``), a flip-flop's 0.52 ns in place of the 5.61: 12.9 ns. Targets without an
#: entry keep their DSP lanes at any clock.
DSP_PATH_NS = {"ecp5": 12.9}


#: Nanoseconds of a threshold engine's comparison stage fed straight from its input stream: the
#: producer's output multiplexer (a lane converter's beat select), the route to the
#: comparators and their carry chains. ECP5: nextpnr's post-route critical path of the
#: CifarNet-split8 branch folded for 10,000 cycles on an LFE5U-85F, built for 100 MHz (a
#: lane converter's index register, four LUTs, 8 ns of routing, a 13-17-bit CCU2C chain):
#: 13.3 ns. Targets without an entry compare the input as it arrives (the XC7Z020 syntheses'
#: worst threshold paths fit 100 MHz by :mod:`lcp.synth.paths`).
THRESHOLD_PATH_NS = {"ecp5": 13.3}


#: Nanoseconds of a stream between two engines: the producer's output register, the route to
#: the consumer (each engine is placed around its own memories, so the two ends sit apart) and
#: the consumer's handshake (``valid & ready`` into its write enables and counters). ECP5:
#: nextpnr's post-route critical paths of the CifarNet-split8 branch folded for 10,000 cycles
#: on an LFE5U-85F, built for 100 MHz (b6872d9), seeds 1 to 3: a lane converter's ``valid``
#: register, 2.9-4.9 ns to a replicated driver, 5.2-5.9 ns on to conv1's window line buffer,
#: three LUTs (11.2 and 13.0 ns); the input adapter's ``valid`` into conv0's line buffer
#: (12.3 ns). Where it exceeds the period every link gets a register slice (folding key
#: ``link_reg``, :class:`~lcp.hw.skid.RegisterSlice`). Targets without an entry keep skid
#: buffers (the XC7Z020 and standard-cell syntheses' worst paths are inside engines).
LINK_PATH_NS = {"ecp5": 11.2}


def link_register(target: str, clock_mhz: float) -> bool:
    """Every stream between engines is registered both ways (the folding's ``link_reg``) at
    ``clock_mhz`` on ``target``: the path of :data:`LINK_PATH_NS` exceeds the period."""
    return LINK_PATH_NS.get(_target(target), 0.0) > 1e3 / clock_mhz


def threshold_in_register(target: str, clock_mhz: float) -> bool:
    """The threshold engines register their input before comparing (fold key ``in_reg``) at
    ``clock_mhz`` on ``target``: the stage of :data:`THRESHOLD_PATH_NS` exceeds the period."""
    return THRESHOLD_PATH_NS.get(_target(target), 0.0) > 1e3 / clock_mhz


def keeps_dsp(target: str, clock_mhz: float | None) -> bool:
    """A build for ``target`` at ``clock_mhz`` keeps the folding's DSP lanes: the target has
    hard multipliers (not :data:`ASIC_TARGETS`) and their path (:data:`DSP_PATH_NS`) fits the
    clock period. Otherwise each lane is its own LUT or standard-cell multiplier, whose adder
    tree the pipeline registers cut to the clock."""
    t = _ALIASES.get(target, target)
    if t in ASIC_TARGETS:
        return False
    return clock_mhz is None or DSP_PATH_NS.get(t, 0.0) <= 1e3 / clock_mhz


def ram_register(target: str, clock_mhz: float) -> int:
    """Registers the memory reads need before the products at ``clock_mhz`` on ``target``
    (fold key ``ram_reg``): 1 where a block RAM's clock-to-output, the stage overhead and one
    adder level exceed the period; 2 where, besides, the route from the block RAM column to
    the lanes (``ram_route``), the overhead and a level do too."""
    d = DELAY_NS[_target(target)]
    period = 1e3 / clock_mhz
    if d.get("ram", 0.0) + d["overhead"] + d["level"] <= period:
        return 0
    return 1 + int(d.get("ram_route", 0.0) + d["overhead"] + d["level"] > period)


def _target(target: str) -> str:
    t = _ALIASES.get(target, target)
    if t not in DELAY_NS:
        raise ValueError(f"unknown timing target {target!r} (known: {', '.join(DELAY_NS)}, "
                         f"xc7z020)")
    return t


def tree_levels_per_stage(target: str, clock_mhz: float) -> int:
    """Adder-tree levels per pipeline stage at ``clock_mhz`` on ``target`` (at least 1).

    Raises
    ------
    ValueError
        Unknown target or a clock that is not positive.
    """
    t = _target(target)
    if not clock_mhz > 0:
        raise ValueError(f"clock {clock_mhz} MHz must be positive")
    d = DELAY_NS[t]
    return max(1, math.floor((1e3 / clock_mhz - d["overhead"]) / d["level"]))
