"""Per-op sweep through ``--backend sim``: the compiler's Brevitas test networks (one op or
pattern each, :mod:`tests.compiler.nets`) exported, compiled, built as LCP cores and simulated in
Verilator; integers equal to golden bit for bit (slow: one Verilator build per network)."""

import numpy as np
import pytest
import torch.nn as nn

from lcp import compile_onnx
from lcp.golden import Golden
from lcp.hw.sim import SimExecutor

from tests.compiler.nets import Branches, Residual, Seq, conv, export, inputs, linear, qid
from tests.compiler.nets import randomize, relu
from tests.op_cases import CONV_CASES

pytestmark = pytest.mark.slow


def run(tmp_path, module, in_shape, *, signed=False, n=4, seed=0):
    path = export(randomize(module, seed), in_shape, tmp_path / "m.onnx")
    model = compile_onnx(path)
    xq = model.input.quantize(inputs(in_shape, n, signed, seed))
    with SimExecutor(model) as ex:
        y = ex.run_int(xq)
    np.testing.assert_array_equal(y, Golden(model).run_int(xq))
    return model


@pytest.mark.parametrize("k,stride,pad,wbits,abits,pc,signed,bn", CONV_CASES)
def test_conv(tmp_path, k, stride, pad, wbits, abits, pc, signed, bn):
    body = [conv(2, 5, k, stride=stride, pad=pad, wbits=wbits, per_channel=pc)]
    if bn:
        body.append(nn.BatchNorm2d(5))
    body += [relu(abits), nn.Flatten(), linear(5 * ((9 + 2 * pad - k) // stride + 1) ** 2, 4,
                                               wbits=wbits, per_channel=pc)]
    run(tmp_path, Seq(body, signed_input=signed), (2, 9, 9), signed=signed)


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_bit_widths(tmp_path, bits):
    body = [conv(1, 4, 3, pad=1, wbits=bits), relu(bits), nn.MaxPool2d(2), nn.Flatten(),
            linear(64, 8, wbits=bits, per_channel=True), relu(bits), linear(8, 3, wbits=bits)]
    run(tmp_path, Seq(body), (1, 8, 8))


def test_maxpool_padded_and_signed_mlp(tmp_path):
    body = [conv(1, 3, 3, pad=1), relu(4), nn.MaxPool2d(3, 2, 1), nn.Flatten(),
            linear(3 * 16, 6, per_channel=True), qid(4), linear(6, 4, quant_bias=False)]
    run(tmp_path, Seq(body), (1, 8, 8))


def test_trunc_avgpool(tmp_path):
    import brevitas.nn as qnn
    pool = qnn.TruncAvgPool2d(2, stride=1, bit_width=4, float_to_int_impl_type="round")
    body = [conv(1, 3, 3, pad=1), relu(4), pool, nn.Flatten(), linear(3 * 64, 4)]
    run(tmp_path, Seq(body), (1, 9, 9))


def test_global_average_pool_and_residual(tmp_path):
    run(tmp_path, Residual(), (1, 8, 8))


@pytest.mark.parametrize("B", [1, 4])
def test_branches(tmp_path, B):
    model = run(tmp_path, Branches(B), (1, 8, 8))
    assert len(model.branches) == B
