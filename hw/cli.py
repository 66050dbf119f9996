"""``lcp`` commands of the hardware part: ``compile``, ``sim-demo``, ``hw-bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

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
        from lcp.sw.commands import load_model
        from lcp.sw.cli import UsageError

        from .build import generate
        from .folding import Folding

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

    @app.command("sim-demo")
    def sim_demo_cmd(
            model: Path = typer.Argument(Path("runs/lenet5_split4_w4a4/model.onnx"),
                                         help="demo model (QONNX)"),
            images: int = typer.Option(200, help="held-out MNIST images (0 = all 1000)"),
            budget: str = typer.Option("xc7z020", help="device budget for the folding"),
            waves: bool = typer.Option(False, "--waves", help="write a VCD of the first batch")):
        """Held-out MNIST images through the simulated LCP core, checked against golden."""
        from .demo import run_demo
        run_demo(model, images=images, budget=budget, waves=waves, out=typer.echo)

    @app.command("hw-bench")
    def hw_bench_cmd(
            quick: bool = typer.Option(False, "--quick", help="fewer models and images"),
            peers: bool = typer.Option(False, "--peers",
                                       help="FINN's bnn_pynq TFC-w2a2 and CNV-w2a2 only"),
            runs: Path = typer.Option(Path("runs"), help="folder of trained runs"),
            results: Path = typer.Option(Path("results"), help="folder for hw_bench.json"),
            output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                  help="also write the rows as JSON")):
        """Hardware benchmarks: simulated vs modelled cycles, simulator speed, resources."""
        from .bench import main as bench_main
        args = (["--runs", str(runs), "--results", str(results)] + (["--quick"] if quick else [])
                + (["--peers"] if peers else []))
        if output is not None:
            args += ["-o", str(output)]
        code = bench_main(args)
        if code:
            raise typer.Exit(code)
