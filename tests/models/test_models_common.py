"""Quantizers of lcp.models.common: bit-width checks, integer ranges, input and bias scales."""

import re

import pytest
import torch

from lcp.models import build, check_bit_width
from lcp.models.common import (INPUT_SCALE, input_quant, quant_conv2d, quant_identity,
                               quant_linear, quant_relu)


@pytest.mark.parametrize("bad", [0, 1, 9, 16, -4, 4.0, "4", True, None])
def test_bad_bit_width_raises_naming_value(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        check_bit_width(bad)


@pytest.mark.parametrize("kw", [dict(weight_bits=9), dict(act_bits=1), dict(weight_bits=0)])
def test_build_rejects_bad_bits(kw):
    with pytest.raises(ValueError, match="bit width"):
        build("lenet_fc", **kw)


@pytest.mark.parametrize("bits", range(2, 9))
def test_weight_quant_is_signed_narrow_per_tensor(bits):
    conv = quant_conv2d(3, 5, 3, weight_bits=bits)
    qw = conv.quant_weight()
    q = qw.int()
    top = 2 ** (bits - 1) - 1
    assert q.abs().max().item() == top           # max-abs scaling uses the full narrow range
    assert q.min().item() >= -top                 # narrow: never -2**(b-1)
    assert qw.scale.numel() == 1 and qw.signed
    assert torch.allclose(q * qw.scale, qw.value)


def test_weight_quant_per_channel_has_one_scale_per_output():
    fc = quant_linear(16, 6, weight_bits=3, per_channel=True)
    qw = fc.quant_weight()
    assert qw.scale.shape == (6, 1)
    assert (qw.int().abs().amax(dim=1) == 3).all()   # every row reaches +-3 with its own scale


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_relu_and_identity_ranges(bits):
    x = torch.linspace(-5, 5, 1001)
    relu, ident = quant_relu(bits), quant_identity(bits)
    relu.train(), ident.train()
    r, i = relu(x), ident(x)
    assert not r.signed and r.int().min() >= 0 and r.int().max() == 2 ** bits - 1
    assert i.signed and i.int().min() == -2 ** (bits - 1) and i.int().max() <= 2 ** (bits - 1) - 1
    assert r.bit_width.item() == bits and i.bit_width.item() == bits


def test_input_quant_maps_k_over_255_to_k():
    q = input_quant()
    for mode in (q.train, q.eval):
        mode()
        k = torch.arange(256.0)
        y = q(k / 255.0)
        assert torch.equal(y.int(), k.to(y.int().dtype))
        assert y.scale.item() == pytest.approx(INPUT_SCALE, rel=1e-7)
        assert not y.signed and y.bit_width.item() == 8 and y.zero_point.item() == 0
    assert q(torch.tensor([-0.5, 1.7])).int().tolist() == [0, 255]   # clipped to the grid


def test_bias_is_int32_with_input_times_weight_scale():
    fc = quant_linear(8, 4, weight_bits=4)
    xq = quant_relu(4)(torch.rand(2, 8) * 3)
    wq = fc.quant_weight()
    bq = fc.bias_quant(fc.bias, xq, wq)
    assert bq.bit_width.item() == 32
    assert bq.scale.item() == pytest.approx((xq.scale * wq.scale).item(), rel=1e-6)
    assert torch.allclose(bq.int() * bq.scale, bq.value)
    # the float forward is the integer computation times input scale x weight scale
    acc = xq.int().double() @ wq.int().double().T + bq.int().double()
    assert torch.allclose(fc(xq).double(), acc * (xq.scale * wq.scale).double(), atol=1e-5)
