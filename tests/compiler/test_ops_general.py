"""Per-op sweeps of what Brevitas users write beyond our own zoo: golden == the float64 qonnx
oracle, integer for integer (grouped and depthwise convolutions, 1-D convolution and pooling,
1-bit bipolar layers, bit widths 1..8, concatenations and sums of differently scaled tensors,
signed activations, float ops between quantizers, float pre-processing of the input, and a
model that reads its float input directly under a declared input format)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import brevitas.nn as qnn
from brevitas.quant import (Int8ActPerTensorFloat, SignedBinaryActPerTensorConst,
                            SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat)

from lcp import FrontendError, compile_onnx
from lcp.golden import Golden
from lcp.oracle import QonnxExecutor

from tests.compiler.nets import Seq, _value, conv, export, inputs, linear, qid, randomize, relu
from tests.compiler.test_ops_vs_oracle import check_exact


def dwconv(c, k, *, mult=1, stride=1, pad=0, wbits=4, per_channel=True, groups=None):
    from tests.compiler.nets import wq
    return qnn.QuantConv2d(c, c * mult, k, stride=stride, padding=pad, groups=groups or c,
                           bias=False, weight_quant=wq(wbits, per_channel),
                           return_quant_tensor=True)


@pytest.mark.parametrize("cin,cout,groups,k,stride,pad,wbits,abits", [
    (4, 4, 4, 3, 1, 1, 4, 4),      # depthwise
    (4, 8, 4, 3, 2, 1, 3, 5),      # depthwise, channel multiplier 2, strided
    (6, 6, 2, 3, 1, 0, 4, 4),      # grouped
    (6, 9, 3, 2, 2, 1, 8, 8),      # grouped, 3 groups of 2 -> 3
    (8, 8, 8, 5, 1, 2, 2, 2),      # depthwise 5x5 at 2 bits
])
def test_grouped_and_depthwise_conv(tmp_path, cin, cout, groups, k, stride, pad, wbits, abits):
    from tests.compiler.nets import wq
    n = (8 + 2 * pad - k) // stride + 1
    body = [conv(1, cin, 3, pad=1), relu(abits),
            qnn.QuantConv2d(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=True,
                            weight_quant=wq(wbits, True), return_quant_tensor=True),
            nn.BatchNorm2d(cout), relu(abits), nn.Flatten(), linear(cout * n * n, 4)]
    model, _, _ = check_exact(tmp_path, Seq(body), (1, 8, 8))
    g = [l for l in model.layers() if l.op == "conv"][1]
    assert g.attrs["groups"] == groups and g.weight.shape == (cout, cin // groups, k, k)


def test_depthwise_separable_block_with_per_channel_activation_scales(tmp_path):
    """MobileNet's pattern: per-channel activation scales feed a depthwise conv (each output
    channel keeps its own input's scale: no alignment), then a pointwise conv."""
    act = lambda c: qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=4,
                                  per_channel_broadcastable_shape=(1, c, 1, 1),
                                  scaling_stats_permute_dims=(1, 0, 2, 3),
                                  scaling_per_output_channel=True, return_quant_tensor=True)
    body = [conv(1, 6, 3, pad=1), nn.BatchNorm2d(6), act(6), dwconv(6, 3, pad=1),
            nn.BatchNorm2d(6), relu(4), conv(6, 8, 1), nn.BatchNorm2d(8), relu(4),
            nn.Flatten(), linear(8 * 64, 4)]
    module = Seq(body)
    module.train()
    with torch.no_grad():                  # per-channel scales that really differ
        module(torch.rand(16, 1, 8, 8))
    model, _, _ = check_exact(tmp_path, module, (1, 8, 8))
    dw = [l for l in model.layers() if l.op == "conv"][1]
    assert dw.attrs["groups"] == 6 and dw.attrs["weight_bits"] == 4


class Conv1dNet(nn.Module):
    def __init__(self, k, stride, pad, pool, bits):
        super().__init__()
        from tests.compiler.nets import input_quant, wq
        self.inp = input_quant(True)
        self.c0 = qnn.QuantConv1d(2, 4, k, stride=stride, padding=pad, weight_quant=wq(bits, True),
                                  return_quant_tensor=True)
        self.bn = nn.BatchNorm1d(4)
        self.r0 = relu(bits)
        self.pool = nn.MaxPool1d(pool) if pool else nn.Identity()
        self.c1 = qnn.QuantConv1d(4, 4, 3, padding=1, groups=4, weight_quant=wq(bits, False),
                                  return_quant_tensor=True)
        self.r1 = relu(bits)
        L = (32 + 2 * pad - k) // stride + 1
        L = L // pool if pool else L
        self.fc = linear(4 * L, 3, wbits=bits)

    def forward(self, x):
        x = self.r0(self.bn(self.c0(self.inp(x))))
        x = self.r1(self.c1(self.pool(x)))
        return _value(self.fc(torch.flatten(x, 1)))


@pytest.mark.parametrize("k,stride,pad,pool,bits", [(3, 1, 1, 2, 4), (5, 2, 2, 0, 3),
                                                    (4, 1, 0, 3, 6)])
def test_conv1d_and_maxpool1d(tmp_path, k, stride, pad, pool, bits):
    model, _, _ = check_exact(tmp_path, Conv1dNet(k, stride, pad, pool, bits), (2, 32),
                              signed=True)
    assert model.input.shape == (2, 32)
    assert all(len(l.attrs["kernel"]) == 1 for l in model.layers() if "kernel" in l.attrs)


def _binary(net_bits):
    wbits, abits = net_bits
    wq = dict(weight_quant=SignedBinaryWeightPerTensorConst) if wbits == 1 else \
        dict(weight_bit_width=wbits)
    act = (lambda: qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst,
                                     return_quant_tensor=True)) if abits == 1 else \
        (lambda: qnn.QuantIdentity(bit_width=abits, return_quant_tensor=True))
    return wq, act


@pytest.mark.parametrize("wbits,abits", [(1, 1), (1, 2), (2, 1), (1, 4)])
def test_bipolar_layers(tmp_path, wbits, abits):
    """FINN's binary networks: BipolarQuant weights and/or activations (-1/+1)."""
    wq, act = _binary((wbits, abits))
    body = [qnn.QuantConv2d(1, 6, 3, bias=False, return_quant_tensor=True, **wq),
            nn.BatchNorm2d(6), act(), nn.MaxPool2d(2),
            qnn.QuantConv2d(6, 6, 3, bias=False, return_quant_tensor=True, **wq),
            nn.BatchNorm2d(6), act(), nn.Flatten(),
            qnn.QuantLinear(6 * 1 * 1, 8, bias=False, return_quant_tensor=True, **wq),
            nn.BatchNorm1d(8), act(),
            qnn.QuantLinear(8, 4, bias=False, return_quant_tensor=True, **wq)]
    model, _, _ = check_exact(tmp_path, Seq(body, signed_input=True), (1, 8, 8), signed=True,
                              n=48)
    w = [l for l in model.layers() if l.opdef.weighted]
    if wbits == 1:
        assert all(l.attrs["weight_format"] == "bipolar" for l in w)
    if abits == 1:
        acts = [model.tensors[l.output] for l in model.layers() if l.op == "threshold"]
        assert acts and all(t.bipolar and t.wire_bits == 1 for t in acts)


@pytest.mark.parametrize("bits", [1, 2, 5, 8])
def test_activation_bit_widths_one_to_eight(tmp_path, bits):
    """Unsigned activations of 1..8 bits (a 1-bit QuantReLU is 0/1)."""
    body = [conv(1, 4, 3, pad=1, wbits=max(bits, 2)), relu(bits), nn.Flatten(),
            linear(4 * 36, 3, wbits=max(bits, 2))]
    check_exact(tmp_path, Seq(body), (1, 6, 6))


class ScaledConcat(nn.Module):
    """LCP branches that each end in their own QuantReLU, concatenated; ``requant`` puts one
    QuantIdentity after the concatenation (the merge's requantization), else the merge reads
    the per-channel scales directly."""

    def __init__(self, B=3, requant=True, bits=4):
        super().__init__()
        from tests.compiler.nets import input_quant
        self.inp = input_quant(False)
        self.branches = nn.ModuleList([
            nn.Sequential(conv(1, 3, 3, pad=1, wbits=bits), relu(bits), nn.MaxPool2d(2),
                          nn.Flatten(), linear(3 * 16, 4, wbits=bits), relu(bits + i % 2))
            for i in range(B)])
        self.requant = relu(bits) if requant else None
        self.merge = linear(4 * B, 5, wbits=bits) if requant else \
            qnn.QuantLinear(4 * B, 5, bias=True, weight_bit_width=bits)

    def forward(self, x):
        x = self.inp(x)
        y = torch.cat([_value(b(x)) for b in self.branches], dim=1)
        if self.requant is not None:
            y = self.requant(y)
        return _value(self.merge(y))


def _calibrated(module, shape):
    module = randomize(module, 3)
    module.train()
    with torch.no_grad():
        for s in range(3):
            module(torch.rand(16, *shape, generator=torch.Generator().manual_seed(s)))
    return module.eval()


def test_concat_of_differently_scaled_branches_then_requantized(tmp_path):
    net = _calibrated(ScaledConcat(3, requant=True), (1, 8, 8))
    scales = {float(b[-1].act_quant.scale()) for b in net.branches}
    assert len(scales) == 3, "the branches' quantizers must differ for this test to mean much"
    path = export(net, (1, 8, 8), tmp_path / "m.onnx")
    model = compile_onnx(path)
    x = inputs((1, 8, 8), 32)
    np.testing.assert_array_equal(Golden(model).run_int(model.input.quantize(x)),
                                  QonnxExecutor(model, source=path).run_int(model.input.quantize(x)))
    # each branch ends in ONE requantization straight to the merge quantizer's integers, so a
    # branch device sends its own low-bit integers
    assert len(model.branches) == 3
    for b in model.branches:
        last = b.layers[-1]
        assert last.op == "threshold" and b.layers[-2].op == "dense"
        assert model.tensors[b.output].bits <= 4


def test_concat_without_requant_carries_per_channel_scales(tmp_path):
    net = _calibrated(ScaledConcat(2, requant=False), (1, 8, 8))
    path = export(net, (1, 8, 8), tmp_path / "m.onnx")
    model = compile_onnx(path)
    x = inputs((1, 8, 8), 32)
    yq = Golden(model).run_int(model.input.quantize(x))
    np.testing.assert_array_equal(yq, QonnxExecutor(model, source=path).run_int(
        model.input.quantize(x)))
    assert len(np.unique(yq)) > 1
    merge = model.merge.layers[-1]
    assert merge.op == "dense" and merge.attrs["weight_bits"] > 4   # exact per-channel alignment


class ScaledAdd(nn.Module):
    """A residual sum of two tensors from two different quantizers (signed and unsigned)."""

    def __init__(self, bits=4, signed_b=False):
        super().__init__()
        from tests.compiler.nets import input_quant
        self.inp = input_quant(False)
        self.c0 = conv(1, 4, 3, pad=1, wbits=bits)
        self.qa = relu(bits)
        self.c1 = conv(4, 4, 3, pad=1, wbits=bits)
        self.qb = qid(bits + 1) if signed_b else relu(bits + 2)
        self.out = relu(bits)
        self.fc = linear(4 * 36, 3, wbits=bits)

    def forward(self, x):
        a = self.qa(self.c0(self.inp(x)))
        b = self.qb(self.c1(a))
        return _value(self.fc(torch.flatten(self.out(a.value + b.value), 1)))


@pytest.mark.parametrize("signed_b", [False, True])
def test_add_of_differently_scaled_operands(tmp_path, signed_b):
    net = _calibrated(ScaledAdd(signed_b=signed_b), (1, 6, 6))
    path = export(net, (1, 6, 6), tmp_path / "m.onnx")
    model = compile_onnx(path)
    add = next(l for l in model.layers() if l.op == "add")
    assert add.attrs["mul"] != (1, 1)
    x = inputs((1, 6, 6), 32)
    yq = Golden(model).run_int(model.input.quantize(x))
    np.testing.assert_array_equal(yq, QonnxExecutor(model, source=path).run_int(
        model.input.quantize(x)))
    assert len(np.unique(yq)) > 1


@pytest.mark.parametrize("act", ["identity", "hardtanh"])
def test_signed_activations_between_layers(tmp_path, act):
    a = qid(4) if act == "identity" else qnn.QuantHardTanh(bit_width=3, max_val=1.0, min_val=-1.0,
                                                           return_quant_tensor=True)
    body = [conv(1, 4, 3, pad=1), nn.BatchNorm2d(4), a, nn.MaxPool2d(2),
            conv(4, 4, 3, pad=1), relu(4), nn.Flatten(), linear(4 * 16, 3)]
    model, _, _ = check_exact(tmp_path, Seq(body), (1, 8, 8))
    assert model.tensors[model.branches[0].layers[1].output].signed


class FloatOps(nn.Module):
    """Float elementwise ops with constants: on the input before its quantizer (bnn_pynq's
    2x - 1), between quantizers, and Brevitas' TensorNorm after the last layer."""

    def __init__(self):
        super().__init__()
        from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm
        self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8,
                                     return_quant_tensor=True)
        self.c0 = conv(1, 4, 3, pad=1)
        self.q0 = relu(4)
        self.q1 = qid(4)
        self.fc = linear(4 * 36, 3)
        self.norm = TensorNorm()
        with torch.no_grad():
            self.norm.weight.fill_(1.7)
            self.norm.bias.fill_(-0.3)
            self.norm.running_mean.fill_(0.2)
            self.norm.running_var.fill_(2.5)

    def forward(self, x):
        x = self.inp(2.0 * x - 1.0)
        y = self.q0(self.c0(x)).value
        y = self.q1(y * 0.75 - 0.1)            # float ops between two quantizers
        return self.norm(_value(self.fc(torch.flatten(y, 1))))


def test_float_ops_between_quantizers_and_tensornorm(tmp_path):
    model, _, _ = check_exact(tmp_path, _calibrated(FloatOps(), (1, 6, 6)), (1, 6, 6))
    assert [op for op, _ in model.input.pre] == ["mul", "sub"]


class FloatInput(nn.Module):
    """MobileNet's first layer: a quantized conv reads the float image (no input quantizer)."""

    def __init__(self):
        super().__init__()
        from tests.compiler.nets import wq
        self.c0 = qnn.QuantConv2d(3, 4, 3, padding=1, bias=False, weight_quant=wq(8, True))
        self.bn = nn.BatchNorm2d(4)
        self.q0 = relu(4)
        self.fc = linear(4 * 25, 3)

    def forward(self, x):
        return _value(self.fc(torch.flatten(self.q0(self.bn(self.c0(x))), 1)))


@pytest.mark.parametrize("fmt", ["uint8", "uint8:0.01", "int8:0.03125"])
def test_declared_input_format(tmp_path, fmt):
    net = _calibrated(FloatInput(), (3, 5, 5))
    path = export(net, (3, 5, 5), tmp_path / "m.onnx")
    with pytest.raises(FrontendError, match="--input-format"):
        compile_onnx(path)
    model = compile_onnx(path, input_format=fmt)
    assert model.input.format == fmt
    rng = np.random.default_rng(0)
    lo, hi = model.input.lo, model.input.hi
    k = rng.integers(lo, hi + 1, size=(32, 3, 5, 5))
    x = (k * model.input.scale).astype(np.float32)
    np.testing.assert_array_equal(model.input.quantize(x), k)
    yq = Golden(model).run_int(k)
    np.testing.assert_array_equal(yq, QonnxExecutor(model, source=path).run_int(k))
    assert len(np.unique(yq)) > 1
    off = x.copy()
    off[0, 0, 0, 0] += 0.4 * model.input.scale
    with pytest.raises(Exception, match=r"not on the declared .* grid"):
        model.input.quantize(off)
