"""Synthesis benchmarks (``make bench``) and the tables of README/REPRODUCTION.md.

Cases (:data:`CASES`):

``cifarnet_split8_branch0``
    The anchor target of ANCHORS.md: one CifarNet-split8 branch (4-bit weights and activations,
    random weights, folded for the XC7Z020 budget) on ASAP7 at 800 MHz, against the LCP paper's
    ASIC (0.107 mm2, 16.1 mW at 800 MHz, commercial tools, place and route included); the same
    build on the XC7Z020 (220 DSP48 / 53,200 LUT / 140 BRAM36) and its ECP5 post-route Fmax.
``cifarnet_split8_branch0_ecp5_100``
    The same branch folded for the ECP5 LFE5U-85F budget, adder trees pipelined for 100 MHz on
    ecp5: nextpnr's post-route Fmax and the MULT18X18D/LUT4/EBR against the estimate.
``lenet5_split4_core``
    The demo model (LeNet-5 split4 w4a4: the trained run ``RUNS/lenet5_split4_w4a4/model.onnx``
    or the newest ``RUNS/lenet5_split4_w4a4-*/model.onnx``, else random weights) as one LCP
    core: the wall time of ``lcp synth`` next to its figures.

Every report lands in ``RUNS/synth/<case>/synth_<target>.json``; :func:`tables` renders all of
them as Markdown with the anchor ratios, so REPRODUCTION.md is regenerated from the JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lcp import compile_onnx
from lcp.benchmarks.hw import zoo_model
from lcp.hw.build import generate
from lcp.synth.flow import run_synth
from lcp.synth.report import load, markdown_table

__all__ = ["ANCHOR", "SynthCase", "CASES", "QUICK", "bench_case", "bench", "tables"]

#: The LCP paper's ASIC (ANCHORS.md) and the XC7Z020 budget of the FPGA anchor.
ANCHOR = {"area_mm2": 0.107, "power_mw": 16.1, "clock_mhz": 800.0, "dsp": 220, "lut": 53_200,
          "bram36": 140}


@dataclass(frozen=True)
class SynthCase:
    """A model, the part of it that is built, and the flows run on the build.

    ``flows`` entries: ``asic:<library>@<MHz>``, ``fpga:xc7z020``, ``fpga:ecp5[@<MHz>]``. The
    folding is the chooser's for the ``budget`` device (:data:`lcp.hw.base.DEVICES`, default
    the XC7Z020), or for ``target_cycles`` (latency) within it.
    ``dsp``: the FPGA flows' multiplier policy (``lcp synth --dsp``). ``clock_mhz``/``tech``:
    the build's adder trees pipelined for that clock on that target (:mod:`lcp.hw.delay`).
    """

    name: str
    arch: str
    split: int
    scope: str
    flows: tuple[str, ...]
    bits: int = 4
    images: int = 1
    target_cycles: int | None = None
    dsp: str = "auto"
    #: ``lcp compile --clock-mhz F --target T``: adder trees pipelined for this clock.
    clock_mhz: float | None = None
    tech: str | None = None
    #: ``lcp compile --budget``: the device the folding is chosen for.
    budget: str = "xc7z020"
    #: ASIC flows: gate-level simulation for the activity (False: ``lcp synth --no-sim``,
    #: vectorless power) and the ABC script (None: the benchmark's ``effort``).
    sim: bool = True
    effort: str | None = None
    #: ECP5 flows: nextpnr placement seeds (``lcp synth --pnr-seeds``); the best one's Fmax.
    pnr_seeds: tuple[int, ...] = (1,)


CASES = [
    SynthCase("cifarnet_split8_branch0", "cifarnet", 8, "branch",
              ("asic:asap7@800", "fpga:xc7z020", "fpga:ecp5")),
    # the same branch folded for the ASIC: 5,000 cycles (6.25 us at 800 MHz) instead of the
    # fastest folding that fits the FPGA; fewer lanes, less area and power, same work
    SynthCase("cifarnet_split8_branch0_t5000", "cifarnet", 8, "branch", ("asic:asap7@800",),
              target_cycles=5000, clock_mhz=800.0, tech="asap7", effort="fast"),
    # the XC7Z020 folding as an ASIC at 800 MHz: adder trees pipelined for it, DSP lanes as
    # plain multipliers, energy per inference from the gate-level activity
    SynthCase("cifarnet_split8_branch0_asap7_800", "cifarnet", 8, "branch", ("asic:asap7@800",),
              clock_mhz=800.0, tech="asap7", effort="fast"),
    # and for 10,000 cycles (12.5 us, still 16x faster than the paper's 0.2 ms FPGA branch);
    # this one fits an ECP5 with LUT multipliers, for an open post-route Fmax of the branch
    SynthCase("cifarnet_split8_branch0_t10000", "cifarnet", 8, "branch",
              ("asic:asap7@800", "fpga:ecp5"), target_cycles=10000, dsp="no"),
    SynthCase("lenet5_split4_core", "lenet5", 4, "core",
              ("asic:osu018@100", "asic:asap7@800", "fpga:xc7z020"), images=2),
    # the same core with its adder trees pipelined for 1 GHz on ASAP7 and 100 MHz on OSU018
    # (timing and the flow's wall time: vectorless power, fast ABC script)
    SynthCase("lenet5_split4_core_asap7_1000", "lenet5", 4, "core", ("asic:asap7@1000",),
              images=2, clock_mhz=1000.0, tech="asap7", sim=False, effort="fast"),
    SynthCase("lenet5_split4_core_osu018_100", "lenet5", 4, "core", ("asic:osu018@100",),
              images=2, clock_mhz=100.0, tech="osu018"),
    SynthCase("cifarnet_split8_branch0_asap7_1000", "cifarnet", 8, "branch",
              ("asic:asap7@1000",), clock_mhz=1000.0, tech="asap7"),
    # and for 100 MHz on the XC7Z020: LUT levels of the worst path and the Fmax they imply
    SynthCase("cifarnet_split8_branch0_xc7_100", "cifarnet", 8, "branch", ("fpga:xc7z020",),
              clock_mhz=100.0, tech="xc7"),
    SynthCase("lenet5_split4_core_xc7_100", "lenet5", 4, "core", ("fpga:xc7z020",), images=2,
              clock_mhz=100.0, tech="xc7"),
    # folded for the ECP5 LFE5U-85F, adder trees for 100 MHz on ecp5 (no DSP lanes there: the
    # MULT18X18D path misses 100 MHz, lcp.hw.delay.keeps_dsp): nextpnr's post-route Fmax
    SynthCase("cifarnet_split8_branch0_ecp5_100", "cifarnet", 8, "branch", ("fpga:ecp5@100",),
              clock_mhz=100.0, tech="ecp5", budget="lfe5u-85f"),
    # and folded for 10,000 cycles within the LFE5U-85F, built for 100 MHz on ECP5 (memory
    # reads registered, LUT multipliers, register slices on the links: lcp.hw.delay):
    # nextpnr's post-route Fmax, the best of sixteen placement seeds (each seed's in the row;
    # the seeds spread by 10-20 %: at 6336fa5 eight gave 98.2 MHz, the sixteenth 101.0)
    SynthCase("cifarnet_split8_branch0_ecp5_100_t10000", "cifarnet", 8, "branch",
              ("fpga:ecp5@100",), target_cycles=10000, clock_mhz=100.0, tech="ecp5",
              budget="lfe5u-85f", pnr_seeds=tuple(range(1, 17))),
]
#: ``--quick``: the demo core on OSU 0.18 um only.
QUICK = [SynthCase("lenet5_split4_core", "lenet5", 4, "core", ("asic:osu018@100",), images=2)]


def _model(case: SynthCase, runs: Path):
    name = f"{case.arch}_split{case.split}_w{case.bits}a{case.bits}"
    trained = runs / name / "model.onnx"
    if not trained.exists():         # training runs are also kept as NAME-<data>-<hash>/
        found = sorted(runs.glob(f"{name}-*/model.onnx"), key=lambda p: p.stat().st_mtime)
        trained = found[-1] if found else trained
    if trained.exists():
        return compile_onnx(trained), "trained"
    return zoo_model(case.arch, case.split, case.bits), "random"


def bench_case(case: SynthCase, runs: Path = Path("runs"), out=print,
               effort: str = "normal", cold: bool = True) -> list[dict]:
    """Build ``case`` (folded for its budget) and run its flows; one row per flow.

    ``cold``: the flows start from an empty synthesis cache (``RUNS/synth/<case>/unit-cache``,
    through ``$LCP_SYNTH_CACHE``), so the wall time is that of a first synthesis."""
    root = Path(runs) / "synth" / case.name
    model, weights = _model(case, Path(runs))
    cache = root / "unit-cache"
    old_cache = os.environ.get("LCP_SYNTH_CACHE")
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
        os.environ["LCP_SYNTH_CACHE"] = str(cache.resolve())
    try:
        return _bench_case(case, root, model, weights, out, effort)
    finally:
        if cold:
            if old_cache is None:
                os.environ.pop("LCP_SYNTH_CACHE", None)
            else:
                os.environ["LCP_SYNTH_CACHE"] = old_cache


def _bench_case(case, root, model, weights, out, effort) -> list[dict]:
    t0 = time.perf_counter()
    b = generate(model, root / "build", budget=case.budget, scope=case.scope,
                 target=case.target_cycles, clock_mhz=case.clock_mhz, tech=case.tech)
    build_s = time.perf_counter() - t0
    out(f"{case.name}: {weights} weights, build {build_s:.0f} s, model latency "
        f"{b.timing.latency} cycles, interval {b.timing.interval}")
    rows = []
    for flow in case.flows:
        kind, _, rest = flow.partition(":")
        target, _, mhz = rest.partition("@")
        t0 = time.perf_counter()
        load0 = os.getloadavg()[0]
        if kind == "asic":
            rep, j = run_synth(root / "build", asic=target, clock_mhz=float(mhz),
                               images=case.images, sim=case.sim, out=root,
                               effort=case.effort or effort)
        else:
            rep, j = run_synth(root / "build", fpga=target, out=root,
                               clock_mhz=float(mhz) if mhz else None, dsp=case.dsp,
                               pnr_seeds=case.pnr_seeds)
        wall = time.perf_counter() - t0
        row = _row(case, rep, weights, wall)
        row.update(report=str(j), load_avg_1min=[round(load0, 2), round(os.getloadavg()[0], 2)],
                   cpus=os.cpu_count(), latency_cycles_model=b.timing.latency,
                   pipelined=({"clock_mhz": case.clock_mhz, "target": case.tech}
                              if case.clock_mhz else None))
        rows.append(row)
        out(_fmt_row(row))
    (root / "bench.json").write_text(json.dumps(rows, indent=1))
    return rows


def _row(case: SynthCase, rep: dict, weights: str, wall: float) -> dict:
    t = rep["totals"]
    row = {"case": case.name, "target": rep["target"], "weights": weights,
           "wall_time_s": round(wall, 1), "synthesis_profile": rep.get("profile")}
    if rep["kind"] == "asic":
        mw = None if t["total_w"] is None else t["total_w"] * 1e3
        row.update(clock_mhz=rep["clock_mhz"], area_mm2=t["area_mm2"], fmax_mhz=t["fmax_mhz"],
                   power_mw=mw, latency_us=t["latency_us"], energy_nj=t["energy_nj"],
                   timing_met=t["timing_met"],
                   gate_level_exact=(rep.get("simulation") or {}).get("outputs_match"))
        if case.name.startswith("cifarnet") and rep["target"] == "asap7":
            row["area_vs_paper"] = t["area_mm2"] / ANCHOR["area_mm2"]
            row["power_vs_paper"] = None if mw is None else mw / ANCHOR["power_mw"]
    elif rep["target"] == "xc7z020":
        row.update(lut=t["lut"], ff=t["ff"], dsp=t["dsp"], bram36=t["bram36"], fits=t["fits"],
                   model_vs_synthesis=(rep.get("model_vs_synthesis") or {}).get("totals"))
    else:
        row.update(device=t["device"], fmax_mhz=t["fmax_mhz"], lut4=t["lut4_equivalent"],
                   ff=t["ff"], mult18=t["mult18"], ebr=t["ebr"],
                   seeds={str(r["seed"]): r["fmax_mhz"] for r in rep.get("seeds", [])},
                   model_vs_synthesis=(rep.get("model_vs_synthesis") or {}).get("totals"))
    return row


def _fmt_row(r: dict) -> str:
    if "area_mm2" in r:
        s = (f"  {r['target']:<7} {r['clock_mhz']:g} MHz: {r['area_mm2']:.4f} mm2, "
             f"Fmax {r['fmax_mhz'] or float('nan'):.0f} MHz, "
             f"{(r['power_mw'] if r['power_mw'] is not None else float('nan')):.2f} mW, "
             f"latency {r['latency_us'] or float('nan'):.2f} us, "
             f"{r['energy_nj'] or float('nan'):.1f} nJ/inference")
        if "area_vs_paper" in r:
            s += (f" (paper's ASIC: area x{r['area_vs_paper']:.2f}, power "
                  f"x{(r['power_vs_paper'] or float('nan')):.2f})")
    elif "lut" in r:
        s = (f"  xc7z020: {r['lut']:,} LUT, {r['ff']:,} FF, {r['dsp']} DSP48, {r['bram36']} BRAM36"
             f", fits {r['fits']}")
        mv = r.get("model_vs_synthesis")
        if mv:
            s += " (estimate: " + ", ".join(
                f"{k} {v['estimate']}" + ("" if v["error"] is None else f" {v['error']:+.0%}")
                for k, v in mv.items()) + ")"
    else:
        s = f"  ecp5:    {r['device']}, post-route Fmax {r['fmax_mhz'] or float('nan'):.1f} MHz"
        if len(r.get("seeds") or {}) > 1:
            s += " (best seed; seeds " + ", ".join(
                f"{k}: {'n/a' if v is None else f'{v:.1f}'}" for k, v in r["seeds"].items()) + ")"
        if r.get("lut4") is not None:
            s += (f", {r['lut4']:,} LUT4, {r['ff']:,} FF, {r['mult18']} MULT18X18D, "
                  f"{r['ebr']} EBR")
    return s + f"  [{r['wall_time_s']:.0f} s]"


def bench(runs: str | Path = Path("runs"), out=print, quick: bool = False,
          cases: list[SynthCase] | None = None, effort: str = "normal",
          results: str | Path | None = None) -> list[dict]:
    """Run the synthesis benchmark cases (:data:`CASES`, or :data:`QUICK`); rows of figures,
    also saved to ``RESULTS/synth_bench.json`` (``results``) with the machine's load."""
    rows = []
    for c in cases or (QUICK if quick else CASES):
        rows += bench_case(c, Path(runs), out, effort)
    if results is not None:
        save_rows(rows, Path(results) / RESULTS_FILE)
    return rows


#: The benchmark's rows under ``RESULTS/``.
RESULTS_FILE = "synth_bench.json"


def save_rows(rows: list[dict], path: Path) -> Path:
    """Rows (one per case and flow) and the machine they ran on, as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    return path


def tables(runs: str | Path = Path("runs")) -> str:
    """Markdown tables of every synthesis report under ``RUNS/synth/`` (for README and
    REPRODUCTION.md), with the anchor comparison for the CifarNet-split8 branch."""
    paths = sorted(Path(runs).glob("synth/*/synth_*.json"))
    if not paths:
        return "No synthesis reports yet: run `make bench` (or `lcp synth BUILD ...`).\n"
    reports = [load(p) for p in paths]
    for r, p in zip(reports, paths):
        r["design"] = p.parent.name
    text = markdown_table(reports)
    anchor = [r for r in reports if r["design"].startswith("cifarnet") and r["kind"] == "asic"
              and r["target"] == "asap7"]
    if anchor:
        text += ("\nAgainst the LCP paper's ASIC (ASAP7, 800 MHz, commercial synthesis and place "
                 "and route, die 0.107 mm2, 16.1 mW; it reports neither latency nor energy). Ours "
                 "is cell area without placement, wires or a clock tree; the paper's is a die.\n\n")
        for r in anchor:
            t = r["totals"]
            mw = None if t["total_w"] is None else t["total_w"] * 1e3
            text += (
                f"- `{r['design']}`: cell area {t['area_mm2']:.4f} mm2 "
                f"({t['area_mm2'] / ANCHOR['area_mm2']:.2f}x), power "
                + (f"{mw:.2f} mW ({mw / ANCHOR['power_mw']:.2f}x, "
                   f"{'within' if mw <= ANCHOR['power_mw'] else 'above'} the paper's)"
                   if mw is not None else "n/a")
                + f" at {r['clock_mhz']:g} MHz, Fmax {t['fmax_mhz']:.0f} MHz; latency "
                f"{t['latency_us']:.2f} us, {t['energy_nj']:.1f} nJ per inference\n")
    return text


def markdown(results_dir, runs=Path("runs")) -> str:
    """REPRODUCTION.md section (:mod:`lcp.benchmarks.reproduce`): :func:`tables` of
    ``RUNS/synth/``."""
    return ("Produced by `lcp bench --only synth` (`lcp.benchmarks.synth`): Yosys (pyosys) and "
            "OpenSTA on this machine, reports in `RUNS/synth/<case>/`.\n\n" + tables(runs))
