"""One synthesis flow on a build folder: the function behind ``lcp synth`` and ``lcp explore``.

:func:`run_synth` picks the flow (Yosys ``synth_xilinx`` or ``synth_ecp5`` + nextpnr for an FPGA,
Yosys + OpenSTA with a cell library for an ASIC), attaches the generator's estimates to the
measured figures and saves the report (``OUT/synth_<target>.json``, ``.txt`` and a plot).
"""

from __future__ import annotations

from pathlib import Path

from . import report as rp
from .asic import asic_flow
from .design import load_build
from .fpga import ecp5_flow, xilinx_flow
from .libs import LIBRARIES, LibraryError
from .stimulus import build_stimulus
from .tools import SynthError

__all__ = ["run_synth"]


def run_synth(build: Path, *, fpga: str | None = None, asic: str | None = None,
              clock_mhz: float | None = None, pdk_dir: Path | None = None, images: int = 2,
              sim: bool = True, out: Path | None = None, top: str | None = None,
              plots: bool = True, seed: int = 0, effort: str = "normal",
              dsp: str = "auto", clock_gating: bool = True) -> tuple[dict, Path]:
    """Run one flow on a build folder (or a Verilog file) and save its report.

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
        rep = xilinx_flow(design, workdir=work, dsp=dsp)
        est = (design.hw_report or {}).get("resources_per_layer") or {}
        for g, v in rep["groups"].items():
            if g in est:
                v["estimate"] = est[g]
        if design.hw_report and "resources_estimate" in design.hw_report:
            rep["estimate"] = design.hw_report["resources_estimate"]
    elif fpga == "ecp5":
        rep = ecp5_flow(design, workdir=work, freq_mhz=clock_mhz or 100.0, dsp=dsp)
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
                        clock_gating=clock_gating)
        if lat is not None:
            rep["totals"]["latency_cycles_model"] = lat
    rep = rp.finish(rep, build=str(build))
    j, _ = rp.save(rep, out)
    if plots and rep.get("groups"):
        rp.plot_breakdown(rep, out / f"synth_{rep['target']}.png")
    return rep, j
