"""ASIC flow: Yosys to a standard-cell library, OpenSTA for timing and power.

Steps (:func:`asic_flow`):

1. *Synthesis* (pyosys, hierarchy kept): ``synth``, clock gating, ``dfflibmap``, ``abc -liberty``
   at the target clock, ``hilomap``; area of every submodule from the liberty cell areas. The
   mapped design is then flattened into one netlist whose cells keep the name of the module
   they came from. Clock gating (libraries with an integrated clock gate, e.g. ASAP7's ``ICGx1``):
   every group of 4 or more flip-flops that share a load enable (line buffers, weight and
   accumulator registers, stream registers) is clocked through one gate instead of feeding its
   value back through a multiplexer; Amaranth's synchronous reset joins the enable.
2. *Timing* (OpenSTA): one clock on ``clk`` at the target period, inputs and outputs constrained
   at 0 against it (a full cycle for port-to-register paths), no wire load, ideal clock. Worst
   slack at the target; ``Fmax = 1 / (period - worst slack)``.
3. *Activity*: the netlist itself is simulated at gate level with Verilator on the stimulus
   (:mod:`lcp.synth.gatesim`); the VCD gives each net's toggle rate and duty cycle.
4. *Power* (OpenSTA): this OpenSTA keeps user activity only on top-level input ports (every
   other pin is recomputed by its propagation, which assumes independent inputs and
   overestimates adder and multiplier trees several-fold). So one OpenSTA run at a uniform
   reference activity traces every pin's internal and switching power (its liberty tables at
   the pin's slew and load), and each pin's figure is scaled by the simulated toggle rate of
   its net; the trace is checked to add up to OpenSTA's own per-instance report. OpenSTA's own
   propagation from the simulated flip-flop and input activity (flip-flop data inputs cut to
   ports) is reported next to it. The clock net (ideal, no tree) adds ``C_clk_pins * V^2 * f``
   for the pins on the free-running clock; gated clocks are ordinary nets driven by their gate
   and switch at their simulated rate.
   Without a simulation, inputs get 0.1 toggles per cycle and OpenSTA propagates ("vectorless").
5. *OpenROAD* floorplan, placement and power when ``openroad`` is on ``PATH``; otherwise the
   report says it was skipped.

Every figure that could not be measured is ``None`` with a reason in the report's
``unmeasured`` list, never a zero.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .design import TOP_GROUP, Design
from .gatesim import GateSim, Stimulus, cell_models, gate_sim, netlist_ports
from .libs import CellLibrary, get_library
from .split import run_units, split_units
from .tools import (SynthError, ToolFailed, ToolMissing, find_tool, have_tool, run_tool,
                    run_yosys_job, tool_versions)

__all__ = ["AsicNetlist", "synth_asic", "sta_timing", "sta_power", "asic_flow"]


@dataclass
class AsicNetlist:
    """A design mapped to a library (result of :func:`synth_asic`).

    Members
    -------
    netlist, power_netlist : flat Verilog for OpenSTA (the second with flip-flop inputs cut to
        ports).
    sim_netlist : the same netlist for simulation (constant output bits kept).
    top : module name.
    lib : the library.
    cells : cell name -> ``(type, group, {pin: net})``.
    flops : flip-flop records (``cell``, ``type``, ``d_pin``, ``d`` and ``out`` nets,
        ``out_pin``, ``inverted``).
    modules : module name -> own area (um2), sequential area, cell count (submodules excluded)
        after the per-module mapping, before the fanout buffers.
    groups : group label -> area (um2), sequential area, cells, of the final netlist.
    seconds : synthesis time.
    """

    netlist: Path
    sim_netlist: Path
    power_netlist: Path
    top: str
    lib: CellLibrary
    cells: dict
    flops: list
    modules: dict
    groups: dict
    seconds: float
    profile: dict | None = None

    def clock_gating(self) -> dict:
        """Integrated clock gates and the flip-flops they clock (``gated_flops``)."""
        icg = self.lib.clock_gate
        n_icg = sum(1 for t, _g, _c in self.cells.values() if icg and t == icg.name)
        gated = 0
        for f in self.flops:
            c = self.lib.cells[f["type"]]
            clk = (c.ff[3] if c.ff else "CLK").strip("()! ")
            if self.cells[f["cell"]][2].get(clk) != "clk":
                gated += 1
        return {"cell": icg.name if icg else None, "icgs": n_icg, "gated_flops": gated,
                "flops": len(self.flops)}

    @property
    def area_um2(self) -> float:
        return sum(g["area_um2"] for g in self.groups.values())


#: ABC maps each module for this fraction of the clock period: paths that cross modules, the
#: fanout buffers added afterwards and the flip-flops' setup take the rest.
_DELAY_MARGIN = 0.8


def _clock_gate(lib: CellLibrary) -> list | None:
    """``[cell, enable, clock, gated clock, test pin]`` for Yosys' ``clockgate``, or ``None``."""
    c = lib.clock_gate
    if c is None:
        return None
    _kind, clk, en, gclk, test = c.icg
    return [c.name, en, clk, gclk, test]


def _ff_pins(lib: CellLibrary) -> dict[str, list]:
    out = {}
    for name, c in lib.cells.items():
        o = c.ff_output()
        if o and c.ff_data_pin():
            out[name] = [c.ff_data_pin(), o[0], o[1]]
    return out


def synth_asic(design: Design, lib: CellLibrary, clock_mhz: float, workdir: Path,
               effort: str = "normal", clock_gating: bool = True, jobs: int | None = None,
               log=None) -> AsicNetlist:
    """Synthesize ``design`` to ``lib`` for a ``clock_mhz`` target (see the module docstring).

    ``effort``: ABC mapping script, ``normal`` (choice computation ``&dch``, a few % smaller) or
    ``fast`` (several times quicker on large multiplier arrays).
    Each engine is mapped as its own cached unit (:mod:`lcp.synth.split`), ``jobs`` child
    processes at a time; one last job links the mapped engines and writes the flat netlists.
    ``clock_gating``: flip-flops that share a load enable (at least 4) are clocked through one
    of the library's integrated clock gates (:attr:`CellLibrary.clock_gate`) instead of
    recirculating their value through a multiplexer; ignored when the library has none.

    Raises
    ------
    ToolFailed
        Yosys failed, or cells stayed unmapped to the library (the message names them).
    """
    if effort not in ("fast", "normal"):
        raise SynthError(f"unknown synthesis effort {effort!r} (fast, normal)")
    workdir = Path(workdir).resolve()
    period_ps = 1e6 / clock_mhz
    params = {
        "files": [str(Path(f).resolve()) for f in design.files], "top": design.top,
        "liberty": [str(p) for p in lib.liberty], "seq_liberty": [str(p) for p in lib.seq_liberty],
        "dff_dont_use": list(lib.dff_dont_use), "dont_use": list(lib.dont_use),
        "period_ps": period_ps, "delay_target_ps": _DELAY_MARGIN * period_ps,
        "tie": list(lib.tie) if lib.tie else None,
        "buffer": list(lib.buffer), "effort": effort,
        "clock_gate": _clock_gate(lib) if clock_gating else None, "clock_gate_min": 4,
        "fanout_buffer": list(lib.fanout_buffer), "max_fanout": 16,
        "cell_inputs": {n: sorted(c.inputs) for n, c in lib.cells.items()},
        "cells_known": sorted(lib.cells), "ff_pins": _ff_pins(lib),
        "stat": str((workdir / "stat.json").resolve()),
        "netlist": str((workdir / "netlist.v").resolve()),
        "sim_netlist": str((workdir / "netlist_sim.v").resolve()),
        "power_netlist": str((workdir / "power_netlist.v").resolve()),
        "cells": str((workdir / "cells.json").resolve()),
    }
    t0 = time.perf_counter()
    map_keys = ("liberty", "seq_liberty", "dff_dont_use", "dont_use", "delay_target_ps", "tie",
                "effort", "clock_gate", "clock_gate_min")
    units = split_units(design.files, design.top)
    mapped = run_units(units, "asic_map", {k: params[k] for k in map_keys}, workdir / "units",
                       jobs=jobs, log=log)
    params["rtlil"] = [str(r["rtlil"]) for r in mapped]
    res = run_yosys_job("asic", params, workdir)
    res["profile"] = {"units_synthesized": sum(1 for r in mapped if not r["cached"]),
                      "units_cached": sum(1 for r in mapped if r["cached"]),
                      "map_jobs_s": sorted({r["seconds"] for r in mapped if not r["cached"]})}
    stat = json.loads((workdir / "stat.json").read_text())
    cj = json.loads((workdir / "cells.json").read_text())
    areas = {n: c.area for n, c in lib.cells.items()}
    seq = {n for n, c in lib.cells.items() if c.sequential}
    modules = {}
    for mname, m in stat["modules"].items():
        own = {t.lstrip("\\"): k for t, k in m.get("num_cells_by_type", {}).items()
               if t.lstrip("\\") in areas}
        modules[mname.lstrip("\\")] = {
            "area_um2": sum(areas[t] * k for t, k in own.items()),
            "seq_area_um2": sum(areas[t] * k for t, k in own.items() if t in seq),
            "cells": sum(own.values())}
    cells = {n: (t, design.group_of(mod) if mod else TOP_GROUP, conns)
             for n, (t, mod, conns) in cj["cells"].items()}
    # areas from the final netlist: it also holds the fanout buffers, tie cells and the
    # buffers that replace wire-to-wire connections, added after the per-module mapping
    groups: dict[str, dict] = {}
    for t, g, _ in cells.values():
        acc = groups.setdefault(g, {"area_um2": 0.0, "seq_area_um2": 0.0, "cells": 0})
        acc["area_um2"] += areas[t]
        acc["cells"] += 1
        if t in seq:
            acc["seq_area_um2"] += areas[t]
    return AsicNetlist(netlist=workdir / "netlist.v", sim_netlist=workdir / "netlist_sim.v",
                       power_netlist=workdir / "power_netlist.v",
                       top=design.top, lib=lib, cells=cells, flops=cj["flops"], modules=modules,
                       groups=groups, seconds=round(time.perf_counter() - t0, 2),
                       profile={**res["profile"], "link_s": res["seconds"]})


def _sta_header(lib: CellLibrary, netlist: Path, top: str, clock_mhz: float) -> str:
    period = 1e6 / clock_mhz / lib.time_unit_ps
    libs = "\n".join(f"read_liberty {{{p}}}" for p in lib.liberty)
    return f"""{libs}
read_verilog {{{netlist}}}
link_design {top}
create_clock -name clk -period {period:.6g} [get_ports clk]
set lcp_in [delete_from_list [all_inputs] [get_ports clk]]
if {{[llength $lcp_in] > 0}} {{ set_input_delay 0 -clock clk $lcp_in }}
if {{[llength [all_outputs]] > 0}} {{ set_output_delay 0 -clock clk [all_outputs] }}
"""


def _run_sta(script: str, workdir: Path, name: str, timeout: float | None = None) -> str:
    sta = find_tool("sta")
    workdir = Path(workdir).resolve()
    (workdir / f"{name}.tcl").write_text(script + "\nexit\n")
    run_tool([sta, "-no_splash", "-exit", str(workdir / f"{name}.tcl")], workdir / f"{name}.log",
             cwd=workdir, timeout=timeout)
    text = (workdir / f"{name}.log").read_text(errors="replace")
    errs = [ln for ln in text.splitlines() if ln.startswith("Error")]
    if errs:
        raise ToolFailed(f"OpenSTA reported errors (log: {workdir / f'{name}.log'}):\n"
                         + "\n".join(errs[:8]))
    return text


def sta_timing(net: AsicNetlist, clock_mhz: float, workdir: Path) -> dict:
    """Worst setup slack at ``clock_mhz`` and the Fmax it implies.

    Returns
    -------
    dict with ``clock_mhz``, ``period_ns``, ``worst_slack_ns`` (negative: timing not met),
    ``met``, ``fmax_mhz``, ``critical_path`` (``from``, ``to``, their groups, ``arrival_ns``).
    """
    lib = net.lib
    script = _sta_header(lib, net.netlist.resolve(), net.top, clock_mhz) + """
puts "LCP_WNS [sta::worst_slack -max]"
report_checks -path_delay max -digits 4
"""
    text = _run_sta(script, Path(workdir), "timing")
    m = re.search(r"LCP_WNS\s+(\S+)", text)
    if not m:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise ToolFailed(f"OpenSTA gave no worst slack (log: {Path(workdir).resolve()}/"
                         f"timing.log):\n{tail}")
    unit_ns = lib.time_unit_ps / 1000.0
    wns = float(m.group(1)) * unit_ns
    period_ns = 1e3 / clock_mhz
    if abs(wns) > 1e20:      # no constrained path at all
        return {"clock_mhz": clock_mhz, "period_ns": period_ns, "worst_slack_ns": None,
                "met": None, "fmax_mhz": None, "critical_path": None}
    sp = re.search(r"Startpoint:\s+(\S+)", text)
    ep = re.search(r"Endpoint:\s+(\S+)", text)
    arr = re.search(r"(\S+)\s+data arrival time", text)
    crit = None
    if sp and ep:
        def grp(x):
            c = x.split("/")[0]
            return net.cells.get(c, (None, TOP_GROUP if c == x else None, None))[1]
        crit = {"from": sp.group(1), "to": ep.group(1), "from_group": grp(sp.group(1)),
                "to_group": grp(ep.group(1)),
                "arrival_ns": float(arr.group(1)) * unit_ns if arr else None}
    return {"clock_mhz": clock_mhz, "period_ns": period_ns, "worst_slack_ns": wns,
            "met": wns >= 0, "fmax_mhz": 1e3 / (period_ns - wns) if period_ns - wns > 0 else None,
            "critical_path": crit}


_GLOBAL_ACT = 0.1     # activity of the reference run whose per-pin figures are replayed


def _sta_power_run(net: AsicNetlist, clock_mhz: float, workdir: Path, name: str, netlist: Path,
                   settings: list[str], debug: bool) -> Path:
    """One OpenSTA power run: per-instance power to ``<name>_instances.txt`` (and the
    ``power`` debug trace of every pin to ``<name>.log`` when ``debug``)."""
    head = _sta_header(net.lib, netlist.resolve(), net.top, clock_mhz)
    script = head + "\n".join(settings) + f"""
set lcp_fd [open {name}_instances.txt w]
set lcp_corner [sta::cmd_corner]
foreach lcp_inst [get_cells *] {{
  puts $lcp_fd "[get_full_name $lcp_inst] [sta::instance_power $lcp_inst $lcp_corner]"
}}
close $lcp_fd
{"sta::set_debug power 2" if debug else ""}
report_power -digits 4
"""
    _run_sta(script, workdir, name)
    return workdir / f"{name}_instances.txt"


def _read_instances(path: Path) -> dict[str, tuple[float, float, float]]:
    out = {}
    for ln in path.read_text().splitlines():
        parts = ln.split()
        if len(parts) >= 4:
            out[parts[0]] = (float(parts[1]), float(parts[2]), float(parts[3]))
    return out


_RE_INTERNAL = re.compile(r"power: internal (\S+)/(\S+) \(")
_RE_SWITCH = re.compile(r"power: switching \S+ activity = (\S+) volt = \S+ (\S+)")
_RE_ARC = re.compile(r"power:\s+(\S+) -> (\S+)\s+(.*)$")
_RE_SCI = re.compile(r"^-?[\d.]+e[-+]\d+$")
_RE_FIX = re.compile(r"^-?\d+\.\d+$")


def _read_pin_powers(log: Path) -> tuple[dict, dict, float]:
    """OpenSTA's ``power`` debug trace, per pin.

    Returns ``(internal, switching, total)``: ``(instance, pin)`` -> ``[watts, activity]``
    (the activity OpenSTA assumed for that pin, transitions per second, as printed), and the
    trace's total in watts. Internal power goes to the pin whose transitions its arc counts
    (the arc's ``to`` pin: an output for output arcs, the input itself for input arcs such as
    a flip-flop's clock); switching power to the driving pin.
    """
    internal: dict[tuple[str, str], list] = {}
    switching: dict[tuple[str, str], list] = {}
    inst = None
    pending = None
    total = 0.0
    with open(log, errors="replace") as f:
        for ln in f:
            if not ln.startswith("power:"):
                continue
            m = _RE_INTERNAL.match(ln)
            if m:
                inst = m.group(1)
                if pending is not None:
                    switching[(inst, m.group(2))] = pending
                    pending = None
                continue
            m = _RE_SWITCH.match(ln)
            if m:
                pending = [float(m.group(2)), float(m.group(1))]
                total += pending[0]
                continue
            m = _RE_ARC.match(ln)
            if m and inst is not None:
                # [when] act/ns duty energy power [supply]: the first two numbers in
                # scientific notation are energy and power; act/ns is two before energy
                toks = m.group(3).split()
                sci = [k for k, t in enumerate(toks) if _RE_SCI.match(t)]
                if len(sci) < 2 or sci[0] < 2 or not _RE_FIX.match(toks[sci[0] - 2]):
                    raise ToolFailed(f"unexpected OpenSTA power trace line: {ln.strip()!r}")
                p = float(toks[sci[1]])
                act = float(toks[sci[0] - 2]) * 1e9
                total += p
                e = internal.setdefault((inst, m.group(2)), [0.0, act])
                e[0] += p
    return internal, switching, total


def _clock_nets(net: AsicNetlist) -> set[str]:
    """``clk`` and the nets it reaches through clock gates and buffers (the clock network
    OpenSTA propagates its clock activity on)."""
    lib = net.lib
    icg = lib.clock_gate
    drives: dict[str, list[str]] = {}                  # input net -> output nets
    for t, _g, conns in net.cells.values():
        c = lib.cells[t]
        if icg is not None and t == icg.name:
            src, out = conns.get(icg.icg[1]), conns.get(icg.icg[3])
        elif len(c.inputs) == 1 and len(c.outputs) == 1:
            ((pin,), ((opin, fn),)) = c.inputs, c.outputs.items()
            if fn.replace(" ", "").strip("()") != pin:
                continue                                  # inverters and others: not traced
            src, out = conns.get(pin), conns.get(opin)
        else:
            continue
        if src and out:
            drives.setdefault(src, []).append(out)
    seen, todo = {"clk"}, ["clk"]
    while todo:
        for out in drives.get(todo.pop(), []):
            if out not in seen:
                seen.add(out)
                todo.append(out)
    return seen


def _power_replay(net: AsicNetlist, clock_mhz: float, workdir: Path, sim: GateSim) -> dict:
    """Per-pin power with the simulated activity of every net (see :func:`sta_power`)."""
    inst_file = _sta_power_run(
        net, clock_mhz, workdir, "power_ref", net.netlist,
        [f"set_power_activity -global -activity {_GLOBAL_ACT} -duty 0.5"], debug=True)
    ref = _read_instances(inst_file)
    internal, switching, sum_t = _read_pin_powers(workdir / "power_ref.log")
    sum_i = sum(v[0] for v in ref.values()) + sum(v[1] for v in ref.values())
    if not internal or abs(sum_t - sum_i) > 0.02 * abs(sum_i):
        raise ToolFailed(f"OpenSTA's power trace ({sum_t:.4g} W) does not add up to its report "
                         f"({sum_i:.4g} W): cannot replay simulated activity "
                         f"(log {workdir / 'power_ref.log'})")
    act = sim.activity
    flop_out = {f["cell"]: f["out"] for f in net.flops}
    f_hz = clock_mhz * 1e6
    clocks = _clock_nets(net)

    def net_of(inst: str, pin: str) -> str | None:
        _t, _g, conns = net.cells[inst]
        return conns.get(pin, flop_out.get(inst) if pin not in conns else None)

    def rate_of(n: str | None) -> float | None:
        """Simulated transitions per second of net ``n``."""
        if n is None:
            return None
        if n.startswith("1'b"):
            return 0.0
        if n == "clk":
            return 2.0 * f_hz
        return act.rate(n) * f_hz if n in act else None

    unknown = 0
    off_reference = 0
    groups: dict[str, dict] = {}
    tot = {"internal_w": 0.0, "switching_w": 0.0, "leakage_w": 0.0}
    for inst, (_i, _s, leak) in ref.items():
        t, g, conns = net.cells[inst]
        acc = groups.setdefault(g, {"internal_w": 0.0, "switching_w": 0.0, "leakage_w": 0.0})
        acc["leakage_w"] += leak
        tot["leakage_w"] += leak
    for kind, table in (("internal_w", internal), ("switching_w", switching)):
        for (inst, pin), (p, printed) in table.items():
            g = net.cells[inst][1]
            n = net_of(inst, pin)
            r = rate_of(n)
            if r is None:
                unknown += 1
                r = 0.0
            # the activity OpenSTA used: the clock's on the clock network, else the reference
            ref_act = (2.0 if n in clocks else _GLOBAL_ACT) * f_hz
            if r and abs(printed - ref_act) > 0.01 * ref_act + 0.006e9:
                off_reference += 1                      # trust OpenSTA's own figure
                ref_act = printed
            v = p * r / ref_act if ref_act > 0 else 0.0
            groups[g][kind] += v
            tot[kind] += v
    return {**tot, "groups": groups, "pins_without_activity": unknown,
            "pins_off_reference": off_reference}


def _power_native(net: AsicNetlist, clock_mhz: float, workdir: Path, sim: GateSim | None) -> dict:
    """OpenSTA's own propagation: simulated activity on flip-flops (cut to ports) and inputs,
    or 0.1 toggles per cycle on the inputs without a simulation."""
    lines = []
    if sim is not None:
        netlist = net.power_netlist
        act = sim.activity
        loads: dict[str, float] = {}
        for f in net.flops:
            src = f["out"]
            rate, duty = (act.rate(src), act.duty(src)) if src and src in act else (0.0, 0.0)
            d_duty = 1.0 - duty if f["inverted"] else duty
            lines.append(f"sta::set_power_input_port_activity [get_ports {{lcp_d_{f['cell']}}}] "
                         f"{rate:.6g} {d_duty:.6g}")
            d = f["d"]
            if d and not d.startswith("1'b"):
                loads[d] = loads.get(d, 0.0) + net.lib.cells[f["type"]].inputs.get(f["d_pin"], 0.0)
        for n, c in loads.items():
            lines.append(f"set_load {c:.6g} [get_nets {{{n}}}]")
        for name, direction, width in netlist_ports(net.netlist):
            if direction != "input" or name == "clk":
                continue
            for b in ([name] if width == 1 else [f"{name}[{i}]" for i in range(width)]):
                if b in act:
                    lines.append(f"sta::set_power_input_port_activity [get_ports {{{b}}}] "
                                 f"{act.rate(b):.6g} {act.duty(b):.6g}")
    else:
        netlist = net.netlist
        lines.append("set_power_activity -input -activity 0.1 -duty 0.5")
    ref = _read_instances(_sta_power_run(net, clock_mhz, workdir, "power_native", netlist, lines,
                                         debug=False))
    groups: dict[str, dict] = {}
    tot = {"internal_w": 0.0, "switching_w": 0.0, "leakage_w": 0.0}
    for inst, (i, s, l) in ref.items():
        g = net.cells.get(inst, (None, TOP_GROUP, None))[1]
        acc = groups.setdefault(g, {"internal_w": 0.0, "switching_w": 0.0, "leakage_w": 0.0})
        for k, v in zip(("internal_w", "switching_w", "leakage_w"), (i, s, l)):
            acc[k] += v
            tot[k] += v
    return {**tot, "groups": groups}


def sta_power(net: AsicNetlist, clock_mhz: float, workdir: Path, sim: GateSim | None) -> dict:
    """Power at ``clock_mhz``: totals, per group, and how the activity was obtained.

    With a simulation, every pin's power is OpenSTA's own figure for that pin (its liberty
    tables at the pin's slew and load, traced at a uniform reference activity) scaled by the
    simulated toggle rate of the pin's net; clock pins keep OpenSTA's clock activity. This
    OpenSTA cannot take per-net activity (it recomputes every pin but the input ports), and its
    propagation from annotated flip-flops overestimates arithmetic logic several-fold; that
    figure is reported next to it as ``opensta_propagated``. Without a simulation, OpenSTA's
    vectorless propagation (0.1 toggles per cycle on inputs) is the result.

    Returns
    -------
    dict with ``internal_w``, ``switching_w``, ``leakage_w``, ``total_w``, ``clock_net_w``,
    ``groups`` (label -> the same four), ``activity`` (method and coverage) and, with a
    simulation, ``opensta_propagated`` (totals of OpenSTA's own propagation).
    """
    workdir = Path(workdir).resolve()
    lib = net.lib
    with ThreadPoolExecutor(2) as ex:           # the two OpenSTA runs are independent
        native_f = ex.submit(_power_native, net, clock_mhz, workdir, sim)
        replay_f = ex.submit(_power_replay, net, clock_mhz, workdir, sim) if sim else None
        native = native_f.result()
        res = replay_f.result() if replay_f else None
    if sim is not None:
        method = ("gate-level Verilator simulation of the mapped netlist (zero delay: no "
                  "glitches); every pin's internal and switching power is OpenSTA's figure for "
                  "that pin (liberty tables at its slew and load) scaled by the simulated toggle "
                  "rate of its net; clock pins at 2 transitions per cycle, gated clock pins at "
                  "the simulated rate of their gated clock")
        activity = {"method": method, "pins_without_activity": res.pop("pins_without_activity"),
                    "pins_off_reference": res.pop("pins_off_reference"),
                    **sim.activity.summary()}
    else:
        res = native
        activity = {"method": "vectorless: 0.1 toggles per cycle, duty 0.5 on every input, "
                              "propagated by OpenSTA through logic and registers"}
    groups = res["groups"]
    # the ideal clock net (it has no driving cell): every pin on it switches twice per cycle;
    # gated clocks are nets driven by a clock gate, counted with the other nets
    f_hz = clock_mhz * 1e6
    clock_net_w = 0.0
    for t, g, conns in net.cells.values():
        c = lib.cells[t]
        for pin, n in conns.items():
            if n == "clk" and pin in c.inputs:
                w = c.inputs[pin] * lib.cap_unit_ff * 1e-15 * lib.voltage ** 2 * f_hz
                clock_net_w += w
                groups.setdefault(g, {"internal_w": 0.0, "switching_w": 0.0,
                                      "leakage_w": 0.0})["switching_w"] += w
    res["switching_w"] += clock_net_w
    for g in groups.values():
        g["total_w"] = g["internal_w"] + g["switching_w"] + g["leakage_w"]
    out = {k: res[k] for k in ("internal_w", "switching_w", "leakage_w")}
    out["total_w"] = sum(out.values())
    out.update(clock_net_w=clock_net_w, groups=groups, activity=activity)
    if sim is not None:
        n = {k: native[k] for k in ("internal_w", "switching_w", "leakage_w")}
        n["total_w"] = sum(n.values()) + clock_net_w
        n["method"] = ("OpenSTA's own propagation from the simulated activity of flip-flops "
                       "(data inputs cut to ports) and inputs; independent-input model")
        out["opensta_propagated"] = n
    return out


def _openroad(net: AsicNetlist, clock_mhz: float, workdir: Path) -> tuple[dict | None, str | None]:
    """Floorplan, placement and power with OpenROAD when it is installed."""
    if not have_tool("openroad"):
        return None, ("openroad is not on PATH: floorplan, placement and post-placement power "
                      "skipped")
    lib = net.lib
    if not lib.lef:
        return None, f"no LEF files for {lib.name}: OpenROAD skipped"
    lefs = []
    for p in lib.lef:
        if p.suffix == ".gz":
            out = workdir / p.name[:-3]
            out.write_bytes(gzip.decompress(p.read_bytes()))
            lefs.append(out)
        else:
            lefs.append(p)
    tech = [p for p in lefs if "tech" in p.name] + [p for p in lefs if "tech" not in p.name]
    sites = re.findall(r"^\s*SITE\s+(\S+)", "\n".join(p.read_text(errors="replace")
                                                       for p in lefs), re.M)
    if not sites:
        return None, f"no SITE in the LEF files of {lib.name}: OpenROAD skipped"
    # Not exercised on the project's machines (no OpenROAD package): failures are reported.
    script = "\n".join(f"read_lef {{{p}}}" for p in tech) + "\n" + \
        _sta_header(lib, net.netlist.resolve(), net.top, clock_mhz) + f"""
initialize_floorplan -utilization 50 -aspect_ratio 1 -core_space 2 -site {sites[0]}
global_placement -skip_io -density 0.6
detailed_placement
report_design_area
report_power
exit
"""
    try:
        (workdir / "openroad.tcl").write_text(script)
        run_tool([find_tool("openroad"), "-exit", str(workdir / "openroad.tcl")],
                 workdir / "openroad.log", cwd=workdir)
    except (ToolFailed, ToolMissing) as e:
        return None, f"openroad failed: {str(e).splitlines()[0]}"
    text = (workdir / "openroad.log").read_text(errors="replace")
    m = re.search(r"Design area\s+([\d.]+)\s+u\^2\s+([\d.]+)% utilization", text)
    return {"design_area_um2": float(m.group(1)) if m else None,
            "utilization_pct": float(m.group(2)) if m else None,
            "log": str(workdir / "openroad.log")}, None


def _at_fmax(power: dict, timing: dict, clock_mhz: float, lat, per_inf) -> dict | None:
    """Power, latency and energy at the measured Fmax when the target clock is not met:
    internal and switching power scale with the clock at the same activity per cycle,
    leakage does not."""
    f = timing.get("fmax_mhz")
    if timing.get("met") is not False or not f:
        return None
    k = f / clock_mhz
    dyn = power["internal_w"] + power["switching_w"]
    total = dyn * k + power["leakage_w"]
    return {"clock_mhz": f, "internal_w": power["internal_w"] * k,
            "switching_w": power["switching_w"] * k, "leakage_w": power["leakage_w"],
            "total_w": total, "latency_us": lat / f if lat else None,
            "energy_nj": total * per_inf / (f * 1e6) * 1e9 if per_inf else None}


def asic_flow(design: Design, library: str = "osu018", *, clock_mhz: float,
              pdk_dir=None, workdir: Path, stimulus: Stimulus | None = None,
              latency_cycles: int | None = None, effort: str = "normal",
              clock_gating: bool = True, jobs: int | None = None, log=None) -> dict:
    """Synthesis, timing, activity and power of ``design`` on ``library`` at ``clock_mhz``.

    Parameters
    ----------
    design : the Verilog design.
    library : ``osu018`` or ``asap7``.
    clock_mhz : target clock.
    pdk_dir : library folder (see :func:`lcp.synth.libs.get_library`).
    workdir : folder for every intermediate file and log.
    stimulus : input beats for the gate-level simulation; ``None``: vectorless power and no
        simulated latency.
    latency_cycles : cycles per inference when no simulation gives them (e.g. the hardware
        generator's report).
    effort : ABC effort (:func:`synth_asic`).
    clock_gating : insert the library's integrated clock gates (:func:`synth_asic`).

    Returns
    -------
    The report dict (see :mod:`lcp.synth.report`).

    Raises
    ------
    LibraryError, ToolMissing, ToolFailed : as raised by the steps (clear one-line causes).
    """
    t_start = time.perf_counter()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if clock_mhz <= 0 or not math.isfinite(clock_mhz):
        raise SynthError(f"--clock-mhz must be a positive number, not {clock_mhz}")
    lib = get_library(library, pdk_dir)
    find_tool("sta")
    unmeasured: list[dict] = []
    steps: dict[str, float] = {}
    net = synth_asic(design, lib, clock_mhz, workdir / "synth", effort, clock_gating, jobs, log)
    steps["synthesis_s"] = net.seconds

    def timed(step, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            steps[step] = round(time.perf_counter() - t, 2)

    # static timing runs beside the gate-level simulation, or beside vectorless power
    sim = None
    with ThreadPoolExecutor(2) as ex:
        timing_f = ex.submit(timed, "timing_s", sta_timing, net, clock_mhz, workdir / "synth")
        power_f = (ex.submit(timed, "power_s", sta_power, net, clock_mhz, workdir / "synth",
                             None) if stimulus is None else None)
        if stimulus is not None:
            t = time.perf_counter()
            try:
                sim = gate_sim(net.sim_netlist, cell_models(lib), net.top, stimulus,
                               workdir / "gatesim")
            except (SynthError, ToolMissing, ToolFailed) as e:
                unmeasured.append({"what": "activity", "why": "gate-level simulation failed, "
                                   f"power is vectorless: {str(e).splitlines()[0]}"})
            steps["gate_sim_s"] = round(time.perf_counter() - t, 2)
        else:
            unmeasured.append({"what": "activity", "why": "no stimulus: vectorless power (0.1 "
                                                          "toggles per cycle on inputs)"})
        timing = timing_f.result()
        power = power_f.result() if power_f else None
    if power is None:
        power = timed("power_s", sta_power, net, clock_mhz, workdir / "synth", sim)
    if timing["worst_slack_ns"] is None:
        unmeasured.append({"what": "fmax_mhz", "why": "no constrained timing path (no register "
                                                      "between ports?)"})
    elif not timing["met"]:
        unmeasured.append({"what": "timing", "why": f"timing not met at {clock_mhz:g} MHz: "
                           f"worst slack {timing['worst_slack_ns']:.3f} ns; power is given at the "
                           f"target clock as if it were met, Fmax is {timing['fmax_mhz']:.1f} MHz"})
    orr, why = _openroad(net, clock_mhz, workdir / "openroad")
    if why:
        unmeasured.append({"what": "placement", "why": why})
    lat = sim.latency_cycles if sim else latency_cycles
    lat_src = "gate-level simulation" if sim else ("hardware report" if latency_cycles else None)
    if lat is None:
        unmeasured.append({"what": "latency_us", "why": "no simulation and no cycle count given"})
    f_hz = clock_mhz * 1e6
    per_inf_cycles = (sim.window_cycles / sim.images) if sim else lat
    energy_nj = power["total_w"] * per_inf_cycles / f_hz * 1e9 if per_inf_cycles else None
    groups = {}
    for g in sorted(set(net.groups) | set(power["groups"])):
        a = net.groups.get(g, {"area_um2": 0.0, "seq_area_um2": 0.0, "cells": 0})
        p = power["groups"].get(g)
        groups[g] = {"layer": design.layers.get(g), **a, "area_mm2": a["area_um2"] * 1e-6,
                     **({k: p[k] for k in ("internal_w", "switching_w", "leakage_w", "total_w")}
                        if p else {"internal_w": None, "switching_w": None, "leakage_w": None,
                                   "total_w": None}),
                     "energy_nj": (p["total_w"] * per_inf_cycles / f_hz * 1e9
                                   if p and per_inf_cycles else None)}
    area = net.area_um2
    return {
        "kind": "asic", "target": lib.name, "library": lib.to_json(),
        "design": design.name, "top": design.top, "clock_mhz": clock_mhz,
        "totals": {
            "area_um2": area, "area_mm2": area * 1e-6, "cells": sum(g["cells"] for g in
                                                                     net.groups.values()),
            "flops": len(net.flops), "clock_gating": net.clock_gating(),
            "worst_slack_ns": timing["worst_slack_ns"],
            "timing_met": timing["met"], "fmax_mhz": timing["fmax_mhz"],
            "internal_w": power["internal_w"], "switching_w": power["switching_w"],
            "leakage_w": power["leakage_w"], "total_w": power["total_w"],
            "clock_net_w": power["clock_net_w"],
            "latency_cycles": lat, "latency_us": lat / clock_mhz if lat else None,
            "cycles_per_inference": per_inf_cycles,
            "energy_nj": energy_nj,
        },
        "at_fmax": _at_fmax(power, timing, clock_mhz, lat, per_inf_cycles),
        "timing": timing, "activity": power["activity"],
        "opensta_propagated": power.get("opensta_propagated"),
        "simulation": ({"images": sim.images, "source": stimulus.source,
                        "window_cycles": sim.window_cycles, "latency_cycles": sim.latency_cycles,
                        "seconds": sim.seconds, "outputs_match": sim.outputs_match,
                        "output_words": len(sim.outputs)}
                       if sim else None),
        "latency_source": lat_src,
        "groups": groups, "openroad": orr, "unmeasured": unmeasured,
        "method": {"synthesis": f"pyosys synth -noabc (hierarchical), dfflibmap, abc -D "
                                f"{_DELAY_MARGIN * 1e6 / clock_mhz:.0f} ps ({effort} script "
                                f"with buffering and sizing), {lib.name} liberty; flattened, "
                                f"fanout trees on nets over 16 loads; "
                                + (f"clock gating: Yosys clockgate with {lib.clock_gate.name} on "
                                   f"groups of 4 or more flip-flops sharing an enable"
                                   if clock_gating and lib.clock_gate else "no clock gating"),
                   "timing": "OpenSTA, ideal clock, no wire load or parasitics, I/O at 0 delay",
                   "power": power["activity"]["method"] + "; switching includes the ideal clock "
                            "net (clock pin capacitance, 2 transitions per cycle; gated clocks at "
                            "their simulated rate), no clock tree, no wire capacitance",
                   "energy": "total power x cycles per inference (images streamed back to back) "
                             "/ clock"},
        "steps": steps, "profile": net.profile, "tools": tool_versions(),
        "wall_time_s": round(time.perf_counter() - t_start, 2),
    }
