"""Driver replication on a mapped FPGA netlist, inside a pyosys job (:mod:`._ysjob`).

nextpnr neither buffers nor replicates: a LUT or flip-flop that drives hundreds of loads (a
stream's advance enable into every bit of a wide window register, an operand broadcast to
every lane) reaches them through general routing spread over the chip, nanoseconds more than a
local net. :func:`replicate_drivers` copies each such driver (a cell of ``replicable``: same
type, parameters and inputs) until no copy drives more than ``max_fanout`` loads, the loads
split in the order of the nets they drive (the bits of one register stay together), as
Vivado's ``MAX_FANOUT`` replication does. The netlist's function is unchanged: every load still
sees the same function of the same inputs. The copies are ordinary cells of the netlist (the
flow's counts include them); they carry ``keep`` so that no later pass merges them back, and
``lcp_copy_of``, the name of the cell they copy.

A copied LUT also gets its own copy of each flip-flop among its inputs (``cone``: register
duplication, as Vivado's ``phys_opt_design`` does): otherwise the copies, placed towards their
loads, all reach back to the one flip-flop, and the path from it crosses two long routes (to
the copy, then to the loads; nextpnr's critical paths of the CifarNet-split8 branch on an
LFE5U-85F: a register slice's ``valid``, 4-6 ns to a copy of the window unit's advance, 4-6 ns
on to the line buffer). With a flip-flop of its own a copy and its register sit by the loads
together; the long route moves before the flip-flop copies, on a path of one LUT.
"""

from __future__ import annotations

from pyosys import libyosys as ys

__all__ = ["ECP5_FF", "ECP5_REPLICABLE", "replicate_drivers"]

#: ECP5 cells that may be copied, and their output port.
ECP5_REPLICABLE = {"LUT4": "Z", "TRELLIS_FF": "Q"}

#: The ECP5 flip-flop (the ``cone`` of :func:`replicate_drivers`).
ECP5_FF = "TRELLIS_FF"


def _key(bit) -> tuple[str, int] | None:
    return None if bit.wire is None else (bit.wire.name.str(), bit.offset)


def _order(cell) -> str:
    """Sort key of a load: the first net its cell drives (bits of one register together)."""
    for port, sig in cell.connections_.items():
        if cell.output(port) and sig.size():
            b = sig.at(0)
            if b.wire is not None:
                return f"{b.wire.name.str()}[{b.offset:06d}]"
    return cell.name.str()


def replicate_drivers(mod, max_fanout: int, replicable: dict[str, str],
                      skip_ports: tuple[str, ...] = ("CLK", "CLKI"), cone: str | None = None
                      ) -> dict:
    """Copy the drivers of nets with more than ``max_fanout`` single-bit loads in ``mod``.

    Loads on ``skip_ports`` (clock inputs: the clock is a global network) are neither counted
    nor moved; multi-bit port loads stay on the original driver. ``cone`` (a flip-flop cell
    type of ``replicable``): every copy of another type gets its own copy of each such
    flip-flop that drives one of its inputs. Returns ``{"nets": nets replicated, "copies":
    cells added for the nets, "cone_copies": flip-flops added for the copies' inputs,
    "max_fanout_before": ..., "max_fanout_after": ...}``."""
    drivers: dict[tuple, object] = {}
    loads: dict[tuple, list] = {}
    for cell in list(mod.cells_.values()):
        t = cell.type.str().lstrip("\\")
        for port, sig in cell.connections_.items():
            name = port.str().lstrip("\\")
            if cell.output(port):
                if replicable.get(t) == name and sig.size() == 1 and _key(sig.at(0)):
                    drivers[_key(sig.at(0))] = cell
                continue
            if sig.size() != 1 or name in skip_ports:
                continue
            k = _key(sig.at(0))
            if k is not None:
                loads.setdefault(k, []).append((cell, port))
    before = max((len(ls) for k, ls in loads.items() if k in drivers), default=0)
    nets = copies = 0
    after = 0
    added = []
    keep, copy_of = ys.IdString("\\keep"), ys.IdString("\\lcp_copy_of")

    def copy_cell(drv, name: str, out_wire):
        out_port = ys.IdString("\\" + replicable[drv.type.str().lstrip("\\")])
        c = mod.addCell(ys.IdString(name), drv.type)
        for p, v in drv.parameters.items():
            c.setParam(p, v)
        for p, sig in drv.connections_.items():
            c.setPort(p, ys.SigSpec(out_wire) if p == out_port else sig)
        c.set_bool_attribute(keep, True)
        c.set_string_attribute(copy_of, drv.name.str().removeprefix("\\"))
        return c

    for k, ls in loads.items():
        drv = drivers.get(k)
        if drv is None or len(ls) <= max_fanout:
            after = max(after, len(ls) if drv is not None else 0)
            continue
        nets += 1
        ls.sort(key=lambda cp: _order(cp[0]))
        drv.set_bool_attribute(keep, True)
        for g in range(max_fanout, len(ls), max_fanout):
            copies += 1
            w = mod.addWire(ys.IdString(f"$lcp_rep{copies}_{nets}"), 1)
            c = copy_cell(drv, f"$lcp_repc{copies}_{nets}", w)
            added.append(c)
            for cell, port in ls[g:g + max_fanout]:
                cell.setPort(port, ys.SigSpec(w))
        after = max(after, min(len(ls), max_fanout))
    ffs = 0
    for c in added if cone else ():
        if c.type.str().lstrip("\\") == cone:
            continue
        for port, sig in list(c.connections_.items()):
            if c.output(port) or sig.size() != 1 or port.str().lstrip("\\") in skip_ports:
                continue
            ff = drivers.get(_key(sig.at(0)))
            if ff is None or ff.type.str().lstrip("\\") != cone:
                continue
            ffs += 1
            w = mod.addWire(ys.IdString(f"$lcp_ffrep{ffs}"), 1)
            copy_cell(ff, f"$lcp_ffrepc{ffs}", w)
            ff.set_bool_attribute(keep, True)
            c.setPort(port, ys.SigSpec(w))
    return {"nets": nets, "copies": copies, "cone_copies": ffs, "max_fanout_before": before,
            "max_fanout_after": after}
