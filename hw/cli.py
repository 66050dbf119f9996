"""``lcp`` command of the hardware part: ``compile``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from lcp.ir import IRError
from lcp.usage import UsageError, load_model

from .build import generate
from .delay import keeps_dsp, link_register, ram_register, tree_levels_per_stage
from .folding import Folding
from .reuse import choose_reused
from .reuse_engine import write_build

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
                                                 help="device budget: xc7z020, xc7z010, "
                                                      "lfe5u-25f/45f/85f"),
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
            clock_mhz: Optional[float] = typer.Option(
                None, "--clock-mhz", help="pipeline the adder trees for this clock (with "
                                          "--target)"),
            tech: Optional[str] = typer.Option(
                None, "--target", help="timing target of --clock-mhz: asap7, osu018, ecp5, "
                                       "xc7 (default asap7)"),
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
        if tech is not None and clock_mhz is None:
            raise UsageError("--target needs --clock-mhz")
        if clock_mhz is not None:
            try:
                k = tree_levels_per_stage(tech or "asap7", clock_mhz)
            except ValueError as e:
                raise UsageError(str(e)) from None
            ram = ("", ", memory reads registered", ", memory reads registered twice")[
                ram_register(tech or "asap7", clock_mhz)]
            links = (", links between engines registered"
                     if link_register(tech or "asap7", clock_mhz) else "")
            typer.echo(f"adder trees registered every {k} levels{ram}{links} ({tech or 'asap7'} "
                       f"delay model at {clock_mhz:g} MHz)")
            if tech is not None and not keeps_dsp(tech, clock_mhz):
                typer.echo(f"no DSP lanes: {tech} has no hard multipliers, or their path does "
                           f"not fit {clock_mhz:g} MHz (lcp.hw.delay.keeps_dsp)")
        scope = "core" if branch is None else "branch"
        try:
            b = generate(m, output, folding=fold, target=target_cycles, budget=budget,
                         scope=scope, index=branch or 0, in_width=in_width, out_width=out_width,
                         taps=taps, clock_mhz=clock_mhz, tech=tech)
        except IRError as e:
            if budget is None or fold is not None or target_cycles is not None:
                raise
            # no dataflow design fits the device, not even with weights from DRAM: the
            # branch runs phase after phase on one reused engine
            c = choose_reused(m, budget, scope=scope, index=branch or 0)
            output.mkdir(parents=True, exist_ok=True)
            rep = {**c.to_json(), "model": m.name, "scope": scope, "budget": budget,
                   "dataflow": str(e), "layers": c.layers}
            prog = c.program(m, scope=scope, index=branch or 0)
            try:
                rep["build"] = write_build(prog, output)
                made = f"{rep['build']['verilog']} + {rep['build']['weights']}"
            except IRError as why:
                rep["build"] = {"error": str(why)}
                made = f"cycle model only: {why}"
            (output / "report.json").write_text(json.dumps(rep, indent=1))
            r = c.resources.to_json()
            what = "LCP core" if scope == "core" else f"branch {branch}"
            typer.echo(f"{m.name} {what}: no dataflow design fits {budget}; served by one "
                       f"reused {c.pe}x{c.simd} engine with weights"
                       f"{' and activations' if c.activations == 'dram' else ''} from DRAM "
                       f"({c.dram_bytes:,} bytes per image over the HP port): latency "
                       f"{c.latency:,} cycles (cycle model); estimate {r['lut']} LUT, "
                       f"{r['ff']} FF, {r['dsp']} DSP, {r['bram36']} BRAM36 -> {made}")
            return
        r = b.resources.to_json()
        what = "LCP core" if scope == "core" else f"branch {branch}"
        typer.echo(f"{m.name} {what} -> {b.verilog}: latency {b.timing.latency} cycles, "
                   f"interval {b.timing.interval} cycles (cycle model); estimate {r['lut']} LUT, "
                   f"{r['ff']} FF, {r['dsp']} DSP, {r['bram36']} BRAM36")
        ch = b.report.get("chooser")
        if ch and not ch["target_met"]:
            typer.echo(f"warning: {ch['note']}", err=True)

