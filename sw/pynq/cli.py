"""``lcp`` command of the PYNQ part: ``bitstream`` (Vivado project, built where Vivado is)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from lcp.hw.folding import Folding
from lcp.synth.bitstream import EXIT_NOT_BUILT, make_bitstream
from lcp.synth.tools import SynthError
from lcp.usage import UsageError, load_model

from ..cluster.parts import branch_parts

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("bitstream")
    def bitstream_cmd(
            model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
            board: str = typer.Option("pynq-z2", help="pynq-z2 or pynq-z1"),
            output: Optional[Path] = typer.Option(
                None, "-o", "--output", help="project folder (default build/bitstream/"
                                             "MODEL_BOARD)"),
            branch: Optional[int] = typer.Option(
                None, "--branch", help="build branch K alone (default: the whole model as one "
                                       "LCP core)"),
            part: Optional[int] = typer.Option(
                None, "--part", help="build branch K as the standalone part model the cluster "
                                     "runtime ships to a node (lcp.sw.cluster.parts): a node's "
                                     "pynq backend finds its overlay by that part's hash"),
            folding: Optional[Path] = typer.Option(None, "--folding",
                                                   help="use this folding.json"),
            budget: str = typer.Option("xc7z020", help="device budget for the folding"),
            target_cycles: Optional[int] = typer.Option(
                None, "--target-cycles", help="latency target in cycles instead of a budget"),
            width: int = typer.Option(64, "--width", help="DMA stream width, 32 or 64"),
            jobs: int = typer.Option(2, help="Vivado jobs"),
            project_only: bool = typer.Option(False, "--project-only",
                                              help="write the project, do not run Vivado"),
            timeout: Optional[float] = typer.Option(None, help="seconds for Vivado")):
        """PYNQ overlay: write the Vivado project (PS7 + AXI DMA + the engine as IP) and build
        the .bit/.hwh when `vivado` is on PATH. Without Vivado the project is written and the
        command exits with code 3 (not built), naming the command to run elsewhere."""

        m = load_model(model)
        if part is not None:
            if branch is not None:
                raise UsageError("--part and --branch exclude each other")
            parts = branch_parts(m)
            if not 0 <= part < len(parts):
                raise UsageError(f"--part {part}: {m.name} has {len(parts)} branch(es)")
            m = parts[part].model
        if width not in (32, 64):
            raise UsageError(f"--width {width}: the DMA stream is 32 or 64 bits")
        fold = None
        if folding is not None:
            f = Folding.load(folding)
            fold = replace(f, in_width=width, out_width=width)
        out = output or Path("build") / "bitstream" / f"{m.name}_{board}"
        try:
            r = make_bitstream(m, out, board=board, run=not project_only, timeout=timeout,
                               folding=fold, budget=None if target_cycles else budget,
                               target=target_cycles,
                               scope="core" if branch is None else "branch",
                               index=branch or 0, in_width=width, out_width=width, jobs=jobs)
        except SynthError as e:
            typer.echo(f"lcp: error: {e}", err=True)
            raise SystemExit(1)
        lint = r.project.lint
        typer.echo(f"{m.name} on {board}: lcp_pynq.v passes `{lint['command']}` (waived: "
                   f"{', '.join(f'{k} x{v}' for k, v in sorted(lint['waived'].items())) or 'none'})")
        typer.echo(r.message)
        if r.status != "built" and not project_only:
            # SystemExit, not typer.Exit: `lcp` runs click with standalone_mode=False, where
            # typer.Exit's code is returned, not raised, and would be lost
            raise SystemExit(EXIT_NOT_BUILT)

