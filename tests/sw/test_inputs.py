"""Malformed inputs of the ``lcp`` commands: one stderr line naming the file and the problem,
exit code 2, no traceback, nothing written; or, for an empty batch and ``-o FOLDER``, a correct
result whose message names the file really written."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch.nn as nn

from lcp import compile_onnx, save
from lcp.sw.cli import main
from tests.compiler.nets import Seq, conv, export, linear, relu


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small model as ONNX and as IR, and a good float batch of 3 images."""
    d = tmp_path_factory.mktemp("inputs")
    onnx_path = export(Seq([conv(1, 2, 3), relu(4), nn.Flatten(), linear(2 * 36, 3)]),
                       (1, 8, 8), d / "m.onnx")
    ir_json, _ = save(compile_onnx(onnx_path), d / "m")
    np.save(d / "x.npy", np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    return {"onnx": onnx_path, "ir": ir_json, "x": d / "x.npy", "dir": d}


def lcp(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str, *names: str) -> str:
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("lcp: error: "), err
    assert "Traceback" not in err
    for n in names:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _npy_header(path, shape, body: bytes, descr="<f4"):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False,
                                                 "shape": shape})
        f.write(body)


@pytest.mark.parametrize("command", [["run"], ["cluster", "run"]])
def test_bad_npy_files_are_named(model, tmp_path, capsys, command):
    """A zip renamed .npy, an empty file, a header declaring 1e9 images over 1 KB, a header
    declaring fewer bytes than the body: refused before anything is allocated or started."""
    np.savez(tmp_path / "z.npz", x=np.zeros((3, 1, 8, 8), np.float32))
    shutil.copy(tmp_path / "z.npz", tmp_path / "zip.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    _npy_header(tmp_path / "huge.npy", (10**9, 1, 8, 8), bytes(1024))
    _npy_header(tmp_path / "long.npy", (1, 1, 8, 8), bytes(4 * 64 + 8))
    (tmp_path / "text.npy").write_text("1, 2, 3\n")
    cases = {"zip.npy": "zip archive", "empty.npy": "empty file",
             "huge.npy": "declares shape (1000000000, 1, 8, 8)", "long.npy": "264 bytes",
             "text.npy": "not a .npy array"}
    for name, problem in cases.items():
        code, _, err = lcp(capsys, *command, model["ir"], tmp_path / name, "-o",
                           tmp_path / "y.npy")
        assert code == 2, (name, err)
        one_error(err, name, problem)
    assert not (tmp_path / "y.npy").exists()


def test_empty_npy_in_a_subprocess_is_an_error_not_an_abort(model, tmp_path):
    """Click turns an EOFError into "aborted" (exit 130): the console script says which file."""
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "m.json").write_text(model["ir"].read_text())
    (tmp_path / "m.npz").write_bytes(b"")
    for args in ([model["ir"], tmp_path / "empty.npy"], [tmp_path / "m.json", model["x"]]):
        r = subprocess.run([sys.executable, "-m", "lcp.sw.cli", "run", *map(str, args), "-o",
                            str(tmp_path / "y.npy")], capture_output=True, text=True)
        assert r.returncode == 2, r.stderr
        one_error(r.stderr, "empty.npy" if "empty" in str(args[1]) else "m.npz")


def test_values_are_checked_naming_the_file(model, tmp_path, capsys):
    x = np.load(model["x"])
    x[1, 0, 2, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    code, _, err = lcp(capsys, "run", model["ir"], tmp_path / "nan.npy", "-o", tmp_path / "y.npy")
    assert code == 2
    one_error(err, "nan.npy", "NaN")
    np.save(tmp_path / "big.npy", np.full((2, 1, 8, 8), 1000, np.int64))
    code, _, err = lcp(capsys, "run", model["ir"], tmp_path / "big.npy", "-o",
                       tmp_path / "y.npy", "--int-input")
    assert code == 2
    one_error(err, "big.npy", "outside the input range [0, 255]")
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("command", [["run"], ["cluster", "run"]])
def test_zero_images_give_an_empty_output(model, tmp_path, capsys, command):
    """Documented choice: a batch of 0 images is answered with an output of 0 images (shape
    ``(0, *output shape)``, the dtype of a non-empty answer)."""
    np.save(tmp_path / "zero.npy", np.zeros((0, 1, 8, 8), np.float32))
    for flags, dtype in (([], np.float64), (["--int"], np.int64)):
        out = tmp_path / f"y{len(flags)}.npy"
        code, stdout, err = lcp(capsys, *command, model["ir"], tmp_path / "zero.npy", "-o", out,
                                *flags)
        assert code == 0, err
        y = np.load(out)
        assert y.shape == (0, 3) and y.dtype == dtype
        assert f"0 input(s) -> {out} (0, 3)" in stdout


def test_ir_json_fields_are_named(model, tmp_path, capsys):
    doc = json.loads(model["ir"].read_text())
    npz = model["ir"].with_suffix(".npz")
    name = next(iter(doc["tensors"]))
    cases = {
        "float": (lambda d: d["tensors"][name].update(shape=[2.5, 8, 8]),
                  f"tensor {name!r}: shape [2.5, 8, 8]: 2.5 is not an integer"),
        "string": (lambda d: d["tensors"][name].update(shape=[1, "8", 8]),
                   f"tensor {name!r}: shape [1, '8', 8]: '8' is not an integer"),
        "missing": (lambda d: d["tensors"][name].pop("lo"),
                    f"tensor {name!r}: missing field or array 'lo'"),
        "layer": (lambda d: d["branches"][0]["layers"][0].pop("op"),
                  f"branch 0 layer {doc['branches'][0]['layers'][0]['name']!r}: missing field"),
        "input": (lambda d: d["input"].update(lo=0.5), "input: lo 0.5 is not an integer"),
    }
    for case, (edit, message) in cases.items():
        d = json.loads(model["ir"].read_text())
        edit(d)
        (tmp_path / f"{case}.json").write_text(json.dumps(d))
        shutil.copy(npz, tmp_path / f"{case}.npz")
        code, _, err = lcp(capsys, "run", tmp_path / f"{case}.json", model["x"], "-o",
                           tmp_path / "y.npy")
        assert code == 2, (case, err)
        one_error(err, f"{case}.json", message)


def test_output_paths(model, tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    code, _, err = lcp(capsys, "run", model["ir"], model["x"], "-o", tmp_path / "afile" / "y.npy")
    assert code == 2
    one_error(err, "afile", "is a file, not a folder")
    code, _, err = lcp(capsys, "ir", model["onnx"], "-o", tmp_path / "afile" / "m")
    assert code == 2
    one_error(err, "afile", "is a file, not a folder")

    code, _, err = lcp(capsys, "run", model["ir"], model["x"], "-o", tmp_path / "out.txt")
    assert code == 2
    one_error(err, "out.txt", "name it")
    assert not list(tmp_path.glob("out.txt*"))

    folder = tmp_path / "results"
    folder.mkdir()
    code, stdout, _ = lcp(capsys, "run", model["ir"], model["x"], "-o", folder)
    written = folder / "x.out.npy"
    assert code == 0 and f"-> {written} (3, 3)" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "results"]

    code, stdout, _ = lcp(capsys, "run", model["ir"], model["x"], "-o", tmp_path / "plain")
    assert code == 0 and f"-> {tmp_path / 'plain.npy'} (3, 3)" in stdout
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), np.load(written))


def test_an_lstm_is_reported_as_an_lstm(tmp_path, capsys):
    import torch

    class Rnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 4, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0]

    torch.onnx.export(Rnn(), torch.rand(1, 5, 8), tmp_path / "lstm.onnx", dynamo=False)
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 8), np.float32))
    code, _, err = lcp(capsys, "run", tmp_path / "lstm.onnx", tmp_path / "x.npy", "-o",
                       tmp_path / "y.npy")
    assert code == 2
    one_error(err, "lstm.onnx", "LSTM", "not supported")
