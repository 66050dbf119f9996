"""Core ``lcp`` commands: ``ir``, ``run``, ``info``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from .cli import UsageError

__all__ = ["register", "load_model", "load_input"]


def load_model(path: Path):
    """An IR model from ``.onnx`` (compiled by the front end) or a saved IR (``.json``)."""
    from lcp import compile_onnx, load

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.suffix == ".onnx":
        return compile_onnx(path)
    if path.suffix in (".json", ".npz"):
        return load(path)
    raise UsageError(f"{path}: expected a .onnx model or an IR .json file")


def load_input(path: Path, model, integer: bool = False) -> np.ndarray:
    """Read a batch from ``.npy`` (never unpickled) and check it against the model input."""
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (ValueError, OSError) as e:
        raise UsageError(f"{path}: not a readable .npy array ({e})") from None
    want = tuple(model.input.shape)
    if x.ndim == len(want):
        raise UsageError(f"{path}: shape {x.shape} has no batch axis; expected (N, "
                         f"{', '.join(map(str, want))})")
    if tuple(x.shape[1:]) != want:
        raise UsageError(f"{path}: shape {x.shape} does not match the model input (N, "
                         f"{', '.join(map(str, want))})")
    if integer:
        if x.dtype.kind not in "iu":
            raise UsageError(f"{path}: --int-input needs an integer array, got {x.dtype}")
    elif x.dtype.kind != "f":
        raise UsageError(f"{path}: dtype {x.dtype} is not a float array (the model's float "
                         f"input); pass --int-input for already quantized integers")
    return x


def register(app: typer.Typer) -> None:
    _register_info(app)

    @app.command("ir")
    def ir_cmd(model: Path = typer.Argument(..., help="QONNX model (.onnx)"),
               output: Path = typer.Option(..., "-o", "--output", help="IR path stem")):
        """Compile a QONNX model to the integer IR (OUTPUT.json + OUTPUT.npz)."""
        from lcp import save
        m = load_model(model)
        j, n = save(m, output)
        typer.echo(f"wrote {j} and {n}: {len(m.branches)} branch(es), "
                   f"{sum(1 for _ in m.layers())} layers")

    @app.command("run")
    def run_cmd(model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
                inputs: Path = typer.Argument(..., help="batch-first input array (.npy)"),
                output: Path = typer.Option(..., "-o", "--output", help="output .npy"),
                backend: str = typer.Option("golden", help="executor backend"),
                integer: bool = typer.Option(False, "--int", help="write the integer output"),
                int_input: bool = typer.Option(False, "--int-input",
                                               help="the input array holds quantized integers"),
                precision: str = typer.Option("float64", help="qonnx backend precision")):
        """Run a model on a batch with one backend and write the output."""
        from lcp.executor import get_executor
        m = load_model(model)
        x = load_input(inputs, m, integer=int_input)
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
        np.save(output, y)
        typer.echo(f"{backend}: {len(x)} input(s) -> {output} {y.shape} {y.dtype}")


def counters_table(model, title: str | None = None):
    """A rich table of the IR counters of ``model``, per branch and in total."""
    from rich.table import Table

    from lcp.counters import count

    c = count(model)
    t = Table(title=title or f"{model.name}: {c.branches} branch(es)")
    for col in ("graph", "params", "param bytes", "MACs", "peak act. bytes", "in bytes",
                "out bytes"):
        t.add_column(col, justify="right" if col != "graph" else "left")
    for g in c.graphs:
        t.add_row(g.name, f"{g.params:,}", f"{g.param_bytes:,}", f"{g.macs:,}",
                  f"{g.peak_activation_bytes:,}", f"{g.input_bytes:,}", f"{g.output_bytes:,}")
    t.add_row("total", f"{c.params:,}", f"{c.param_bytes:,}", f"{c.macs:,}",
              f"{c.peak_activation_bytes_single:,} (1 device)", "", "", style="bold")
    return c, t


def _register_info(app):
    @app.command("info")
    def info_cmd(model: Path = typer.Argument(..., help="QONNX model (.onnx) or IR (.json)"),
                 json_out: Optional[Path] = typer.Option(None, "--json",
                                                         help="also write the counters")):
        """Counters of a model from its IR: parameters, MACs, activation memory, traffic."""
        import json

        from rich.console import Console
        m = load_model(model)
        c, table = counters_table(m)
        console = Console()
        console.print(table)
        console.print(f"network traffic per inference: {c.traffic_bytes:,} bytes (input to "
                      f"{c.branches} branch(es) + branch outputs to the merge)")
        if json_out:
            json_out.write_text(json.dumps(c.to_json(), indent=1))
