"""One synthesis flow on a build folder: the function behind ``lcp synth`` and ``lcp explore``.

:func:`run_synth` picks the flow (Yosys ``synth_xilinx`` or ``synth_ecp5`` + nextpnr for an FPGA,
Yosys + OpenSTA with a cell library for an ASIC), attaches the generator's estimates to the
measured figures and saves the report (``OUT/synth_<target>.json``, ``.txt`` and a plot).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lcp.hw.base import Resources, ecp5_units

from . import report as rp
from .asic import asic_flow
from .design import load_build
from .fpga import ecp5_flow, xilinx_flow
from .libs import LIBRARIES, LibraryError
from .stimulus import build_stimulus
from .tools import SynthError

__all__ = ["run_synth", "model_vs_synthesis"]

#: Resources compared between the generator's estimate and Yosys' XC7Z020 mapping.
_COMPARED = ("lut", "ff", "dsp", "bram36")


def _err(est, got):
    if est is None or got is None:
        return None
    return None if got == 0 and est == 0 else (round((est - got) / got, 4) if got else None)


def model_vs_synthesis(rep: dict) -> dict:
    """The generator's resource estimate against Yosys' counts, per engine and in total:
    ``{"totals": {k: {"estimate", "yosys", "error"}}, "groups": {...}}``; ``error`` is
    ``(estimate - yosys) / yosys`` (``None`` when Yosys counts 0 and the estimate does not)."""
    def cmp(est: dict, got: dict) -> dict:
        return {k: {"estimate": est.get(k), "yosys": got.get(k),
                    "error": _err(est.get(k), got.get(k))} for k in _COMPARED}
    out = {"totals": cmp(rep.get("estimate") or {}, rep["totals"]), "groups": {}}
    for g, v in rep["groups"].items():
        if "estimate" in v:
            out["groups"][g] = cmp(v["estimate"], v)
    return out


def _ecp5_estimate(est: dict) -> dict:
    """The generator's estimate (``report.json``'s ``resources_estimate``) in ECP5 units
    (:func:`lcp.hw.base.ecp5_units`)."""
    r = Resources(lut=est["lut"], ff=est["ff"], dsp=est["dsp"], bram=est["bram36"])
    return {k: round(v, 1) for k, v in ecp5_units(r).items()}


def _ecp5_vs(est: dict, totals: dict) -> dict:
    """The ECP5 estimate against ``synth_ecp5``'s cells: LUT4 with two per CCU2C
    (``lut4_equivalent``), FF, MULT18X18D, EBR."""
    got = {"lut4": totals["lut4_equivalent"], "ff": totals["ff"], "mult18": totals["mult18"],
           "ebr": totals["ebr"]}
    return {k: {"estimate": est[k], "yosys": got[k], "error": _err(est[k], got[k])}
            for k in got}


def run_synth(build: Path, *, fpga: str | None = None, asic: str | None = None,
              clock_mhz: float | None = None, pdk_dir: Path | None = None, images: int = 2,
              sim: bool = True, out: Path | None = None, top: str | None = None,
              plots: bool = True, seed: int = 0, effort: str = "normal",
              dsp: str = "auto", clock_gating: bool = True, jobs: int | None = None,
              pnr_seeds: Sequence[int] = (1,), log=None) -> tuple[dict, Path]:
    """Run one flow on a build folder (or a Verilog file) and save its report.

    The XC7Z020 and ASIC flows synthesize each engine as its own cached job
    (:mod:`lcp.synth.split`), ``jobs`` at a time (default: the usable CPUs); ``log`` gets one
    progress line per engine. The ECP5 flow places and routes once per ``pnr_seeds`` entry
    (``jobs`` at a time) and reports the best seed's Fmax with every seed's.

    Returns ``(report, json_path)``. The report goes to ``OUT/synth_<target>.json`` and
    ``.txt`` (default ``OUT = BUILD/synth``), with ``synth_<target>.png`` (area and power or
    resources per layer) unless ``plots`` is false.

    Raises
    ------
    SynthError, LibraryError
        Bad input, a missing tool or library, a failed tool (one-line causes).
    """
    if (fpga is None) == (asic is None):
        raise SynthError("give exactly one of --fpga {xc7z020,ecp5} or --asic {osu018,asap7}")
    if images < 1:
        raise SynthError("--images must be at least 1")
    design = load_build(build, top)
    out = Path(out) if out is not None else (design.build_dir or Path(build).parent) / "synth"
    work = out / "work" / (fpga or asic)
    if fpga == "xc7z020":
        rep = xilinx_flow(design, workdir=work, dsp=dsp, jobs=jobs, log=log)
        est = (design.hw_report or {}).get("resources_per_layer") or {}
        for g, v in rep["groups"].items():
            if g in est:
                v["estimate"] = est[g]
        if design.hw_report and "resources_estimate" in design.hw_report:
            rep["estimate"] = design.hw_report["resources_estimate"]
            rep["model_vs_synthesis"] = model_vs_synthesis(rep)
    elif fpga == "ecp5":
        rep = ecp5_flow(design, workdir=work, freq_mhz=clock_mhz or 100.0, dsp=dsp,
                        seeds=pnr_seeds, jobs=jobs)
        if design.hw_report and "resources_estimate" in design.hw_report:
            rep["estimate"] = _ecp5_estimate(design.hw_report["resources_estimate"])
            rep["model_vs_synthesis"] = {"totals": _ecp5_vs(rep["estimate"], rep["totals"])}
    elif fpga is not None:
        raise SynthError(f"unknown FPGA target {fpga!r} (known: xc7z020, ecp5)")
    else:
        if asic not in LIBRARIES:
            raise LibraryError(f"unknown cell library {asic!r} (known: {', '.join(LIBRARIES)})")
        stim = None
        lat = None
        if design.hw_report:
            lat = design.hw_report.get("model_cycles", {}).get("latency_cycles")
        if sim:
            stim = build_stimulus(design, images=images, seed=seed) if design.build_dir else None
        rep = asic_flow(design, asic, clock_mhz=clock_mhz or 100.0, pdk_dir=pdk_dir,
                        workdir=work, stimulus=stim, latency_cycles=lat, effort=effort,
                        clock_gating=clock_gating, jobs=jobs, log=log)
        if lat is not None:
            rep["totals"]["latency_cycles_model"] = lat
    rep = rp.finish(rep, build=str(build))
    j, _ = rp.save(rep, out)
    if plots and rep.get("groups"):
        rp.plot_breakdown(rep, out / f"synth_{rep['target']}.png")
    return rep, j
