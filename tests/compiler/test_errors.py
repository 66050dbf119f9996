"""Bad input: a one-line error naming what is wrong, exit code 2, no traceback."""

import re
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


def test_dilated_conv(tmp_path):
    m = Seq([qnn.QuantConv2d(2, 2, 3, dilation=2, bias=False, return_quant_tensor=True),
             relu(4), nn.Flatten(), linear(2 * 16, 3)])
    path = export(m, (2, 8, 8), tmp_path / "g.onnx")
    with pytest.raises(FrontendError, match=r"\(Conv\): dilations=\[2, 2\] are not supported"):
        compile_onnx(path)


def test_activation_bit_width_out_of_range(tmp_path):
    path = export(Seq([conv(1, 2, 3), relu(12), nn.Flatten(), linear(72, 3)]), (1, 8, 8),
                  tmp_path / "b.onnx")
    with pytest.raises(FrontendError, match=r"\(Quant\): activation bit width 12 is out of "
                                            r"range 1..8"):
        compile_onnx(path)


def test_weight_bit_width_out_of_range(tmp_path):
    path = export(Seq([conv(1, 2, 3, wbits=9), relu(4), nn.Flatten(), linear(72, 3)]),
                  (1, 8, 8), tmp_path / "w.onnx")
    with pytest.raises(FrontendError, match=r"\): .*bit width 9.* is out of range 1..8"):
        compile_onnx(path)


def test_one_bit_int_weights_have_no_scale(tmp_path):
    """Brevitas' Int weight quantizer at bit_width=1 divides by 2**0 - 1: its scale is not a
    number, and the error names the node instead of failing later."""
    path = export(Seq([conv(1, 2, 3, wbits=1), relu(4), nn.Flatten(), linear(72, 3)]),
                  (1, 8, 8), tmp_path / "w.onnx")
    with pytest.raises(FrontendError, match=r"\((Bipolar)?Quant\): scales must be positive and "
                                            r"finite"):
        compile_onnx(path)


def test_degenerate_quantizer(tmp_path):
    """A 1-bit signed narrow-range Quant can only give 0: said plainly."""
    qn, qi = _quant("x", "xq", 1 / 255, 8)
    qw, wi = _quant("W", "Wq", 0.1, 1, signed=1, narrow=1)
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], np.ones(12))
    mm = helper.make_node("MatMul", ["xq", "Wq"], ["y"], name="mm")
    path = tmp_path / "d.onnx"
    onnx.save(_graph([qn, qw, mm], qi + wi + [w]), path)
    with pytest.raises(FrontendError, match=r"\(Quant\): a 1-bit signed narrow quantizer holds "
                                            r"only the value 0; 1-bit layers use BipolarQuant"):
        compile_onnx(path)


def _graph(nodes, inits, in_shape=(1, 4)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3))],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                               helper.make_opsetid("qonnx.custom_op.general", 1)])


def _quant(name, out, scale, bits, signed=0, narrow=0):
    inits = [helper.make_tensor(f"{name}_s", TensorProto.FLOAT, [], [scale]),
             helper.make_tensor(f"{name}_z", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor(f"{name}_b", TensorProto.FLOAT, [], [bits])]
    node = helper.make_node("Quant", [name, f"{name}_s", f"{name}_z", f"{name}_b"], [out],
                            domain="qonnx.custom_op.general", signed=signed, narrow=narrow,
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
    with pytest.raises(FrontendError, match=r"node '.*' \(MatMul\): reads the model input "
                                            r"unquantized: declare .* --input-format uint8"):
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


def test_cli_unsupported_softmax_one_line(tmp_path, capsys):
    class Soft(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc = linear(16, 4)

        def forward(self, x):
            return torch.softmax(self.fc(torch.flatten(self.inp(x), 1)).value, dim=1)

    path = export(Soft(), (1, 4, 4), tmp_path / "soft.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 4, 4), np.float32))
    code, err = lcp("run", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy", capsys=capsys)
    assert code == 2
    assert re.search(r"node '.*' \(Softmax\): op type 'Softmax' is not supported", one_line(err))
    assert not (tmp_path / "y.npy").exists()


def test_cli_input_format(tmp_path, capsys):
    """A model whose first conv reads the float image: refused without --input-format (the
    message names the option), run with it, and a value off the declared grid refused."""
    m = nn.Sequential(qnn.QuantConv2d(1, 2, 3, bias=False), relu(4), nn.Flatten(),
                      qnn.QuantLinear(2 * 16, 3, bias=False))
    path = export(m, (1, 6, 6), tmp_path / "float_in.onnx")
    k = np.random.default_rng(0).integers(0, 256, (4, 1, 6, 6))
    np.save(tmp_path / "x.npy", (k / 255).astype(np.float32))
    code, err = lcp("run", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy", capsys=capsys)
    assert code == 2 and "--input-format uint8" in one_line(err)
    code, _ = lcp("run", path, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--int",
                  "--input-format", "uint8", capsys=capsys)
    assert code == 0
    model = compile_onnx(path, input_format="uint8")
    from lcp.golden import Golden
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), Golden(model).run_int(k))
    np.save(tmp_path / "off.npy", (k / 255 + 0.001).astype(np.float32))
    code, err = lcp("run", path, tmp_path / "off.npy", "-o", tmp_path / "y2.npy",
                    "--input-format", "uint8", capsys=capsys)
    assert code == 2 and "not on the declared uint8 grid" in one_line(err)
    code, err = lcp("ir", path, "-o", tmp_path / "ir", "--input-format", "uint9", capsys=capsys)
    assert code == 2 and "input format 'uint9'" in one_line(err)
