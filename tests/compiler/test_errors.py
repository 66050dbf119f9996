"""Bad input: a one-line error naming what is wrong, exit code 2, no traceback."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import brevitas.nn as qnn
import onnx
from onnx import TensorProto, helper

from lcp import FrontendError, compile_onnx
from lcp.sw.cli import main
from tests.compiler.nets import Seq, conv, export, linear, relu


def lcp(*args, capsys):
    code = main(list(map(str, args)))
    err = capsys.readouterr().err
    return code, err


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    path = export(Seq([conv(1, 2, 3), relu(4), nn.Flatten(), linear(2 * 36, 3)]), (1, 8, 8),
                  d / "good.onnx")
    np.save(d / "x.npy", np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    return path, d / "x.npy"


def one_line(err):
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_unsupported_op_names_node_and_supported_list(tmp_path):
    class Sig(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = linear(16, 4)

        def forward(self, x):
            return torch.sigmoid(self.fc(torch.flatten(self.inp(x), 1)).value)

    path = export(Sig(), (1, 4, 4), tmp_path / "sig.onnx")
    with pytest.raises(FrontendError, match=r"node '.*' \(Sigmoid\): op type 'Sigmoid' is not "
                                            r"supported \(supported: Quant, .*Conv"):
        compile_onnx(path)


def test_grouped_conv(tmp_path):
    m = Seq([qnn.QuantConv2d(2, 2, 3, groups=2, bias=False, return_quant_tensor=True),
             relu(4), nn.Flatten(), linear(2 * 36, 3)])
    path = export(m, (2, 8, 8), tmp_path / "g.onnx")
    with pytest.raises(FrontendError, match=r"\(Conv\): group=2 is not supported"):
        compile_onnx(path)


def test_activation_bit_width_out_of_range(tmp_path):
    path = export(Seq([conv(1, 2, 3), relu(12), nn.Flatten(), linear(72, 3)]), (1, 8, 8),
                  tmp_path / "b.onnx")
    with pytest.raises(FrontendError, match=r"\(Quant\): activation bit width 12 is out of "
                                            r"range 2..8"):
        compile_onnx(path)


@pytest.mark.parametrize("bits", [1, 9])
def test_weight_bit_width_out_of_range(tmp_path, bits):
    path = export(Seq([conv(1, 2, 3, wbits=bits), relu(4), nn.Flatten(), linear(72, 3)]),
                  (1, 8, 8), tmp_path / "w.onnx")
    with pytest.raises(FrontendError, match=rf"\): .*bit width {bits}.* is out of range "
                                            rf"2..8"):
        compile_onnx(path)


def _graph(nodes, inits, in_shape=(1, 4)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3))],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                               helper.make_opsetid("qonnx.custom_op.general", 1)])


def _quant(name, out, scale, bits, signed=0):
    inits = [helper.make_tensor(f"{name}_s", TensorProto.FLOAT, [], [scale]),
             helper.make_tensor(f"{name}_z", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor(f"{name}_b", TensorProto.FLOAT, [], [bits])]
    node = helper.make_node("Quant", [name, f"{name}_s", f"{name}_z", f"{name}_b"], [out],
                            domain="qonnx.custom_op.general", signed=signed, narrow=0,
                            rounding_mode="ROUND", name=f"Q_{name}")
    return node, inits


def test_float_weights_without_quant(tmp_path):
    qn, qi = _quant("x", "xq", 1 / 255, 8)
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], np.ones(12))
    mm = helper.make_node("MatMul", ["xq", "W"], ["y"], name="mm")
    path = tmp_path / "f.onnx"
    onnx.save(_graph([qn, mm], qi + [w]), path)
    with pytest.raises(FrontendError, match=r"node 'MatMul_0' \(MatMul\): float weights 'W' "
                                            r"without a Quant node|float weights .* without a "
                                            r"Quant"):
        compile_onnx(path)


def test_unquantized_input(tmp_path):
    qw, wi = _quant("W", "Wq", 0.1, 4, signed=1)
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], np.ones(12))
    mm = helper.make_node("MatMul", ["x", "Wq"], ["y"], name="mm")
    path = tmp_path / "u.onnx"
    onnx.save(_graph([qw, mm], wi + [w]), path)
    with pytest.raises(FrontendError, match=r"unquantized"):
        compile_onnx(path)


def test_cli_truncated_file(tmp_path, good, capsys):
    path, x = good
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    code, err = lcp("run", bad, x, "-o", tmp_path / "y.npy", capsys=capsys)
    assert code == 2
    assert "trunc.onnx" in one_line(err)


def test_cli_not_onnx(tmp_path, good, capsys):
    _, x = good
    bad = tmp_path / "text.onnx"
    bad.write_text("hello, this is not a model\n")
    code, err = lcp("run", bad, x, "-o", tmp_path / "y.npy", capsys=capsys)
    assert code == 2 and "text.onnx: not a readable ONNX model" in one_line(err)


def test_cli_wrong_shape_and_dtype(tmp_path, good, capsys):
    path, _ = good
    np.save(tmp_path / "shape.npy", np.zeros((2, 1, 8, 7), np.float32))
    code, err = lcp("run", path, tmp_path / "shape.npy", "-o", tmp_path / "y.npy", capsys=capsys)
    assert code == 2 and "does not match the model input (N, 1, 8, 8)" in one_line(err)
    np.save(tmp_path / "dtype.npy", np.zeros((2, 1, 8, 8), np.complex64))
    code, err = lcp("run", path, tmp_path / "dtype.npy", "-o", tmp_path / "y.npy", capsys=capsys)
    assert code == 2 and "complex64" in one_line(err)
    np.save(tmp_path / "obj.npy", np.array([object()] * 2), allow_pickle=True)
    code, err = lcp("run", path, tmp_path / "obj.npy", "-o", tmp_path / "y.npy", capsys=capsys)
    assert code == 2 and "obj.npy" in one_line(err)


def test_cli_unsupported_model_exit_code_subprocess(tmp_path, good):
    """The installed console script itself: exit code 2 and a single stderr line."""
    path, x = good
    bad = tmp_path / "bits.onnx"
    export(Seq([conv(1, 2, 3), relu(12), nn.Flatten(), linear(72, 3)]), (1, 8, 8), bad)
    r = subprocess.run([sys.executable, "-m", "lcp.sw.cli", "run", str(bad), str(x), "-o",
                        str(tmp_path / "y.npy")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "activation bit width 12" in one_line(r.stderr)
    assert not (tmp_path / "y.npy").exists()


def test_cli_run_writes_golden_and_int(tmp_path, good, capsys):
    path, x = good
    assert lcp("run", path, x, "-o", tmp_path / "y.npy", capsys=capsys)[0] == 0
    assert lcp("run", path, x, "-o", tmp_path / "yi.npy", "--int", capsys=capsys)[0] == 0
    y, yi = np.load(tmp_path / "y.npy"), np.load(tmp_path / "yi.npy")
    assert y.dtype == np.float64 and yi.dtype == np.int64 and y.shape == yi.shape == (3, 3)
    m = compile_onnx(path)
    np.testing.assert_allclose(y, m.dequant(yi))
    assert lcp("run", path, x, "-o", tmp_path / "yq.npy", "--backend", "qonnx", "--int",
               capsys=capsys)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "yq.npy"), yi)
