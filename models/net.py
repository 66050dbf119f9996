"""The LCP network module: independent branches, one shared branch quantizer, a merge layer.

:class:`LCPNet` is what :func:`lcp.models.build` returns. Data flow (``S`` = split)::

    x -> input_quant -> branch_0 -> branch_act --+
                     -> branch_1 -> branch_act --+-> cat(dim=1) -> merge -> logits
                     ...                         |
                     -> branch_S-1 -> branch_act +

Branches share nothing but the quantized input and the one ``branch_act`` module (so every
branch output has the same scale, which makes the concatenation exact in integers).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from brevitas.quant_tensor import QuantTensor

from .common import quant_conv2d, quant_identity, quant_relu

__all__ = ["LCPNet", "BasicBlock", "Bottleneck", "drop_branches"]


class _Residual(nn.Module):
    """The residual tail shared by :class:`BasicBlock` and :class:`Bottleneck`.

    ``relu_out(add_quant(body(x)) + add_quant(shortcut(x)))``: both operands of the add go
    through the *same* signed ``QuantIdentity`` (one scale, so the add is integer-exact), the
    shortcut is the input or ``conv1x1(stride) -> BN`` when the shape changes, and the sum is
    re-quantized by a ``QuantReLU``. Subclasses build their body first, then call
    :meth:`_tail`, and implement :meth:`body`.
    """

    def _tail(self, in_ch: int, out_ch: int, stride: int, act_bits: int, kw: dict) -> None:
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                quant_conv2d(in_ch, out_ch, 1, stride=stride, padding=0, **kw),
                nn.BatchNorm2d(out_ch))
        else:
            self.downsample = None
        self.add_quant = quant_identity(act_bits)
        self.relu_out = quant_relu(act_bits)

    def body(self, x: QuantTensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: QuantTensor) -> QuantTensor:
        out = self.body(x)
        sc = x if self.downsample is None else self.downsample(x)
        return self.relu_out(self.add_quant(out) + self.add_quant(sc))


class BasicBlock(_Residual):
    """ResNet basic block with quantization points that keep the residual add integer-exact.

    ``conv3x3(stride) -> BN -> QuantReLU -> conv3x3 -> BN`` and the residual tail of
    :class:`_Residual` (shared signed ``add_quant``, ``+``, ``QuantReLU``).

    Parameters
    ----------
    in_ch, out_ch : int
        Channels in and out.
    stride : int
        Stride of the first conv and of the downsample shortcut.
    weight_bits, act_bits : int
        Bit widths of weights and activations.
    per_channel : bool
        Per-channel weight scales.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, weight_bits: int, act_bits: int,
                 per_channel: bool):
        super().__init__()
        kw = dict(weight_bits=weight_bits, per_channel=per_channel)
        self.conv1 = quant_conv2d(in_ch, out_ch, 3, stride=stride, padding=1, **kw)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = quant_relu(act_bits)
        self.conv2 = quant_conv2d(out_ch, out_ch, 3, stride=1, padding=1, **kw)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self._tail(in_ch, out_ch, stride, act_bits, kw)

    def body(self, x: QuantTensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))


class Bottleneck(_Residual):
    """ResNet bottleneck block (ResNet-50/101/152, torchvision's "v1.5" stride placement).

    ``conv1x1 -> BN -> QuantReLU -> conv3x3(stride) -> BN -> QuantReLU -> conv1x1 -> BN`` (widths
    ``in -> mid -> mid -> out``) and the residual tail of :class:`_Residual`. The stride sits on
    the 3x3 conv, as in torchvision's ``resnet50`` (the original paper strides the first 1x1).

    Parameters
    ----------
    in_ch, mid_ch, out_ch : int
        Channels in, of the two inner convs, and out (``4 * mid`` in the unsplit ResNet-50).
    stride : int
        Stride of the 3x3 conv and of the downsample shortcut.
    weight_bits, act_bits, per_channel
        As in :class:`BasicBlock`.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int, *, weight_bits: int,
                 act_bits: int, per_channel: bool):
        super().__init__()
        kw = dict(weight_bits=weight_bits, per_channel=per_channel)
        self.conv1 = quant_conv2d(in_ch, mid_ch, 1, **kw)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        self.relu1 = quant_relu(act_bits)
        self.conv2 = quant_conv2d(mid_ch, mid_ch, 3, stride=stride, padding=1, **kw)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.relu2 = quant_relu(act_bits)
        self.conv3 = quant_conv2d(mid_ch, out_ch, 1, **kw)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self._tail(in_ch, out_ch, stride, act_bits, kw)

    def body(self, x: QuantTensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(y))


def drop_branches(y: QuantTensor, split: int, p: float, generator=None) -> QuantTensor:
    """Zero whole branch outputs per sample, never all of them, and rescale the kept ones.

    ``y`` is the concatenation ``(N, split * w)`` of ``split`` equal-width branch outputs. Each
    branch is kept with probability ``1 - p``; a sample that would lose every branch keeps one
    at random. Kept branches are multiplied by ``split / kept``, so the merge input keeps its sum.
    The result keeps ``y``'s quantization metadata (the values leave the integer grid: training
    only).
    """
    n, f = y.shape
    keep = (torch.rand(n, split, generator=generator, device=y.value.device) >= p).float()
    none = keep.sum(1) == 0
    if none.any():
        pick = torch.randint(split, (int(none.sum()),), generator=generator,
                             device=keep.device)
        keep[none.nonzero(as_tuple=True)[0], pick] = 1.0
    factor = keep * (split / keep.sum(1, keepdim=True))
    factor = factor.repeat_interleave(f // split, dim=1)
    return y.set(value=y.value * factor)


class LCPNet(nn.Module):
    """An LCP network: ``split`` independent branches and a merge.

    Members
    -------
    input_quant : QuantIdentity
        Unsigned 8 bit, scale 1/255; the first op.
    branches : nn.ModuleList
        ``split`` branches; each maps the quantized input to its last hidden layer's output
        (float, before ``branch_act``).
    branch_act : QuantReLU
        One instance applied to every branch output (shared scale).
    merge : QuantLinear
        The classifier on the concatenated branch outputs; its output (logits) is not quantized.
    arch, split, widen, weight_bits, act_bits, per_channel, num_classes, in_shape : config
        As given to :func:`lcp.models.build`.
    branch_widths : list of int
        Width of every hidden layer of one branch, in order (conv channels, depthwise convs
        included; FC features; the output of every residual block).
    branch_dropout : float
        Probability of dropping a branch output per sample in training (0 = off).
    """

    def __init__(self, *, input_quant: nn.Module, branches: list[nn.Module], branch_act: nn.Module,
                 merge: nn.Module, config: dict):
        super().__init__()
        self.input_quant = input_quant
        self.branches = nn.ModuleList(branches)
        self.branch_act = branch_act
        self.merge = merge
        self.arch = config["arch"]
        self.split = config["split"]
        self.widen = config["widen"]
        self.weight_bits = config["weight_bits"]
        self.act_bits = config["act_bits"]
        self.per_channel = config["per_channel"]
        self.num_classes = config["num_classes"]
        self.in_shape = tuple(config["in_shape"])
        self.branch_widths = list(config["branch_widths"])
        self.branch_dropout = float(config.get("branch_dropout", 0.0))

    def config(self) -> dict:
        """The build configuration as a JSON-able dict (``build(**cfg)`` rebuilds the net)."""
        return {
            "arch": self.arch, "split": self.split, "widen": self.widen,
            "weight_bits": self.weight_bits, "act_bits": self.act_bits,
            "per_channel": self.per_channel, "num_classes": self.num_classes,
            "in_shape": list(self.in_shape), "branch_dropout": self.branch_dropout,
        }

    def branch_forward(self, i: int, xq: QuantTensor) -> QuantTensor:
        """Output of branch ``i`` after the shared ``branch_act`` for the quantized input ``xq``
        (the output of :attr:`input_quant`)."""
        return self.branch_act(self.branches[i](xq))

    def features(self, x: torch.Tensor) -> QuantTensor:
        """Merge input: the concatenated branch outputs, ``(N, split * branch_out)``."""
        xq = self.input_quant(x)
        outs = [self.branch_forward(i, xq) for i in range(self.split)]
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for images ``x`` in [0, 1] of shape ``(N, *in_shape)``."""
        y = self.features(x)
        if self.training and self.branch_dropout > 0 and self.split > 1:
            y = drop_branches(y, self.split, self.branch_dropout)
        return self.merge(y)
