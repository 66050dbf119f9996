"""The model zoo: base architectures as data, one factory that splits and widens them.

An architecture is an :class:`ArchSpec`: the input shape and a tuple of layer specs
(:class:`Conv`, :class:`DepthwiseConv`, :class:`MaxPool`, :class:`Dense`, :class:`Block`,
:class:`Bottleneck`, :class:`GlobalAvgPool`) that describe the base (unsplit) network up to its
last hidden layer. The classifier is implicit: it is
the merge layer. :func:`build` turns a spec into an :class:`~lcp.models.net.LCPNet` of ``split``
independent branches whose widths are

    ``branch_width(base, split, widen) = ceil(base * (100 + widen) / (100 * split))``

computed in integers (so 120 / 4 at f10 is exactly 33, not 34 from float round-off). Every conv
and FC output width is scaled this way (both widths of a bottleneck block); the input channels are
not. A depthwise conv keeps the width of its input, so in a split MobileNet every branch is a
narrower MobileNet whose depthwise convs have ``groups`` = the branch's channels.

Inside a branch every conv/FC is followed by its own ``QuantReLU`` (a conv with ``bn=True`` has a
``BatchNorm2d`` in between; so does a depthwise conv), except the branch's last hidden layer,
which is followed by the one ``branch_act`` shared by all branches. A :class:`GlobalAvgPool` as
the last layer means the shared quantizer re-quantizes the pooled features. A flatten is
inserted before the first FC.

Architectures sized for ImageNet (224x224 inputs, 1000 classes) carry the suffix ``_imagenet``
(``vgg16_imagenet``, ``resnet50_imagenet``, ...); the name without it is the same network sized for
32x32 CIFAR-10 inputs and 10 classes (stem and classifier adapted as the description says).

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

from .common import (check_bit_width, global_avg_pool, input_quant, quant_conv2d, quant_linear,
                     quant_relu)
from .net import BasicBlock, Bottleneck as BottleneckBlock, LCPNet

__all__ = [
    "SPLITS", "WIDENS", "Conv", "DepthwiseConv", "MaxPool", "Dense", "Block", "Bottleneck",
    "GlobalAvgPool", "ArchSpec",
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
class DepthwiseConv:
    """Depthwise 2-D convolution (``groups`` = channels, one filter per channel), square kernel.

    Its width is its input's (not scaled again by split/widen)."""
    kernel: int
    stride: int = 1
    pad: int = 0
    bn: bool = False


@dataclass(frozen=True)
class MaxPool:
    """Max pool, square window; ``stride`` defaults to ``kernel``; ``pad`` on every side."""
    kernel: int
    stride: int | None = None
    pad: int = 0


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
class Bottleneck:
    """ResNet bottleneck block ``1x1 mid -> 3x3 mid (stride) -> 1x1 out``, both widths scaled by
    split/widen, see :class:`~lcp.models.net.Bottleneck`."""
    mid: int
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
        The data set the architecture is sized for ("mnist", "cifar10", "imagenet").
    real_data : tuple of str
        Data sets shipped with this toolkit (:mod:`lcp.datasets`) that fit the architecture.
        Empty: random weights only, never report an accuracy.
    description : str
        One line on where the architecture comes from and how it was sized.
    num_classes : int
        Default number of outputs of the merge layer (10, or 1000 for ImageNet).
    """
    name: str
    in_shape: tuple[int, int, int]
    layers: tuple
    dataset: str
    real_data: tuple[str, ...] = ()
    description: str = ""
    num_classes: int = 10

    @property
    def has_data(self) -> bool:
        return bool(self.real_data)


_RESNET18_STAGES = (Block(64), Block(64), Block(128, 2), Block(128),
                    Block(256, 2), Block(256), Block(512, 2), Block(512))
_RESNET18 = (Conv(64, 3, 1, 1, bn=True), *_RESNET18_STAGES, GlobalAvgPool())


def _bottlenecks(blocks=(3, 4, 6, 3)):
    """ResNet-50 stages: ``blocks[i]`` bottlenecks of widths ``64 * 2**i -> 256 * 2**i``, the
    first of every stage after the first with stride 2."""
    return tuple(Bottleneck(64 << i, 256 << i, 2 if i and j == 0 else 1)
                 for i, n in enumerate(blocks) for j in range(n))


#: ImageNet stem of ResNet-18/50: conv 7x7/2 64 + BN, max pool 3x3/2 pad 1 (224 -> 56).
_IMAGENET_STEM = (Conv(64, 7, 2, 3, bn=True), MaxPool(3, 2, pad=1))
_RESNET50 = (Conv(64, 3, 1, 1, bn=True), *_bottlenecks(), GlobalAvgPool())
_RESNET50_IMAGENET = (*_IMAGENET_STEM, *_bottlenecks(), GlobalAvgPool())

_VGG16_CONVS = tuple(MaxPool(2) if c == "M" else Conv(c, 3, pad=1) for c in (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"))


def _mobilenet_v1(stem_stride):
    """MobileNet-v1 (width 1.0): conv 3x3 32 + BN, 13 depthwise-separable blocks (depthwise
    3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU), global average pool."""
    blocks = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
              (1024, 2), (1024, 1))
    dws = tuple(x for out, stride in blocks
                for x in (DepthwiseConv(3, stride, 1, bn=True), Conv(out, 1, bn=True)))
    return (Conv(32, 3, stem_stride, 1, bn=True), *dws, GlobalAvgPool())


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
    ArchSpec("vgg16", (3, 32, 32), (*_VGG16_CONVS, Dense(512), Dense(512)), "cifar10", (),
             "VGG16 (configuration D, 13 convs 3x3 64-128-256-512-512, no BN) at 32x32: the "
             "five pools leave 1x1x512, FCs 512-512 instead of 4096-4096 as in CIFAR VGG16s"),
    ArchSpec("vgg16_imagenet", (3, 224, 224), (*_VGG16_CONVS, Dense(4096), Dense(4096)),
             "imagenet", (),
             "VGG16 (Simonyan 2014, configuration D; torchvision vgg16 without dropout): 13 convs, "
             "7x7x512 -> 4096 -> 4096 -> 1000", 1000),
    ArchSpec("resnet50", (3, 32, 32), _RESNET50, "cifar10", (),
             "CIFAR-style ResNet-50: 3x3 stem, no max pool, 3-4-6-3 bottleneck blocks "
             "(64-256 .. 512-2048, stride on the 3x3), global average pool"),
    ArchSpec("resnet50_imagenet", (3, 224, 224), _RESNET50_IMAGENET, "imagenet", (),
             "ResNet-50 as torchvision's resnet50 (v1.5: stride on the 3x3 conv): 7x7/2 stem, "
             "3x3/2 max pool, 3-4-6-3 bottlenecks, global average pool, FC 2048 -> 1000", 1000),
    ArchSpec("resnet18_imagenet", (3, 224, 224), (*_IMAGENET_STEM, *_RESNET18_STAGES,
                                                  GlobalAvgPool()), "imagenet", (),
             "ResNet-18 as torchvision's resnet18: 7x7/2 stem, 3x3/2 max pool, 4 stages x 2 "
             "basic blocks, global average pool, FC 512 -> 1000", 1000),
    ArchSpec("mobilenet_v1", (3, 32, 32), _mobilenet_v1(1), "cifar10", (),
             "MobileNet-v1 width 1.0 at 32x32: stem conv 3x3 stride 1 (224x224: stride 2), the "
             "13 depthwise-separable blocks with their strides (32 -> 2), global average pool"),
    ArchSpec("mobilenet_v1_imagenet", (3, 224, 224), _mobilenet_v1(2), "imagenet", (),
             "MobileNet-v1 width 1.0 (Howard 2017): conv 3x3/2 32, 13 depthwise-separable "
             "blocks (224 -> 7), global average pool, FC 1024 -> 1000", 1000),
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
    if num_classes is None:
        return
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
        elif isinstance(layer, DepthwiseConv):
            if len(shape) != 3:
                raise ValueError(f"{what}: needs a (C, H, W) input, got {shape}")
            w = shape[0]
            h = _window(shape[1], layer.kernel, layer.stride, layer.pad, what)
            v = _window(shape[2], layer.kernel, layer.stride, layer.pad, what)
            mods.append(quant_conv2d(w, w, layer.kernel, stride=layer.stride, padding=layer.pad,
                                     groups=w, **kw))
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
            if 2 * layer.pad > layer.kernel:
                raise ValueError(f"{what}: padding {layer.pad} exceeds half the window")
            mods.append(nn.MaxPool2d(layer.kernel, stride, padding=layer.pad))
            shape = (shape[0], _window(shape[1], layer.kernel, stride, layer.pad, what),
                     _window(shape[2], layer.kernel, stride, layer.pad, what))
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
        elif isinstance(layer, Bottleneck):
            if len(shape) != 3:
                raise ValueError(f"{what}: needs a (C, H, W) input, got {shape}")
            mid = branch_width(layer.mid, split, widen)
            w = branch_width(layer.out, split, widen)
            h = _window(shape[1], 3, layer.stride, 1, what)
            v = _window(shape[2], 3, layer.stride, 1, what)
            mods.append(BottleneckBlock(shape[0], mid, w, layer.stride, act_bits=act_bits, **kw))
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
          per_channel: bool = False, num_classes: int | None = None, in_shape=None,
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
    num_classes : int, optional
        Outputs of the merge layer; default the arch's own (10, 1000 for ``*_imagenet``).
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
    num_classes = spec.num_classes if num_classes is None else num_classes
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
