"""The worst register-to-register path of a ``synth_xilinx`` netlist, in logic levels.

No open place and route exists for the Zynq here, so the XC7Z020's clock is estimated from the
synthesized netlist, not measured:

- :func:`worst_path` walks one flattened module of a Yosys JSON netlist (``write_json``) from
  every timing start point (a flip-flop, block RAM or DSP output, a module input) to every end
  point (their inputs, a module output) and returns the slowest path: its LUT levels, its
  CARRY4 chain length, its MUXF7/F8 and its estimated delay.
- Cell delays come from the ``specify`` blocks of Yosys' own ``xilinx/cells_sim.v``
  (:func:`cell_delays`), which quote Project X-Ray's measured Artix-7 SDF timings (the Zynq-7020's
  programmable logic is Artix-7 fabric): per cell type, the slowest input-to-output arc, the
  clock-to-output and the setup time. Each hop between cells adds ``net_ps`` of routing, an
  assumption (routing is decided by place and route); a carry chain's CI -> CO hops and the
  MUXF7/F8 inputs use dedicated wires and add none.
- :func:`fmax_mhz`: ``1e6 / (clock-to-out + path + last net + setup)``.

DSP48E1 and block RAM ports are start and end points (their internal timing depends on which
of their pipeline registers Yosys enabled); a path through a DSP48E1's combinational multiplier
is therefore not followed, and the report says so: ``dsp_unregistered`` counts the slices with
neither their M nor their P register, whose multiply (several ns) such a path would add.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

__all__ = ["NET_PS", "cell_delays", "worst_path", "fmax_mhz"]

#: routing delay assumed per hop between two cells (ps): the typical local net of a -1
#: 7-series design after placement (an assumption of this estimate, not a measurement)
NET_PS = 500

_SEQ = re.compile(r"^(FD[CPRS]E?|FDRE|RAMB\d+E1|RAM\d+[XM].*|SRL.*|DSP48E1|LDCE|LDPE)$")
_DEDICATED = {("CARRY4", "CI"), ("MUXF7", "I0"), ("MUXF7", "I1"), ("MUXF8", "I0"),
              ("MUXF8", "I1")}


def _ps(expr: str) -> int:
    """A specify delay: an integer or a sum of integers (comments dropped)."""
    expr = re.sub(r"/\*.*?\*/", "", expr)
    return sum(int(t) for t in re.findall(r"-?\d+", expr))


@functools.lru_cache(maxsize=4)
def cell_delays(cells_sim: str) -> dict[str, dict]:
    """Per cell of a ``cells_sim.v``: ``arcs`` ``{(input port, output port): ps}`` (the slowest
    bit of each port pair; ``"CO[3]"``-style keys for one output bit), ``comb`` (the slowest arc), ``clk_q`` (the slowest clock-to-output)
    and ``setup`` ``{input port: ps}``, read from each module's specify blocks."""
    out: dict[str, dict] = {}
    text = Path(cells_sim).read_text()
    arc = re.compile(r"\(\s*(posedge|negedge)?\s*(\w+)(?:\[[^\]]*\])?\s*\*?=>\s*\(?\s*(\w+)"
                     r"(?:\[(\d+)\])?")
    for m in re.finditer(r"^module\s+(\w+)(.*?)^endmodule", text, re.S | re.M):
        d = {"arcs": {}, "comb": 0, "clk_q": 0, "setup": {}}
        for blk in re.findall(r"specify(.*?)endspecify", m.group(2), re.S):
            for ln in blk.splitlines():
                ln = re.sub(r"//.*", "", ln)
                if "$setup" in ln:
                    args = ln.split("(", 1)[1].rsplit(")", 1)[0].split(",")
                    port = re.match(r"\s*(\w+)", args[0]).group(1)
                    d["setup"][port] = max(d["setup"].get(port, 0), _ps(args[-1]))
                elif (a := arc.search(ln)) and "=" in ln.split("=>", 1)[1]:
                    v = _ps(ln.rsplit("=", 1)[1].rstrip(";"))
                    if a.group(1):
                        d["clk_q"] = max(d["clk_q"], v)
                    else:
                        for k in {(a.group(2), a.group(3)),
                                  (a.group(2), f"{a.group(3)}[{a.group(4) or 0}]")}:
                            d["arcs"][k] = max(d["arcs"].get(k, 0), v)
                        d["comb"] = max(d["comb"], v)
        out[m.group(1)] = d
    return out


def worst_path(module: dict, delays: dict[str, dict[str, int]], net_ps: int = NET_PS) -> dict:
    """The slowest start-to-end path of one flattened module of a Yosys JSON netlist.

    Returns ``{"delay_ps", "lut_levels", "carry4", "muxf", "start", "end", "cells",
    "dsp_unregistered"}``:
    ``delay_ps`` from the start point's clock-to-out to the end point's setup, every hop's
    ``net_ps`` included; ``start``/``end`` name the cell types; ``cells`` the path's cells from
    start to end (``"type name @ src"``: what to pipeline). A module without a register path gives
    ``lut_levels == 0``."""
    cells = module.get("cells", {})
    drivers: dict = {}            # bit -> list of (cell name, output port)
    for name, c in cells.items():
        dirs = c.get("port_directions", {})
        for port, bits in c.get("connections", {}).items():
            if dirs.get(port) == "output":
                for i, b in enumerate(bits):
                    if isinstance(b, int):
                        drivers.setdefault(b, []).append((name, port, i))
    memo: dict = {}

    def cell_type(name):
        return cells[name]["type"].lstrip("\\")

    def arrival(bit):
        """(delay_ps, luts, carry4, muxf, start type, (cell, input bit)) of the latest signal
        on ``bit``; the last entry leads back along the path (``None`` at its start)."""
        if not isinstance(bit, int) or bit not in drivers:
            return (0, 0, 0, 0, "input", None)
        if bit in memo:
            return memo[bit]
        best = (0, 0, 0, 0, "input", None)
        memo[bit] = best              # a combinational loop ends here instead of recursing
        for name, oport, oi in drivers[bit]:
            t = cell_type(name)
            if _SEQ.match(t) or t not in delays:
                cand = (delays.get(t, {}).get("clk_q", 0), 0, 0, 0, t, (name, None))
            else:
                cand = best
                c = cells[name]
                dirs = c.get("port_directions", {})
                for port, bits in c.get("connections", {}).items():
                    if dirs.get(port) != "input":
                        continue
                    hop = 0 if (t, port) in _DEDICATED else net_ps
                    for b in bits:
                        a = arrival(b)
                        arcs = delays[t]["arcs"]
                        d = a[0] + hop + arcs.get((port, f"{oport}[{oi}]"), arcs.get(
                            (port, oport), delays[t]["comb"]))
                        if d > cand[0]:
                            cand = (d, a[1] + t.startswith("LUT"), a[2] + (t == "CARRY4"),
                                    a[3] + t.startswith("MUXF"), a[4], (name, b))
            if cand[0] > best[0]:
                best = cand
        memo[bit] = best
        return best

    def trace(bit, end_cell):
        """Cells of the path ending on ``bit`` (start point first), each ``"type name"``
        with its source location when the netlist kept one (registers keep theirs)."""
        out, seen = [end_cell], set()
        while isinstance(bit, int) and bit in memo and memo[bit][5] and bit not in seen:
            seen.add(bit)
            name, bit = memo[bit][5]
            out.append(name)
        return [f"{cell_type(n)} {n}" + (f" @ {src}" if (src := cells[n].get(
            "attributes", {}).get("src")) else "") for n in reversed(out) if n]

    worst = {"delay_ps": 0, "lut_levels": 0, "carry4": 0, "muxf": 0, "start": None,
             "end": None, "cells": []}
    ends = []
    for name, c in cells.items():
        t = cell_type(name)
        if _SEQ.match(t):
            dirs = c.get("port_directions", {})
            for port, bits in c.get("connections", {}).items():
                if dirs.get(port) == "input":
                    setup = delays.get(t, {}).get("setup", {}).get(port, 0)
                    ends += [(b, t, setup, name) for b in bits]
    for pname, p in module.get("ports", {}).items():
        if p.get("direction") == "output":
            ends += [(b, "output", 0, pname) for b in p.get("bits", [])]
    for b, t, setup, end_name in ends:
        a = arrival(b)
        if a[1] + a[2] + a[3] == 0:
            continue
        d = a[0] + net_ps + setup
        if d > worst["delay_ps"]:
            worst = {"delay_ps": d, "lut_levels": a[1], "carry4": a[2], "muxf": a[3],
                     "start": a[4], "end": t, "end_bit": b, "end_cell": end_name}
    worst["dsp_unregistered"] = sum(
        1 for c in cells.values() if c["type"].lstrip("\\") == "DSP48E1"
        and not any(int(str(c.get("parameters", {}).get(r, "1")), 2) for r in ("MREG", "PREG")))
    if worst["start"] is not None:
        end_cell = worst.pop("end_cell")
        worst["cells"] = trace(worst.pop("end_bit"), end_cell if end_cell in cells else None)
    return worst


def fmax_mhz(path: dict) -> float | None:
    """The clock a path of :func:`worst_path` allows (MHz), ``None`` without a path."""
    return round(1e6 / path["delay_ps"], 1) if path.get("delay_ps") else None
