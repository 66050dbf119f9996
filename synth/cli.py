"""``lcp`` commands of the synthesis flows: ``synth`` and ``explore``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from lcp.usage import UsageError, load_model

from . import report as rp
from .explore import explore, save
from .flow import run_synth
from .libs import LibraryError
from .tools import SynthError

__all__ = ["register"]


def _usage(e: Exception):
    lines = str(e).splitlines()
    return UsageError(lines[0] if lines else type(e).__name__)


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
            jobs: Optional[int] = typer.Option(
                None, "--jobs", help="engines synthesized at once (default: usable CPUs, or "
                                     "$LCP_SYNTH_JOBS)"),
            no_clock_gating: bool = typer.Option(
                False, "--no-clock-gating", help="ASIC: keep enable multiplexers instead of "
                                                 "integrated clock gates"),
            pnr_seeds: str = typer.Option(
                "1", "--pnr-seeds", help="ECP5: nextpnr placement seeds, comma-separated, "
                                         "placed --jobs at a time; the best seed's Fmax is "
                                         "reported, with every seed's")):
        """Synthesize a build: FPGA resources and Fmax, or ASIC area, timing, power, energy."""
        try:
            seeds = [int(v) for v in pnr_seeds.split(",")]
        except ValueError:
            raise UsageError(f"--pnr-seeds: {pnr_seeds!r} is not a comma-separated list of "
                             f"integers") from None
        try:
            rep, j = run_synth(build, fpga=fpga, asic=asic, clock_mhz=clock_mhz,
                               pdk_dir=pdk_dir, images=images, sim=not no_sim, out=output,
                               top=top, plots=not no_plots, effort=effort, dsp=dsp,
                               clock_gating=not no_clock_gating, jobs=jobs,
                               pnr_seeds=seeds, log=typer.echo)
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
