"""What every command-line front of the toolkit needs, in one place below them all.

:class:`UsageError` (bad input: one line naming the file, exit code 2), :func:`load_model` (a
``.onnx`` compiled by the front end or a saved IR), :func:`read_npy` (never unpickled, header
checked against the file's length before any allocation), :func:`load_input` (a batch checked
against the model input), :func:`output_file` / :func:`write_npy` (where ``-o`` writes),
:func:`empty_output` (the answer to a batch of zero images) and :func:`counters_table` (the IR
counters as a table). The ``lcp`` commands of ``sw``, ``hw`` and ``synth`` all use these, so
none of them imports another's command module.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from rich.table import Table

from .counters import count
from .frontend import compile_onnx
from .golden import Golden
from .ir import IRError, load

__all__ = ["UsageError", "INPUT_FORMAT_HELP", "load_model", "read_npy", "load_input",
           "output_file", "write_npy", "empty_output", "counters_table", "check_parent"]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


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


def check_parent(path: Path) -> None:
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
    check_parent(path)
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


def counters_table(model, title: str | None = None):
    """A rich table of the IR counters of ``model``, per branch and in total."""
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
