"""Quantizers and quantized layer makers, defined once for every model of the zoo.

Every model in :mod:`lcp.models` is built only from the makers below, in the manner of Brevitas'
``brevitas_examples/bnn_pynq/models/common.py``. The quantizers are Brevitas injectors whose names
spell their meaning; the bit width is chosen per call (2 to 8 bits).

Contracts
---------
- Weights: signed, narrow range (``-(2**(b-1)-1) .. 2**(b-1)-1``), float scale computed from the
  absolute maximum of the weight tensor, per tensor (:class:`WeightPerTensorFloat`) or per output
  channel (:class:`WeightPerChannelFloat`).
- Bias: :class:`~brevitas.quant.Int32Bias`, 32-bit signed with scale = input scale x weight scale,
  so every conv/linear must receive a ``QuantTensor`` (every activation maker returns one).
- Activations: :class:`UnsignedActPerTensorFloat` (``QuantReLU``, ``0 .. 2**b-1``) and
  :class:`SignedActPerTensorFloat` (``QuantIdentity``, ``-2**(b-1) .. 2**(b-1)-1``), per-tensor
  float scale initialized from the 99.999th percentile of the first training batches, then learned.
- Model input: :class:`Uint8InputFixedScale`, unsigned 8 bit with the constant scale 1/255, so an
  image in [0, 1] whose pixel is ``k/255`` maps to the integer ``k``.
"""

from __future__ import annotations

import torch.nn as nn
import brevitas.nn as qnn
from brevitas.core.restrict_val import RestrictValueType
from brevitas.core.scaling import ScalingImplType
from brevitas.inject.enum import ScalingPerOutputType
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat
from brevitas.quant import Int8WeightPerTensorFloat, Int32Bias, TruncTo8bit
from brevitas.quant import Uint8ActPerTensorFloat
from brevitas.quant.base import UintQuant
from brevitas.quant.solver import ActQuantSolver

__all__ = [
    "MIN_BITS", "MAX_BITS", "INPUT_BITS", "INPUT_SCALE",
    "WeightPerTensorFloat", "WeightPerChannelFloat", "UnsignedActPerTensorFloat",
    "SignedActPerTensorFloat", "Uint8InputFixedScale", "BiasInt32",
    "check_bit_width", "weight_quant", "unsigned_act_quant", "signed_act_quant",
    "input_quant", "quant_conv2d", "quant_linear", "quant_relu", "quant_identity",
    "global_avg_pool",
]

MIN_BITS = 2
MAX_BITS = 8
#: Bit width and scale of the model input quantizer (pixel ``k/255`` -> integer ``k``).
INPUT_BITS = 8
INPUT_SCALE = 1.0 / 255.0


class WeightPerTensorFloat(Int8WeightPerTensorFloat):
    """Signed narrow-range weights, one float scale per tensor (max-abs statistics)."""


class WeightPerChannelFloat(Int8WeightPerChannelFloat):
    """Signed narrow-range weights, one float scale per output channel (max-abs statistics)."""


class UnsignedActPerTensorFloat(Uint8ActPerTensorFloat):
    """Unsigned activations (after ReLU), learned per-tensor float scale."""


class SignedActPerTensorFloat(Int8ActPerTensorFloat):
    """Signed activations (residual operands), learned per-tensor float scale."""


class Uint8InputFixedScale(UintQuant, ActQuantSolver):
    """Unsigned 8-bit input with the constant scale 1/255 and zero point 0.

    The quantization threshold ``max_val`` is 1.0, divided by ``2**8 - 1`` integer levels.
    """

    scaling_impl_type = ScalingImplType.CONST
    restrict_scaling_type = RestrictValueType.FP
    scaling_per_output_type = ScalingPerOutputType.TENSOR
    bit_width = INPUT_BITS
    max_val = 1.0


#: Bias quantizer of every conv/linear: 32 bit, scale = input scale x weight scale.
BiasInt32 = Int32Bias


def check_bit_width(bits) -> int:
    """Return ``bits`` if it is an int in ``[MIN_BITS, MAX_BITS]``.

    Raises
    ------
    ValueError
        naming the rejected value.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bit width must be an int in {MIN_BITS}..{MAX_BITS}, not {bits!r}")
    return bits


def weight_quant(bits: int, per_channel: bool = False):
    """Weight quantizer with ``bits`` bits, per channel or per tensor."""
    base = WeightPerChannelFloat if per_channel else WeightPerTensorFloat
    return base.let(bit_width=check_bit_width(bits))


def unsigned_act_quant(bits: int):
    """Unsigned activation quantizer (for ``QuantReLU``) with ``bits`` bits."""
    return UnsignedActPerTensorFloat.let(bit_width=check_bit_width(bits))


def signed_act_quant(bits: int):
    """Signed activation quantizer (for ``QuantIdentity``) with ``bits`` bits."""
    return SignedActPerTensorFloat.let(bit_width=check_bit_width(bits))


def input_quant() -> qnn.QuantIdentity:
    """The model's first op: ``QuantIdentity`` to unsigned 8 bit, scale 1/255."""
    return qnn.QuantIdentity(act_quant=Uint8InputFixedScale, return_quant_tensor=True)


def quant_conv2d(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 groups: int = 1, weight_bits: int,
                 per_channel: bool = False) -> qnn.QuantConv2d:
    """Conv with quantized weights and an Int32 bias; returns a float tensor.

    ``groups`` > 1 is a grouped convolution (``groups == in_ch == out_ch``: depthwise)."""
    return qnn.QuantConv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups,
                           bias=True,
                           weight_quant=weight_quant(weight_bits, per_channel),
                           bias_quant=BiasInt32, return_quant_tensor=False)


def quant_linear(in_f: int, out_f: int, *, weight_bits: int,
                 per_channel: bool = False) -> qnn.QuantLinear:
    """Fully connected layer with quantized weights and an Int32 bias; returns a float tensor."""
    return qnn.QuantLinear(in_f, out_f, bias=True,
                           weight_quant=weight_quant(weight_bits, per_channel),
                           bias_quant=BiasInt32, return_quant_tensor=False)


def quant_relu(bits: int) -> qnn.QuantReLU:
    """ReLU followed by unsigned ``bits``-bit quantization; returns a ``QuantTensor``."""
    return qnn.QuantReLU(act_quant=unsigned_act_quant(bits), return_quant_tensor=True)


def quant_identity(bits: int) -> qnn.QuantIdentity:
    """Signed ``bits``-bit quantization; returns a ``QuantTensor``."""
    return qnn.QuantIdentity(act_quant=signed_act_quant(bits), return_quant_tensor=True)


def global_avg_pool() -> nn.Module:
    """Global average pool on a ``QuantTensor``: sum, then truncation to 8 bit (a shift)."""
    return qnn.TruncAdaptiveAvgPool2d(1, trunc_quant=TruncTo8bit, return_quant_tensor=True)
