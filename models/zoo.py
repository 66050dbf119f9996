"""The model zoo: base architectures as data, one factory that splits and widens them.

An architecture is an :class:`ArchSpec`: the input shape and a tuple of layer specs
(:class:`Conv`, :class:`MaxPool`, :class:`Dense`, :class:`Block`, :class:`GlobalAvgPool`) that
describe the base (unsplit) network up to its last hidden layer. The classifier is implicit: it is
the merge layer. :func:`build` turns a spec into an :class:`~lcp.models.net.LCPNet` of ``split``
independent branches whose widths are

    ``branch_width(base, split, widen) = ceil(base * (100 + widen) / (100 * split))``

computed in integers (so 120 / 4 at f10 is exactly 33, not 34 from float round-off). Every conv
and FC output width is scaled this way; the input channels are not.

Inside a branch every conv/FC is followed by its own ``QuantReLU`` (a conv with ``bn=True`` has a
``BatchNorm2d`` in between), except the branch's last hidden layer, which is followed by the one
``branch_act`` shared by all branches. A :class:`GlobalAvgPool` as the last layer means the shared
quantizer re-quantizes the pooled features. A flatten is inserted before the first FC.

Named entry points ``{arch}_split{S}[_f{widen}]_w{W}a{A}`` (e.g. :func:`lenet5_split4_w4a4`) exist
for every arch, ``S`` in 1, 2, 4, 8, widen 0 or 40 and bit widths 2, 4, 8; :func:`from_name` parses
any such name (any widen, any bits 2..8).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass

import torch.nn as nn

from .common import check_bit_width, global_avg_pool, input_quant, quant_conv2d, quant_linear
from .common import quant_relu
from .net import BasicBlock, LCPNet

__all__ = [
    "SPLITS", "WIDENS", "Conv", "MaxPool", "Dense", "Block", "GlobalAvgPool", "ArchSpec",
    "ARCHS", "branch_width", "build", "from_name", "model_name", "ENTRY_POINTS",
]

#: Split factors of the LCP method.
SPLITS = (1, 2, 4, 8)
#: Widening steps of the LCP method, in percent ("f10" .. "f40").
WIDENS = (0, 10, 20, 30, 40)


@dataclass(frozen=True)
class Conv:
    """2-D convolution with ``out`` channels (scaled by split/widen), square kernel."""
    out: int
    kernel: int
    stride: int = 1
    pad: int = 0
    bn: bool = False


@dataclass(frozen=True)
class MaxPool:
    """Max pool, square window; ``stride`` defaults to ``kernel``."""
    kernel: int
    stride: int | None = None


@dataclass(frozen=True)
class Dense:
    """Fully connected layer with ``out`` features (scaled by split/widen)."""
    out: int


@dataclass(frozen=True)
class Block:
    """ResNet basic block with ``out`` channels (scaled by split/widen), see
    :class:`~lcp.models.net.BasicBlock`."""
    out: int
    stride: int = 1


@dataclass(frozen=True)
class GlobalAvgPool:
    """Global average pool and flatten (only as the last layer of a branch)."""


@dataclass(frozen=True)
class ArchSpec:
    """A base architecture.

    Members
    -------
    name : str
        Key in :data:`ARCHS`.
    in_shape : tuple of int
        ``(C, H, W)`` of the input the spec is sized for.
    layers : tuple
        Layer specs up to the last hidden layer (the classifier is the merge).
    dataset : str
        The data set the architecture is sized for ("mnist", "cifar10").
    real_data : tuple of str
        Data sets shipped with this toolkit (:mod:`lcp.models.data`) that fit the architecture.
        Empty: random weights only, never report an accuracy.
    description : str
        One line on where the architecture comes from and how it was sized.
    """
    name: str
    in_shape: tuple[int, int, int]
    layers: tuple
    dataset: str
    real_data: tuple[str, ...] = ()
    description: str = ""

    @property
    def has_data(self) -> bool:
        return bool(self.real_data)


_RESNET18 = (Conv(64, 3, 1, 1, bn=True),
             Block(64), Block(64), Block(128, 2), Block(128),
             Block(256, 2), Block(256), Block(512, 2), Block(512), GlobalAvgPool())

#: The architectures, by name.
ARCHS: dict[str, ArchSpec] = {a.name: a for a in [
    ArchSpec("lenet5", (1, 28, 28),
             (Conv(6, 5, pad=2), MaxPool(2), Conv(16, 5), MaxPool(2), Dense(120), Dense(84)),
             "mnist", ("mnist",),
             "LeNet-5 on 28x28 MNIST: the first conv pads 2 (the classic 32x32 input), 400-120-84"),
    ArchSpec("lenet_fc", (1, 28, 28), (Dense(300), Dense(100)), "mnist", ("mnist", "digits"),
             "LeNet-300-100 MLP, 784-300-100; with in_shape=(1, 8, 8) it runs on sklearn digits"),
    ArchSpec("cifarnet", (3, 32, 32),
             (Conv(64, 5, pad=2), MaxPool(2), Conv(64, 5, pad=2), MaxPool(2), Dense(384),
              Dense(192)),
             "cifar10", (),
             "TensorFlow CifarNet without LRN: conv5x5 64, pool, conv5x5 64, pool, fc 384, 192"),
    ArchSpec("vgg_s", (3, 32, 32),
             (Conv(96, 3, pad=1), MaxPool(2), Conv(256, 5, pad=2), MaxPool(2),
              Conv(512, 3, pad=1), Conv(512, 3, pad=1), Conv(512, 3, pad=1), MaxPool(2),
              Dense(1024), Dense(1024)),
             "cifar10", (),
             "VGG-S (Chatfield 2014) widths 96-256-512-512-512 sized for 32x32: conv1 3x3 "
             "stride 1, no LRN, FCs 1024 instead of 4096"),
    ArchSpec("alexnet", (3, 32, 32),
             (Conv(64, 5, pad=2), MaxPool(3, 2), Conv(192, 5, pad=2), MaxPool(3, 2),
              Conv(384, 3, pad=1), Conv(256, 3, pad=1), Conv(256, 3, pad=1), MaxPool(3, 2),
              Dense(1024), Dense(1024)),
             "cifar10", (),
             "AlexNet (torchvision widths 64-192-384-256-256) sized for 32x32: 5x5 convs stride 1, "
             "3x3/2 pools, FCs 1024 instead of 4096"),
    ArchSpec("resnet18", (3, 32, 32), _RESNET18, "cifar10", (),
             "CIFAR-style ResNet-18: 3x3 stem, no max pool, 4 stages x 2 basic blocks, "
             "global average pool"),
]}


def branch_width(base: int, split: int, widen: int = 0) -> int:
    """Width of one branch's layer: ``ceil(base * (100 + widen) / (100 * split))``, exact."""
    return -(-base * (100 + widen) // (100 * split))


def _check_config(arch, split, widen, weight_bits, act_bits, num_classes):
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if isinstance(widen, bool) or not isinstance(widen, int) or widen < 0:
        raise ValueError(f"widen must be a non-negative int (percent), not {widen!r}")
    check_bit_width(weight_bits)
    check_bit_width(act_bits)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, not {num_classes!r}")


def _window(size: int, kernel: int, stride: int, pad: int, what: str) -> int:
    n = (size + 2 * pad - kernel) // stride + 1
    if n <= 0:
        raise ValueError(f"{what}: window {kernel} stride {stride} does not fit size {size}")
    return n


def _build_branch(spec: ArchSpec, in_shape, split, widen, weight_bits, act_bits, per_channel):
    """One branch (``nn.Sequential``), its hidden widths and its output width."""
    mods: list[nn.Module] = []
    widths: list[int] = []
    shape = tuple(in_shape)
    kw = dict(weight_bits=weight_bits, per_channel=per_channel)
    last = len(spec.layers) - 1
    for i, layer in enumerate(spec.layers):
        what = f"{spec.name} layer {i} {layer}"
        if isinstance(layer, Conv):
            if len(shape) != 3:
                raise ValueError(f"{what}: needs a (C, H, W) input, got {shape}")
            w = branch_width(layer.out, split, widen)
            h = _window(shape[1], layer.kernel, layer.stride, layer.pad, what)
            v = _window(shape[2], layer.kernel, layer.stride, layer.pad, what)
            mods.append(quant_conv2d(shape[0], w, layer.kernel, stride=layer.stride,
                                     padding=layer.pad, **kw))
            if layer.bn:
                mods.append(nn.BatchNorm2d(w))
            if i != last:
                mods.append(quant_relu(act_bits))
            shape = (w, h, v)
            widths.append(w)
        elif isinstance(layer, MaxPool):
            stride = layer.stride or layer.kernel
            if len(shape) != 3:
                raise ValueError(f"{what}: needs a (C, H, W) input, got {shape}")
            mods.append(nn.MaxPool2d(layer.kernel, stride))
            shape = (shape[0], _window(shape[1], layer.kernel, stride, 0, what),
                     _window(shape[2], layer.kernel, stride, 0, what))
        elif isinstance(layer, Dense):
            if len(shape) != 1:
                mods.append(nn.Flatten())
                shape = (math.prod(shape),)
            w = branch_width(layer.out, split, widen)
            mods.append(quant_linear(shape[0], w, **kw))
            if i != last:
                mods.append(quant_relu(act_bits))
            shape = (w,)
            widths.append(w)
        elif isinstance(layer, Block):
            if len(shape) != 3:
                raise ValueError(f"{what}: needs a (C, H, W) input, got {shape}")
            w = branch_width(layer.out, split, widen)
            h = _window(shape[1], 3, layer.stride, 1, what)
            v = _window(shape[2], 3, layer.stride, 1, what)
            mods.append(BasicBlock(shape[0], w, layer.stride, act_bits=act_bits, **kw))
            shape = (w, h, v)
            widths.append(w)
        elif isinstance(layer, GlobalAvgPool):
            if i != last or len(shape) != 3:
                raise ValueError(f"{what}: only as the last layer, on a (C, H, W) input")
            mods += [global_avg_pool(), nn.Flatten()]
            shape = (shape[0],)
        else:
            raise TypeError(f"{what}: unknown layer spec {type(layer).__name__}")
    if len(shape) != 1:
        mods.append(nn.Flatten())
        shape = (math.prod(shape),)
    return nn.Sequential(*mods), widths, shape[0]


def build(arch: str, *, split: int = 1, widen: int = 0, weight_bits: int = 4, act_bits: int = 4,
          per_channel: bool = False, num_classes: int = 10, in_shape=None,
          branch_dropout: float = 0.0) -> LCPNet:
    """Build the LCP version of ``arch``: ``split`` independent branches and a merge.

    Parameters
    ----------
    arch : str
        A key of :data:`ARCHS`.
    split : int
        Number of branches, one of :data:`SPLITS`; 1 is the original network (same structure,
        one branch).
    widen : int
        Widening of every branch layer in percent (the paper's f10..f40 are 10..40).
    weight_bits, act_bits : int
        Bit widths, 2..8, of every weight tensor and of every hidden activation.
    per_channel : bool
        Per-output-channel weight scales (default per tensor).
    num_classes : int
        Outputs of the merge layer.
    in_shape : tuple of int, optional
        ``(C, H, W)`` of the input; default the arch's own.
    branch_dropout : float
        Training-only probability of dropping a whole branch output per sample (0 = off),
        see :func:`~lcp.models.net.drop_branches`.

    Returns
    -------
    LCPNet
        In training mode, as any fresh ``nn.Module``.

    Raises
    ------
    ValueError
        on an unknown arch, a split not in :data:`SPLITS`, a negative widen, a bit width outside
        2..8, or an input shape that the layers do not fit.
    """
    _check_config(arch, split, widen, weight_bits, act_bits, num_classes)
    if not 0.0 <= branch_dropout < 1.0:
        raise ValueError(f"branch_dropout must be in [0, 1), not {branch_dropout!r}")
    spec = ARCHS[arch]
    in_shape = tuple(int(d) for d in (in_shape or spec.in_shape))
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), not {in_shape!r}")
    branches, widths, out_w = [], [], 0
    for _ in range(split):
        branch, widths, out_w = _build_branch(spec, in_shape, split, widen, weight_bits,
                                              act_bits, per_channel)
        branches.append(branch)
    config = dict(arch=arch, split=split, widen=widen, weight_bits=weight_bits,
                  act_bits=act_bits, per_channel=bool(per_channel), num_classes=num_classes,
                  in_shape=in_shape, branch_widths=widths, branch_dropout=float(branch_dropout))
    return LCPNet(input_quant=input_quant(), branches=branches, branch_act=quant_relu(act_bits),
                  merge=quant_linear(split * out_w, num_classes, weight_bits=weight_bits,
                                     per_channel=per_channel),
                  config=config)


def model_name(arch: str, split: int, widen: int = 0, weight_bits: int = 4,
               act_bits: int = 4) -> str:
    """Canonical name ``{arch}_split{S}[_f{widen}]_w{W}a{A}``."""
    f = f"_f{widen}" if widen else ""
    return f"{arch}_split{split}{f}_w{weight_bits}a{act_bits}"


_NAME_RE = re.compile(r"^(?P<arch>[a-z0-9_]+?)_split(?P<split>\d+)(?:_f(?P<widen>\d+))?"
                      r"_w(?P<w>\d+)a(?P<a>\d+)$")


def from_name(name: str, **kwargs) -> LCPNet:
    """Build the model named ``{arch}_split{S}[_f{widen}]_w{W}a{A}``; ``kwargs`` go to
    :func:`build` (e.g. ``per_channel``, ``num_classes``)."""
    m = _NAME_RE.match(name)
    if not m:
        raise ValueError(f"not a model name: {name!r} (expected arch_splitS[_fN]_wWaA)")
    return build(m["arch"], split=int(m["split"]), widen=int(m["widen"] or 0),
                 weight_bits=int(m["w"]), act_bits=int(m["a"]), **kwargs)


def _entry_point(arch, split, widen, bits):
    name = model_name(arch, split, widen, bits, bits)

    def make(**kwargs) -> LCPNet:
        return build(arch, split=split, widen=widen, weight_bits=bits, act_bits=bits, **kwargs)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = (f"{arch} split {split}, widen {widen} %, {bits}-bit weights and activations "
                    f"(random init). ``kwargs`` go to :func:`build`.")
    return name, make


#: Names of the generated entry points.
ENTRY_POINTS: list[str] = []
for _arch in ARCHS:
    for _split in SPLITS:
        for _widen in (0, 40):
            for _bits in (2, 4, 8):
                _name, _fn = _entry_point(_arch, _split, _widen, _bits)
                setattr(sys.modules[__name__], _name, _fn)
                ENTRY_POINTS.append(_name)
__all__ += ENTRY_POINTS
