"""Small Brevitas networks for the compiler tests: one op (or one pattern) each."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import brevitas.nn as qnn
from brevitas.quant import (Int8ActPerTensorFloat, Int8WeightPerChannelFloat,
                            Int8WeightPerTensorFloat, Int32Bias, Uint8ActPerTensorFloat)


def _value(x):
    """A plain tensor from a QuantTensor (one ONNX output)."""
    return getattr(x, "value", x)


def wq(bits: int, per_channel: bool):
    base = Int8WeightPerChannelFloat if per_channel else Int8WeightPerTensorFloat
    return base.let(bit_width=bits)


def input_quant(signed: bool, bits: int = 8):
    if signed:
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits,
                                 return_quant_tensor=True)
    return qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=bits,
                             return_quant_tensor=True)


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random weights, and batch-norm statistics far from identity (some negative gammas)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.2)
    return module.eval()


class Seq(nn.Module):
    """input quantizer -> body; the body sees a QuantTensor."""

    def __init__(self, body: list[nn.Module], signed_input=False, in_bits=8):
        super().__init__()
        self.inp = input_quant(signed_input, in_bits)
        self.body = nn.ModuleList(body)

    def forward(self, x):
        x = self.inp(x)
        for m in self.body:
            x = torch.flatten(x, 1) if isinstance(m, nn.Flatten) else m(x)
        return _value(x)


def conv(cin, cout, k, *, stride=1, pad=0, wbits=4, per_channel=False, bias=True):
    return qnn.QuantConv2d(cin, cout, k, stride=stride, padding=pad, bias=bias,
                           weight_quant=wq(wbits, per_channel),
                           bias_quant=Int32Bias if bias else None, return_quant_tensor=True)


def linear(fin, fout, *, wbits=4, per_channel=False, bias=True, quant_bias=True):
    return qnn.QuantLinear(fin, fout, bias=bias, weight_quant=wq(wbits, per_channel),
                           bias_quant=Int32Bias if (bias and quant_bias) else None,
                           return_quant_tensor=True)


def relu(bits):
    return qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)


def qid(bits):
    return qnn.QuantIdentity(bit_width=bits, return_quant_tensor=True)


class Branches(nn.Module):
    """LCP pattern: B independent branches, one shared output quantizer, concat, merge."""

    def __init__(self, B, cin=1, width=3, classes=5, bits=4, hw=8):
        super().__init__()
        self.inp = input_quant(False)
        self.branches = nn.ModuleList([
            nn.Sequential(conv(cin, width, 3, pad=1, wbits=bits), relu(bits), nn.MaxPool2d(2))
            for _ in range(B)])
        self.fcs = nn.ModuleList([linear(width * (hw // 2) ** 2, 6, wbits=bits)
                                  for _ in range(B)])
        self.out_act = relu(bits)
        self.merge = linear(6 * B, classes, wbits=bits)

    def forward(self, x):
        x = self.inp(x)
        feats = [self.out_act(fc(torch.flatten(b(x), 1)))
                 for b, fc in zip(self.branches, self.fcs)]
        return _value(self.merge(torch.cat(feats, dim=1)))


class Residual(nn.Module):
    """conv-bn-relu, conv-bn, shared quantizer on both add operands, relu, GAP, linear."""

    def __init__(self, c=4, bits=4):
        super().__init__()
        self.inp = input_quant(False)
        self.c0 = conv(1, c, 3, pad=1, wbits=bits)
        self.r0 = relu(bits)
        self.c1 = conv(c, c, 3, pad=1, wbits=bits, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.r1 = relu(bits)
        self.c2 = conv(c, c, 3, pad=1, wbits=bits, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.shared = qid(bits)
        self.r2 = relu(bits)
        self.gap = qnn.TruncAdaptiveAvgPool2d((1, 1), bit_width=bits)
        self.fc = linear(c, 3, wbits=bits)

    def forward(self, x):
        x = self.r0(self.c0(self.inp(x)))
        y = self.r1(self.bn1(self.c1(x)))
        y = self.bn2(self.c2(y))
        z = self.r2(self.shared(y) + self.shared(x))
        return _value(self.fc(torch.flatten(self.gap(z), 1)))


def export(module: nn.Module, in_shape, path: Path, dynamo=False) -> Path:
    from brevitas.export import export_qonnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(module.eval(), torch.rand(1, *in_shape), export_path=str(path),
                     dynamo=dynamo)
    return path


def inputs(in_shape, n=32, signed=False, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, *in_shape), dtype=np.float32)
    return (2 * x - 1).astype(np.float32) if signed else x
