"""``lcp`` commands of the synthesis flows: ``synth`` and ``explore``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register", "run_synth"]


def _usage(e: Exception):
    from lcp.sw.cli import UsageError
    lines = str(e).splitlines()
    return UsageError(lines[0] if lines else type(e).__name__)


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
    from . import report as rp
    from .design import load_build
    from .libs import LibraryError
    from .tools import SynthError

    if (fpga is None) == (asic is None):
        raise SynthError("give exactly one of --fpga {xc7z020,ecp5} or --asic {osu018,asap7}")
    if images < 1:
        raise SynthError("--images must be at least 1")
    design = load_build(build, top)
    out = Path(out) if out is not None else (design.build_dir or Path(build).parent) / "synth"
    work = out / "work" / (fpga or asic)
    if fpga == "xc7z020":
        from .fpga import xilinx_flow
        rep = xilinx_flow(design, workdir=work, dsp=dsp)
        est = (design.hw_report or {}).get("resources_per_layer") or {}
        for g, v in rep["groups"].items():
            if g in est:
                v["estimate"] = est[g]
        if design.hw_report and "resources_estimate" in design.hw_report:
            rep["estimate"] = design.hw_report["resources_estimate"]
    elif fpga == "ecp5":
        from .fpga import ecp5_flow
        rep = ecp5_flow(design, workdir=work, freq_mhz=clock_mhz or 100.0, dsp=dsp)
    elif fpga is not None:
        raise SynthError(f"unknown FPGA target {fpga!r} (known: xc7z020, ecp5)")
    else:
        from .asic import asic_flow
        from .libs import LIBRARIES
        if asic not in LIBRARIES:
            raise LibraryError(f"unknown cell library {asic!r} (known: {', '.join(LIBRARIES)})")
        stim = None
        lat = None
        if design.hw_report:
            lat = design.hw_report.get("model_cycles", {}).get("latency_cycles")
        if sim:
            from .stimulus import build_stimulus
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


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth_cmd(
            build: Path = typer.Argument(..., help="build folder from `lcp compile` (or a .v)"),
            fpga: Optional[str] = typer.Option(None, "--fpga", help="xc7z020 (Yosys resources) "
                                                                    "or ecp5 (nextpnr Fmax)"),
            asic: Optional[str] = typer.Option(None, "--asic", help="osu018 or asap7"),
            clock_mhz: Optional[float] = typer.Option(
                None, "--clock-mhz", help="target clock (ASIC and ECP5; default 100)"),
            pdk_dir: Optional[Path] = typer.Option(
                None, "--pdk-dir", help="cell library folder (default $LCP_ASAP7_DIR / "
                                        "$LCP_OSU018_DIR or the usual place)"),
            images: int = typer.Option(2, help="images simulated for switching activity"),
            no_sim: bool = typer.Option(False, "--no-sim", help="vectorless power, no "
                                                                "gate-level simulation"),
            output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                  help="report folder (default BUILD/synth)"),
            top: Optional[str] = typer.Option(None, "--top", help="top module (default: from "
                                                                  "the build)"),
            no_plots: bool = typer.Option(False, "--no-plots", help="skip the PNG plots"),
            effort: str = typer.Option("normal", help="ASIC mapping effort: normal or fast"),
            dsp: str = typer.Option("auto", help="FPGA multipliers: auto (LUTs when the "
                                                 "generator's estimate uses no DSP; on ECP5 also "
                                                 "when they exceed its MULT18), yes, no"),
            no_clock_gating: bool = typer.Option(
                False, "--no-clock-gating", help="ASIC: keep enable multiplexers instead of "
                                                 "integrated clock gates")):
        """Synthesize a build: FPGA resources and Fmax, or ASIC area, timing, power, energy."""
        from rich.console import Console

        from . import report as rp
        from .libs import LibraryError
        from .tools import SynthError
        try:
            rep, j = run_synth(build, fpga=fpga, asic=asic, clock_mhz=clock_mhz,
                               pdk_dir=pdk_dir, images=images, sim=not no_sim, out=output,
                               top=top, plots=not no_plots, effort=effort, dsp=dsp,
                               clock_gating=not no_clock_gating)
        except (SynthError, LibraryError) as e:
            raise _usage(e) from None
        con = Console(width=max(120, Console().width))
        con.print(rp.rich_table(rep))
        for line in rp.summary(rep)[2:]:
            con.print(line)
        con.print(f"report: {j}")

    @app.command("explore")
    def explore_cmd(
            model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
            budget: Optional[str] = typer.Option("xc7z020", "--budget",
                                                 help="device budget of the chooser ('none': "
                                                      "no cap)"),
            branch: Optional[int] = typer.Option(
                None, "--branch", help="sweep branch K alone (default: the whole LCP core)"),
            points: int = typer.Option(6, help="latency targets tried"),
            synth: Optional[str] = typer.Option(
                None, "--synth", help="also synthesize every point: xc7z020, asic:osu018 or "
                                      "asic:asap7"),
            clock_mhz: float = typer.Option(100.0, "--clock-mhz", help="ASIC target clock"),
            pdk_dir: Optional[Path] = typer.Option(None, "--pdk-dir", help="cell library folder"),
            images: int = typer.Option(1, help="images simulated per point (ASIC power)"),
            output: Path = typer.Option(Path("explore"), "-o", "--output",
                                        help="folder for explore.json, explore.png and builds")):
        """Sweep folding choices (estimator, optionally synthesis): Pareto front of latency,
        area and power as JSON and a plot."""
        from lcp.sw.commands import load_model

        from .explore import explore, save
        from .libs import LibraryError
        from .tools import SynthError

        m = load_model(model)
        try:
            res = explore(m, budget=None if budget in (None, "none") else budget,
                          scope="core" if branch is None else "branch", index=branch or 0,
                          points=points, synth=synth, clock_mhz=clock_mhz, pdk_dir=pdk_dir,
                          images=images, workdir=output, log=typer.echo)
        except (SynthError, LibraryError) as e:
            raise _usage(e) from None
        j, png = save(res, output)
        front = [p for p in res["points"] if p["pareto"]]
        typer.echo(f"{len(res['points'])} design points, {len(front)} on the Pareto front of "
                   f"{', '.join(res['objectives'])}: {j}, {png}")
