"""Per-op sweeps: golden == the float64 qonnx oracle, integer for integer.

Every case builds a small Brevitas network, exports it to QONNX, compiles it to the IR and
runs the golden reference and the oracle on the same inputs. The integers before the final
dequantization must be identical, and the dequantized outputs within 1e-6 of a scale step.
"""

import numpy as np
import pytest
import torch.nn as nn
import brevitas.nn as qnn

from lcp import compile_onnx
from lcp.golden import Golden
from lcp.oracle import QonnxExecutor, run_oracle

from tests.compiler.nets import (Branches, Residual, Seq, conv, export, inputs, linear, qid, randomize, relu)
from tests.op_cases import CONV_CASES


def check_exact(tmp_path, module, in_shape, *, signed=False, dynamo=False, n=24, seed=0):
    path = export(randomize(module, seed), in_shape, tmp_path / "m.onnx", dynamo=dynamo)
    model = compile_onnx(path)
    x = inputs(in_shape, n, signed, seed)
    gold = Golden(model)
    yq = gold.run_int(model.input.quantize(x))
    oracle = QonnxExecutor(model, source=path)
    oq = oracle.run_int(model.input.quantize(x))
    assert yq.shape == oq.shape
    np.testing.assert_array_equal(yq, oq)
    y, o = gold.run(x), oracle.run(x)
    step = np.abs(model.dequant.scale).reshape((1, -1) + (1,) * (y.ndim - 2))
    assert np.all(np.abs(y - o) <= 1e-6 * step)
    # the check can fail: the outputs are not all the same value
    assert len(np.unique(yq)) > 1
    return model, path, x


@pytest.mark.parametrize("k,stride,pad,wbits,abits,pc,signed,bn", CONV_CASES)
def test_conv(tmp_path, k, stride, pad, wbits, abits, pc, signed, bn):
    body = [conv(2, 5, k, stride=stride, pad=pad, wbits=wbits, per_channel=pc)]
    if bn:
        body.append(nn.BatchNorm2d(5))
    body += [relu(abits), nn.Flatten(), linear(5 * ((9 + 2 * pad - k) // stride + 1) ** 2, 4,
                                               wbits=wbits, per_channel=pc)]
    check_exact(tmp_path, Seq(body, signed_input=signed), (2, 9, 9), signed=signed)


@pytest.mark.parametrize("bits", range(2, 9))
def test_bit_widths(tmp_path, bits):
    body = [conv(1, 4, 3, pad=1, wbits=bits), relu(bits), nn.MaxPool2d(2), nn.Flatten(),
            linear(64, 8, wbits=bits, per_channel=True), relu(bits), linear(8, 3, wbits=bits)]
    check_exact(tmp_path, Seq(body), (1, 8, 8))


@pytest.mark.parametrize("signed_act", [False, True])
def test_mlp_signed_activations_and_float_bias(tmp_path, signed_act):
    act = qid(4) if signed_act else relu(4)
    body = [nn.Flatten(), linear(36, 16, per_channel=True), act,
            linear(16, 4, quant_bias=False)]
    check_exact(tmp_path, Seq(body, signed_input=True), (1, 6, 6), signed=True)


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_maxpool(tmp_path, k, stride, pad):
    body = [conv(1, 3, 3, pad=1), relu(4), nn.MaxPool2d(k, stride, pad), nn.Flatten()]
    n = (8 + 2 * pad - k) // stride + 1
    body.append(linear(3 * n * n, 4))
    check_exact(tmp_path, Seq(body), (1, 8, 8))


def test_negative_batchnorm_before_maxpool_is_folded(tmp_path):
    """conv -> BN (negative gammas) -> maxpool -> relu-quant: channels get negated."""
    body = [conv(1, 4, 3, pad=1), nn.BatchNorm2d(4), nn.MaxPool2d(2), relu(4), nn.Flatten(),
            linear(64, 3)]
    module = randomize(Seq(body), 3)
    with __import__("torch").no_grad():
        module.body[1].weight[:2] = -module.body[1].weight[:2].abs()
    path = export(module, (1, 8, 8), tmp_path / "m.onnx")
    model = compile_onnx(path)
    x = inputs((1, 8, 8), 16)
    np.testing.assert_array_equal(
        Golden(model).run_int(model.input.quantize(x)),
        QonnxExecutor(model, source=path).run_int(model.input.quantize(x)))


@pytest.mark.parametrize("k,stride,rounding", [(2, 2, "floor"), (3, 3, "floor"), (2, 1, "round")])
def test_trunc_avgpool(tmp_path, k, stride, rounding):
    pool = qnn.TruncAvgPool2d(k, stride=stride, bit_width=4, float_to_int_impl_type=rounding)
    n = (9 - k) // stride + 1
    body = [conv(1, 3, 3, pad=1), relu(4), pool, nn.Flatten(), linear(3 * n * n, 4)]
    check_exact(tmp_path, Seq(body), (1, 9, 9))


def test_global_average_pool_and_residual(tmp_path):
    check_exact(tmp_path, Residual(), (1, 8, 8))


@pytest.mark.parametrize("B", [1, 2, 4])
def test_branches(tmp_path, B):
    model, _, _ = check_exact(tmp_path, Branches(B), (1, 8, 8))
    assert len(model.branches) == B
    # the merge is concatenation (when there is more than one branch), then the classifier
    assert [l.op for l in model.merge.layers] == (["concat"] if B > 1 else []) + ["dense"]
    # branch outputs are low-bit activations, not accumulators
    for b in model.branches:
        assert model.tensors[b.output].bits <= 4


@pytest.mark.parametrize("module,shape", [(lambda: Branches(2), (1, 8, 8)),
                                          (lambda: Residual(), (1, 8, 8))])
def test_dynamo_export(tmp_path, module, shape):
    check_exact(tmp_path, module(), shape, dynamo=True)


def test_float32_oracle_differs_only_rarely(tmp_path):
    """qonnx's own float32 executor agrees on all but a tiny fraction of values (its float32
    rounding near quantizer ties); the float64 oracle agrees on all of them."""
    module = randomize(Branches(2), 7)
    path = export(module, (1, 8, 8), tmp_path / "m.onnx")
    model = compile_onnx(path)
    x = inputs((1, 8, 8), 64, seed=1)
    yq = Golden(model).run_int(model.input.quantize(x))
    o32 = QonnxExecutor(model, source=path, precision="float32").run_int(model.input.quantize(x))
    assert np.mean(yq == o32) >= 0.99


def test_brevitas_forward_agrees(tmp_path):
    """Brevitas' own float32 forward: the same class on (almost) every image."""
    import torch
    module = randomize(Branches(4), 11)
    path = export(module, (1, 8, 8), tmp_path / "m.onnx")
    model = compile_onnx(path)
    x = inputs((1, 8, 8), 128, seed=2)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    y = Golden(model).run(x)
    assert np.mean(ref.argmax(1) == y.argmax(1)) >= 0.98
    assert np.max(np.abs(ref - y)) <= 4 * np.max(np.abs(model.dequant.scale))
