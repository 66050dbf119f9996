"""``lcp`` command of the hardware part: ``compile``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lcp.usage import UsageError, load_model

from .build import generate
from .folding import Folding

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("compile")
    def compile_cmd(
            model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
            output: Path = typer.Option(..., "-o", "--output", help="build folder"),
            target_cycles: Optional[int] = typer.Option(
                None, "--target-cycles", help="latency target in cycles (first input word to "
                                              "last output word)"),
            budget: Optional[str] = typer.Option(None, "--budget",
                                                 help="device budget, e.g. xc7z020"),
            branch: Optional[int] = typer.Option(
                None, "--branch", help="build branch K alone (default: the whole model as one "
                                       "LCP core)"),
            folding: Optional[Path] = typer.Option(None, "--folding",
                                                   help="use this folding.json"),
            in_width: Optional[int] = typer.Option(None, "--in-width",
                                                   help="s_axis tdata bits (default 64)"),
            out_width: Optional[int] = typer.Option(None, "--out-width",
                                                    help="m_axis tdata bits (default 64)"),
            taps: bool = typer.Option(False, "--taps", help="add tap ports for diagnosis"),
            input_format: Optional[str] = typer.Option(
                None, help="integer domain of a float input the model reads directly: uint8, "
                           "uint8:SCALE or int8:SCALE")):
        """Generate Verilog for a model or one branch (BUILD/: design, folding, report)."""
        m = load_model(model, input_format)
        if target_cycles is not None and target_cycles <= 0:
            raise UsageError("--target-cycles must be positive")
        fold = Folding.load(folding) if folding is not None else None
        if fold is not None and (target_cycles is not None or budget is not None):
            raise UsageError("--folding fixes the folding; drop --target-cycles/--budget")
        scope = "core" if branch is None else "branch"
        b = generate(m, output, folding=fold, target=target_cycles, budget=budget, scope=scope,
                     index=branch or 0, in_width=in_width, out_width=out_width, taps=taps)
        r = b.resources.to_json()
        what = "LCP core" if scope == "core" else f"branch {branch}"
        typer.echo(f"{m.name} {what} -> {b.verilog}: latency {b.timing.latency} cycles, "
                   f"interval {b.timing.interval} cycles (cycle model); estimate {r['lut']} LUT, "
                   f"{r['ff']} FF, {r['dsp']} DSP, {r['bram36']} BRAM36")
        ch = b.report.get("chooser")
        if ch and not ch["target_met"]:
            typer.echo(f"warning: {ch['note']}", err=True)

