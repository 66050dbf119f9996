"""pyosys jobs, run in a child process by :func:`lcp.synth.tools.run_yosys_job`.

Usage: ``python -m lcp.synth._ysjob JOB.json``; the job file names a function of this module
(``kind``), its ``params`` and the ``result`` path where the function's JSON answer goes. Yosys'
own log goes to stdout (the caller sends it to a file).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from pyosys import libyosys as ys

from ._ysfanout import ECP5_FF, ECP5_REPLICABLE, replicate_drivers
from .harness import HARNESS_TOP, harness_verilog
from .paths import cell_delays, worst_path

_D = None

#: ABC mapping scripts by effort (Yosys "+" syntax: ";" between commands, "," for spaces).
#: After mapping, buffering and gate sizing against the clock period: without them a
#: minimum-size gate drives nets of thousands of loads (ready/stall), 10x over the period.
_ABC_SCRIPTS = {
    "fast": "+strash;dc2;&get,-n;&nf,{D};&put;buffer,-p;upsize,{D};dnsize,{D}",
    "normal": "+strash;dc2;&get,-n;&dch,-f;&nf,{D};&put;buffer,-p;upsize,{D};dnsize,{D}",
}


def _run(cmd: str) -> None:
    ys.run_pass(cmd, _D)


def _read(files: list[str], top: str, lib_files: list[str] = ()) -> None:
    for f in lib_files:              # black boxes: modules synthesized by other jobs
        _run(f"read_verilog -lib {_q(f)}")
    for f in files:
        _run(f"read_verilog -defer {_q(f)}")
    _run(f"hierarchy -check -top {_q(top)}")


def _q(s: str) -> str:
    return '"' + s.replace('"', '\\"') + '"' if any(c in s for c in ' \\"') else s


def _read_units(p: dict) -> None:
    """Read the job's black-box libraries (``lib_files``) and its units' Verilog, deferred."""
    for f in p.get("lib_files", ()):
        _run(f"read_verilog -lib {_q(f)}")
    for f in p["files"]:
        _run(f"read_verilog -defer {_q(f)}")


#: ``synth_xilinx`` script labels, run one segment at a time for a per-step profile.
_XILINX_LABELS = ("begin", "prepare", "map_dsp", "coarse", "map_memory", "map_ffram", "fine",
                  "map_cells", "map_ffs", "map_luts", "finalize", "check")


def xilinx(p: dict) -> dict:
    """Hierarchical ``synth_xilinx`` (no I/O buffers: the engine sits inside the PL).

    Without ``top`` every module read is synthesized (several independent units in one job:
    the cell libraries are loaded once). ``lut_map``: ``abc`` (default, :func:`_map_luts_abc`)
    or ``abc9`` (``synth_xilinx``'s own ``map_luts``). Returns the stat path and ``profile``:
    seconds per ``synth_xilinx`` script label."""
    t = time.perf_counter()
    _read_units(p)
    # synth_xilinx's own "begin" step, without -auto-top when no top is given
    _run("read_verilog -lib -specify +/xilinx/cells_sim.v")
    _run("read_verilog -lib +/xilinx/cells_xtra.v")
    _run("hierarchy -check" + (f" -top {_q(p['top'])}" if p.get("top") else ""))
    # Yosys 0.70's ABC9 reintegration asserts (count_id(wire->name) == 0) on some Amaranth
    # modules of an LCP core; private wire names avoid the clash (ports keep their names)
    _run("rename -hide w:*")
    prof = {"read": round(time.perf_counter() - t, 2)}
    nodsp = "" if p.get("dsp", True) else " -nodsp"
    top = f" -top {_q(p['top'])}" if p.get("top") else ""
    labels = _XILINX_LABELS[1:] + ("",)
    for a, b in zip(labels, labels[1:]):
        t = time.perf_counter()
        if a == "map_luts" and p.get("lut_map", "abc") == "abc":
            _map_luts_abc()
        else:
            _run(f"synth_xilinx -family {p.get('family', 'xc7')}{top} -noiopad "
                 f"-noclkbuf{nodsp} -run {a}:{b}")
        prof[a] = round(time.perf_counter() - t, 2)
    _run(f"tee -q -o {_q(p['stat'])} stat -json")
    t = time.perf_counter()
    _worst_paths(p["stat"])
    prof["paths"] = round(time.perf_counter() - t, 2)
    return {"stat": p["stat"], "profile": prof}


#: ``synth_xilinx``'s LUT costs (1-3 inputs 2 units, 4-6 inputs 5, MUXF7/F8 pairs 10/20).
_XILINX_LUTS = "2:2,3,6:5,10,20"


def _map_luts_abc() -> None:
    """``synth_xilinx``'s ``map_luts`` step with Yosys' classic ``abc -luts`` in place of
    ``abc9``: the same LUT costs and the same steps around it. ``abc9`` spends most of the
    flow's time outside ABC (its per-module box and timing bookkeeping, 4-6x the mapping
    itself on LCP engines); the classic mapper maps each module's logic between flip-flops,
    carry chains and DSPs as black boxes, depth first (lcp.synth.paths measures the result)."""
    _run("opt_expr -mux_undef -noclkinv")
    _run(f"abc -luts {_XILINX_LUTS}")
    _run("clean")
    _run("xilinx_srl -fixed -minlen 3")
    _run("techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6")
    _run("xilinx_dffopt")
    _run("opt_lut_ins -tech xilinx")


def _worst_paths(stat_file: str) -> None:
    """Add each module's worst register-to-register path (:mod:`.paths`, the module
    flattened, its Yosys-given cell delays) to its entry of the stat JSON as ``path``."""
    _run("flatten")
    net = Path(stat_file).with_suffix(".netlist.json")
    _run(f"write_json {_q(str(net))}")
    delays = cell_delays(str(Path(ys.__file__).parent / "share" / "xilinx" / "cells_sim.v"))
    mods = json.loads(net.read_text())["modules"]
    net.unlink()
    stat = json.loads(Path(stat_file).read_text())
    for name, v in stat["modules"].items():
        m = mods.get(name.lstrip("\\"))
        if m is not None:
            v["path"] = worst_path(m, delays)
    Path(stat_file).write_text(json.dumps(stat))


def ecp5(p: dict) -> dict:
    """Flat ``synth_ecp5`` to a nextpnr JSON netlist; with ``harness`` (a Verilog path to
    write), the top inside :func:`lcp.synth.harness.harness_verilog`; with ``max_fanout``, the
    drivers of larger nets replicated (:func:`._ysfanout.replicate_drivers`)."""
    _read(p["files"], p["top"])
    top, out = p["top"], {"json": p["json"], "stat": p["stat"]}
    if p.get("harness"):
        m = _D.top_module()
        ports = [(pid.str().lstrip("\\"), m.wire(pid).width,
                  "in" if m.wire(pid).port_input else
                  "out" if m.wire(pid).port_output else "inout") for pid in m.ports]
        h = harness_verilog(top, ports, p.get("clock", "clk"), reset_buffer="DCCA")
        Path(p["harness"]).write_text(h.verilog)
        _run(f"read_verilog {_q(p['harness'])}")
        top = HARNESS_TOP
        _run(f"hierarchy -top {top}")       # its global buffer: synth_ecp5 reads the cells
        out["harness"] = {"ff": h.ff, "in_bits": h.in_bits, "out_bits": h.out_bits}
    _run("rename -hide w:*")
    nodsp = "" if p.get("dsp", True) else " -nodsp"
    _run(f"synth_ecp5 -top {_q(top)}{nodsp}")
    if p.get("max_fanout"):
        out["replicated"] = replicate_drivers(_D.top_module(), p["max_fanout"],
                                              ECP5_REPLICABLE, cone=ECP5_FF)
    _run(f"write_json {_q(p['json'])}")
    _run(f"tee -q -o {_q(p['stat'])} stat -json")
    return out


def cell_models(p: dict) -> dict:
    """Verilog models of every liberty cell, from the cells' ``function``/``ff`` groups."""
    for lib in p["liberty"]:
        _run(f"read_liberty -ignore_miss_func {_q(lib)}")
    _run(f"write_verilog -noattr {_q(p['out'])}")
    return {"out": p["out"]}


def asic_map(p: dict) -> dict:
    """Map every module read (several independent units, no top) to the liberty library:
    ``synth -noabc``, clock gating, ``dfflibmap``, ``abc`` at the delay target, tie cells;
    the mapped design goes to ``rtlil`` (read back by :func:`asic`)."""
    t = time.perf_counter()
    _read_units(p)
    _run("hierarchy -check")
    _run("synth -noabc -run coarse:")
    prof = {"synth": round(time.perf_counter() - t, 2)}
    t = time.perf_counter()
    _map(p)
    prof["map"] = round(time.perf_counter() - t, 2)
    _run(f"write_rtlil {_q(p['rtlil'])}")
    return {"rtlil": p["rtlil"], "profile": prof}


def _map(p: dict) -> None:
    libs = p["liberty"]
    lib_args = " ".join(f"-liberty {_q(x)}" for x in libs)
    if p.get("clock_gate"):
        _clock_gate(p["clock_gate"], int(p.get("clock_gate_min", 4)))
    dff = " ".join(f"-dont_use {x}" for x in p.get("dff_dont_use", []))
    _run(f"dfflibmap {dff} " + " ".join(f"-liberty {_q(x)}" for x in p["seq_liberty"]))
    dont = " ".join(f"-dont_use {x}" for x in p.get("dont_use", []))
    # Yosys' default liberty script adds &fraig -x, scorr and retiming, which ran for tens of
    # minutes on one CifarNet MVU for a few % of area; &dch -f keeps most of the gain
    script = _ABC_SCRIPTS[p.get("effort", "normal")]
    _run(f"abc -D {p['delay_target_ps']:.0f} -script {script} {lib_args} {dont}")
    _run("opt_clean -purge")
    if p.get("tie"):
        hi, hp, lo, lp = p["tie"]
        _run(f"hilomap -singleton -hicell {hi} {hp} -locell {lo} {lp}")


def asic(p: dict) -> dict:
    """Hierarchical synthesis to a liberty library, area per module, then a flat netlist.

    With ``rtlil`` (files of :func:`asic_map`): the modules are already mapped; they are read
    and linked under ``top`` instead of synthesized.

    Writes ``netlist`` (flat, cells named ``g<N>``, internal nets ``n<N>``, ports kept),
    ``power_netlist`` (the same with each flip-flop's data input cut to its own input port
    ``lcp_d_<cell>``), ``cells`` (JSON: cell -> [type, module]) and ``stat`` (Yosys JSON).
    """
    libs = p["liberty"]
    lib_args = " ".join(f"-liberty {_q(x)}" for x in libs)
    if p.get("rtlil"):
        for f in p["rtlil"]:
            _run(f"read_rtlil {_q(f)}")
        _run(f"hierarchy -top {_q(p['top'])}")     # no -check: library cells have no module
    else:
        _read(p["files"], p["top"])
        _run(f"synth -top {_q(p['top'])} -noabc")
        _map(p)
    _run(f"tee -q -o {_q(p['stat'])} stat -json {lib_args}")
    known = set(p["cells_known"])
    bad: dict[str, int] = {}
    for mod in _D.modules_.values():
        mname = mod.name.str().lstrip("\\")
        submods = {m.name.str() for m in _D.modules_.values()}
        for cell in mod.cells_.values():
            t = cell.type.str()
            if t in submods:
                continue
            if t.lstrip("\\") not in known:
                bad[t] = bad.get(t, 0) + 1
            cell.set_string_attribute(ys.IdString("\\lcp_module"), mname)
    if bad:
        raise RuntimeError("cells left unmapped to the library: "
                           + ", ".join(f"{k} x{v}" for k, v in sorted(bad.items())))
    _run("flatten")
    _run("opt_clean -purge")
    _run("splitnets")
    hi = hp = lo = lp = None
    if p.get("tie"):
        hi, hp, lo, lp = p["tie"]
    _run("opt_clean -purge")
    if p.get("tie"):
        _run(f"hilomap -singleton -hicell {hi} {hp} -locell {lo} {lp}")
    nbuf = _buffer_fanout(_D.top_module(), p["cell_inputs"], p["fanout_buffer"],
                          p.get("max_fanout", 16), skip={p.get("clock", "clk")},
                          ties={p["tie"][0], p["tie"][2]} if p.get("tie") else set())
    print(f"LCP: {nbuf} fanout buffers inserted", flush=True)
    buf, bin_, bout = p["buffer"]
    _run(f"insbuf -buf {buf} {bin_} {bout}")     # OpenSTA reads no wire-to-wire assigns
    _run("opt_clean -purge")
    _run("rename -hide w:* c:*")
    _run("rename -enumerate -pattern n% w:*")
    _run("rename -enumerate -pattern g% c:*")
    top = _D.top_module()
    cells = {}
    flops = []
    seq = p["ff_pins"]       # cell type -> [data pin, output pin, output inverted]
    for cell in top.cells_.values():
        name = cell.name.str().lstrip("\\")
        t = cell.type.str().lstrip("\\")
        mod = cell.get_string_attribute(ys.IdString("\\lcp_module"))
        conns = {k.str().lstrip("\\"): v for k, v in cell.connections_.items()}
        cells[name] = [t, mod, {k: _signame(v) for k, v in conns.items()}]
        if t in seq:
            dpin, opin, inv = seq[t]
            flops.append({"cell": name, "type": t, "d_pin": dpin, "d": _signame(conns.get(dpin)),
                          "out": _signame(conns.get(opin)) if opin in conns else None,
                          "out_pin": opin, "inverted": inv})
    _write_netlist(p["netlist"], p["sim_netlist"])
    # The power netlist: every flip-flop reads its data input from its own port, so that the
    # simulated activity of the flip-flop can be given to OpenSTA (only ports keep it).
    cut = []
    for f in flops:
        cell = top.cell(ys.IdString("\\" + f["cell"]))
        w = top.addWire(ys.IdString("\\lcp_d_" + f["cell"]), 1)
        w.port_input = True
        cell.setPort(ys.IdString("\\" + seq[f["type"]][0]), ys.SigSpec(w))
        cut.append(f["cell"])
    top.fixup_ports()
    _write_netlist(p["power_netlist"])
    Path(p["cells"]).write_text(json.dumps({"cells": cells, "flops": flops}))
    return {"cells": len(cells), "flops": len(flops), "netlist": p["netlist"],
            "power_netlist": p["power_netlist"], "stat": p["stat"]}


def _clock_gate(icg: list, min_size: int) -> None:
    """Integrated clock gates for every group of at least ``min_size`` rising-edge flip-flops
    that share a clock and a load enable; the enable muxes of those flip-flops go away."""
    cell, en, clk, gclk, test = icg
    # Amaranth's synchronous reset wins over the enable ($_SDFFE_): make the enable win by
    # enabling on (enable | reset) ($_SDFFCE_), then turn the reset into data logic ($_DFFE_);
    # the library has no reset flip-flop to map it to anyway
    _run("dfflegalize -cell $_SDFFCE_PP?P_ 01 -cell $_DFFE_PP_ 01 -cell $_SDFF_PP?_ 01 "
         "-cell $_DFF_P_ 01 -cell $_DFFE_NP_ 01 -cell $_DFF_N_ 01")
    _run("dfflegalize -cell $_DFFE_PP_ 01 -cell $_DFF_P_ 01 -cell $_DFFE_NP_ 01 -cell $_DFF_N_ 01")
    _run("opt_merge")                # one enable net per group, not one OR gate per flip-flop
    _run("opt_clean")                # one name per net (the groups below are keyed by name)
    # groups too small to pay for a gate keep their multiplexer (this Yosys' clockgate
    # -min_net_size does not count group members)
    small = ys.IdString("\\lcp_no_gate")
    any_small = False
    for mod in _D.modules_.values():
        groups: dict[tuple, list] = {}
        for c in mod.cells_.values():
            if c.type.str() == "$_DFFE_PP_":
                key = (_signame(c.getPort(ys.IdString("\\C"))),
                       _signame(c.getPort(ys.IdString("\\E"))))
                groups.setdefault(key, []).append(c)
        for (c_name, e_name), cells in groups.items():
            if len(cells) < min_size or c_name is None or e_name is None or "'" in e_name:
                for c in cells:
                    c.set_bool_attribute(small, True)
                any_small = True
    if any_small:
        _run("dfflegalize -cell $_DFF_P_ 01 a:lcp_no_gate")
    tie = f" -tie_lo {test}" if test else ""
    _run(f"clockgate -pos {cell} {en}:{clk}:{gclk}{tie}")


def _buffer_fanout(top, cell_inputs: dict, buffer: list, max_fanout: int, skip: set,
                   ties: set) -> int:
    """Buffer trees on nets with more than ``max_fanout`` cell inputs (not the clock, not tie
    cells): ABC sizes and buffers inside each module, but not the nets that leave a flip-flop
    or cross a module boundary, which reach thousands of loads (stall, enables, broadcast
    operands). Each buffer joins the module of the net's driver. Returns the buffers added."""
    btype, bin_, bout = buffer
    loads: dict[tuple, list] = {}
    driver_mod: dict[tuple, str] = {}
    for cell in list(top.cells_.values()):
        t = cell.type.str().lstrip("\\")
        ins = cell_inputs.get(t)
        if ins is None:
            continue
        mod = cell.get_string_attribute(ys.IdString("\\lcp_module"))
        for port, sig in cell.connections_.items():
            if sig.size() != 1 or sig.is_fully_const():
                continue
            bit = sig.as_bit()
            key = (bit.wire.name.str(), bit.offset)
            if port.str().lstrip("\\") in ins:
                loads.setdefault(key, []).append((cell, port))
            else:
                driver_mod[key] = None if t in ties else mod     # None: a constant
    added = 0
    for key, ls in loads.items():
        if len(ls) <= max_fanout or key[0].lstrip("\\") in skip or driver_mod.get(key, "") is None:
            continue
        mod = driver_mod.get(key, "")
        level = ls
        while len(level) > max_fanout:
            nxt = []
            for k in range(0, len(level), max_fanout):
                group = level[k:k + max_fanout]
                added += 1
                w = top.addWire(ys.IdString(f"$lcp_fo{added}"), 1)
                b = top.addCell(ys.IdString(f"$lcp_fob{added}"), ys.IdString("\\" + btype))
                b.setPort(ys.IdString("\\" + bout), ys.SigSpec(w))
                b.set_string_attribute(ys.IdString("\\lcp_module"), mod or "")
                for cell, port in group:
                    cell.setPort(port, ys.SigSpec(w))
                nxt.append((b, ys.IdString("\\" + bin_)))
            level = nxt
        wire = top.wire(ys.IdString(key[0]))
        src = ys.SigSpec(wire, key[1], 1)
        for cell, port in level:
            cell.setPort(port, src)
    return added


def _write_netlist(path: str, sim_path: str | None = None) -> None:
    """Verilog for OpenSTA: constant assignments to output ports (padding bits) are dropped,
    since this OpenSTA reads no ``assign`` and tie cells exist only in some libraries. The
    unchanged text (same names) goes to ``sim_path`` for simulation."""
    _run(f"write_verilog -noattr -noexpr -nohex -nodec {_q(path)}")
    if sim_path:
        Path(sim_path).write_text(Path(path).read_text())
    text = Path(path).read_text().splitlines(keepends=True)
    keep = [ln for ln in text if not re.match(r"\s*assign\s+.*=\s*[\d']+'b[01xz]+\s*;", ln)
            and not re.match(r"\s*assign\s+.*=\s*\{\s*([\d]+'b[01xz]+\s*,?\s*)+\}\s*;", ln)]
    rest = [ln for ln in keep if re.match(r"\s*assign\s", ln)]
    if rest:
        raise RuntimeError(f"netlist keeps {len(rest)} assign statement(s), e.g. {rest[0].strip()}")
    Path(path).write_text("".join(keep))


def _signame(sig) -> str | None:
    """``name`` or ``name[i]`` of a one-bit connection; ``1'b0``/``1'b1`` for constants."""
    if sig is None or sig.size() != 1:
        return None
    if sig.is_fully_const():
        return "1'b1" if sig.as_bool() else "1'b0"
    bit = sig.as_bit()
    w = bit.wire
    name = w.name.str().lstrip("\\")
    return name if w.width == 1 else f"{name}[{bit.offset + w.start_offset}]"


def main(argv: list[str]) -> int:
    global _D
    job = json.loads(Path(argv[1]).read_text())
    _D = ys.Design()
    fn = {"xilinx": xilinx, "ecp5": ecp5, "asic": asic, "asic_map": asic_map,
          "cell_models": cell_models}[job["kind"]]
    try:
        out = fn(job["params"])
    except Exception as e:   # Yosys errors arrive as Python exceptions
        print(f"ERROR: {e}", flush=True)
        return 1
    Path(job["result"]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
