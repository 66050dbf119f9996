"""The exchange-point family: LCP branches that meet before the merge (the separable network of
arXiv 2111.02489), from no exchange (LCP) to an exchange after every layer (model parallelism).

An :class:`ExchangePolicy` lists *exchange points*: after layer ``after`` of the arch's spec
(:data:`lcp.models.ARCHS`) every branch sends the first ``k`` channels of its activation (all of
them when ``k`` is None), re-quantized by its own unsigned ``bits``-bit quantizer, to every other
branch; each branch concatenates what it receives to its own activation and re-quantizes the
whole at the activation width, so the next layer reads ``w + (split - 1) * k`` channels.
Data flow of one branch ``i`` at a point::

    y_i (QuantTensor) -> [:, :k] -> ex_i (QuantReLU, bits) ------------> to every branch j != i
    cat(y_i, ex_j for j != i in branch order) -> rq_i (QuantReLU, act bits) -> next layer

:func:`candidate_points` are the layer indices where a point may sit (the next layer that is
not a max pool takes input channels: a conv, FC or residual block); :func:`all_points` is model
parallelism's "after every layer" (one point before each such layer, after its pools, sending
all channels at the activation width). The empty policy computes what the plain LCP network
of :func:`lcp.models.build` computes (its modules, one segment per branch).

:func:`build_exchange` returns an :class:`ExchangeNet` (an :class:`~lcp.models.net.LCPNet`
whose ``config()`` carries the policy text, so that :func:`lcp.models.train.load_run` rebuilds
it); :func:`partition_metadata` is the ONNX metadata the compiler's front end needs to tell
the branches apart (``lcp.partition``: every conv/FC weight -> its branch), which
:func:`lcp.models.export.export_qonnx` writes for an exchange net. :func:`exchange_bytes`
is what the branches send each other per image, bit-packed, as the compiler's traffic counter
counts it (each exchanged tensor once per receiving branch).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
from brevitas.quant_tensor import QuantTensor

from .common import check_bit_width, input_quant, quant_linear, quant_relu
from .net import LCPNet, drop_branches
from .zoo import (ARCHS, Block, Bottleneck, Conv, Dense, GlobalAvgPool, MaxPool, _check_config,
                  build_segment)

__all__ = ["ExchangePoint", "ExchangePolicy", "ExchangeNet", "candidate_points", "all_points",
           "build_exchange", "partition_metadata", "exchange_shapes", "exchange_bytes",
           "PARTITION_KEY"]

#: ONNX metadata key of the branch partition (the compiler's ``lcp.frontend.PARTITION_KEY``;
#: models never import the compiler, the value is the contract between them).
PARTITION_KEY = "lcp.partition"

_TAKES_CHANNELS = (Conv, Dense, Block, Bottleneck)


@dataclass(frozen=True, order=True)
class ExchangePoint:
    """Exchange after spec layer ``after``: ``k`` channels per branch (None: all) at ``bits``."""
    after: int
    k: int | None = None
    bits: int = 4

    def text(self) -> str:
        return f"{self.after}:{'all' if self.k is None else f'k{self.k}'}:b{self.bits}"


_POINT_RE = re.compile(r"^(\d+):(all|k(\d+)):b(\d+)$")


@dataclass(frozen=True)
class ExchangePolicy:
    """A set of exchange points (sorted by layer, at most one per layer); empty = LCP."""
    points: tuple[ExchangePoint, ...] = ()

    def __post_init__(self):
        pts = tuple(sorted(self.points))
        object.__setattr__(self, "points", pts)
        if len({p.after for p in pts}) != len(pts):
            raise ValueError(f"two exchange points after the same layer: {self.text()}")

    def text(self) -> str:
        """``"1:k2:b2+3:all:b4"``; ``""`` for LCP."""
        return "+".join(p.text() for p in self.points)

    @classmethod
    def parse(cls, text: str) -> "ExchangePolicy":
        if not text or text == "none":
            return cls()
        pts = []
        for item in text.split("+"):
            m = _POINT_RE.match(item.strip())
            if not m:
                raise ValueError(f"exchange point {item!r} is not AFTER:all:bBITS or "
                                 f"AFTER:kK:bBITS")
            pts.append(ExchangePoint(int(m[1]), None if m[2] == "all" else int(m[3]), int(m[4])))
        return cls(tuple(pts))

    def at(self, after: int) -> ExchangePoint | None:
        return next((p for p in self.points if p.after == after), None)


def candidate_points(arch: str) -> list[int]:
    """Spec layer indices after which an exchange may sit (see the module doc)."""
    layers = ARCHS[arch].layers
    out = []
    for i in range(len(layers) - 1):
        if isinstance(layers[i], GlobalAvgPool):
            continue
        j = i + 1
        while j < len(layers) and isinstance(layers[j], MaxPool):
            j += 1
        if j < len(layers) and isinstance(layers[j], _TAKES_CHANNELS):
            out.append(i)
    return out


def all_points(arch: str, act_bits: int = 4) -> ExchangePolicy:
    """Model parallelism in the family: all channels exchanged before every layer that takes
    channels (after its pools), at the activation width."""
    layers = ARCHS[arch].layers
    return ExchangePolicy(tuple(ExchangePoint(i, None, act_bits) for i in candidate_points(arch)
                                if isinstance(layers[i + 1], _TAKES_CHANNELS)))


def _check_policy(arch: str, policy: ExchangePolicy, split: int) -> None:
    cands = set(candidate_points(arch))
    for p in policy.points:
        if p.after not in cands:
            raise ValueError(f"{arch}: no exchange point after layer {p.after} "
                             f"(candidates: {sorted(cands)})")
        check_bit_width(p.bits)
        if p.k is not None and p.k < 1:
            raise ValueError(f"exchange point {p.text()}: k must be >= 1")
    if policy.points and split < 2:
        raise ValueError("exchange points need split >= 2")


class _Exchange(nn.Module):
    """One branch's side of one exchange point: the quantizer on what it sends (``ex``) and the
    re-quantization of what it then holds (``rq``)."""

    def __init__(self, bits: int, act_bits: int):
        super().__init__()
        self.ex = quant_relu(bits)
        self.rq = quant_relu(act_bits)


def _value(y):
    return y.value if isinstance(y, QuantTensor) else y


class ExchangeNet(LCPNet):
    """An LCP network whose branches exchange activations at the policy's points.

    ``branches[i]`` is an ``nn.ModuleList`` of the segments between points; ``exchanges[i][p]``
    the :class:`_Exchange` of branch ``i`` at point ``p``. ``policy`` and ``sent`` (channels
    each branch sends at each point) complete the :class:`~lcp.models.net.LCPNet` config.
    """

    def __init__(self, *, exchanges: list[list[nn.Module]], policy: ExchangePolicy,
                 sent: list[int], **kw):
        super().__init__(**kw)
        self.exchanges = nn.ModuleList(nn.ModuleList(e) for e in exchanges)
        self.policy = policy
        self.sent = list(sent)

    def config(self) -> dict:
        return {**super().config(), "exchange": self.policy.text()}

    def branch_forward(self, i, xq):
        raise NotImplementedError("exchange branches run together: use features()")

    def sent_at(self, s: int, ys: list) -> list[torch.Tensor]:
        """What each branch sends at exchange point ``s`` given the branch outputs ``ys``: its
        first ``sent[s]`` channels through its sending quantizer (values)."""
        k = self.sent[s]
        return [self.exchanges[i][s].ex(_value(y)[:, :k]).value for i, y in enumerate(ys)]

    def features(self, x: torch.Tensor) -> QuantTensor:
        """The branches segment by segment; at each exchange point every branch appends what
        the others send (:meth:`sent_at`) and re-quantizes."""
        xq = self.input_quant(x)
        ys = [xq] * self.split
        n_seg = len(self.branches[0])
        for s in range(n_seg):
            ys = [self.branches[i][s](ys[i]) for i in range(self.split)]
            if s == n_seg - 1:
                break
            sent = self.sent_at(s, ys)
            ys = [self.exchanges[i][s].rq(torch.cat(
                [_value(ys[i])] + [sent[j] for j in range(self.split) if j != i], 1))
                for i in range(self.split)]
        outs = [self.branch_act(y) for y in ys]
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    def forward(self, x):
        y = self.features(x)
        if self.training and self.branch_dropout > 0 and self.split > 1:
            y = drop_branches(y, self.split, self.branch_dropout)
        return self.merge(y)


def build_exchange(arch: str, exchange: ExchangePolicy | str = "", *, split: int = 4,
                   widen: int = 0, weight_bits: int = 4, act_bits: int = 4,
                   per_channel: bool = False, num_classes: int | None = None, in_shape=None,
                   branch_dropout: float = 0.0) -> ExchangeNet:
    """``arch`` split ``split`` with the exchange points of ``exchange`` (a policy or its
    text); arguments as :func:`lcp.models.build`. :class:`ValueError` on a point that is not a
    candidate, a bad bit width or ``k``, or an exchange with ``split == 1``."""
    policy = exchange if isinstance(exchange, ExchangePolicy) else ExchangePolicy.parse(exchange)
    _check_config(arch, split, widen, weight_bits, act_bits, num_classes)
    _check_policy(arch, policy, split)
    spec = ARCHS[arch]
    num_classes = spec.num_classes if num_classes is None else num_classes
    in_shape = tuple(int(d) for d in (in_shape or spec.in_shape))
    cuts = [p.after + 1 for p in policy.points]
    bounds = [0, *cuts, len(spec.layers)]
    branches, exchanges, sent, widths = [], [], [], []
    for _ in range(split):
        shape, segs, exs, sent, widths = in_shape, [], [], [], []
        for s in range(len(bounds) - 1):
            seq, w, shape = build_segment(spec, shape, split, widen, weight_bits, act_bits,
                                          per_channel, bounds[s], bounds[s + 1])
            segs.append(seq)
            widths += w
            if s < len(policy.points):
                p = policy.points[s]
                k = shape[0] if p.k is None else min(p.k, shape[0])
                sent.append(k)
                exs.append(_Exchange(p.bits, act_bits))
                shape = (shape[0] + (split - 1) * k, *shape[1:])
        branches.append(nn.ModuleList(segs))
        exchanges.append(exs)
    out_w = shape[0]
    config = dict(arch=arch, split=split, widen=widen, weight_bits=weight_bits,
                  act_bits=act_bits, per_channel=bool(per_channel), num_classes=num_classes,
                  in_shape=in_shape, branch_widths=widths, branch_dropout=float(branch_dropout))
    return ExchangeNet(input_quant=input_quant(), branches=branches,
                       branch_act=quant_relu(act_bits),
                       merge=quant_linear(split * out_w, num_classes, weight_bits=weight_bits,
                                          per_channel=per_channel),
                       config=config, exchanges=exchanges, policy=policy, sent=sent)


def partition_metadata(model: nn.Module) -> str | None:
    """The ``lcp.partition`` JSON of an :class:`ExchangeNet` with exchange points (every
    conv/FC weight of ``branches.i`` -> ``i``), else None (plain LCP needs none)."""
    if not isinstance(model, ExchangeNet) or not model.policy.points:
        return None
    part = {}
    for name, mod in model.named_modules():
        if name.startswith("branches.") and isinstance(mod, (nn.Conv2d, nn.Linear)):
            part[f"{name}.weight"] = int(name.split(".")[1])
    return json.dumps({"weights": part}, sort_keys=True)


def exchange_shapes(arch: str, policy: ExchangePolicy, *, split: int = 4, widen: int = 0,
                    in_shape=None) -> list[tuple[int, ...]]:
    """Shape ``(k, H, W)`` (or ``(k,)``) of the tensor each branch sends at each point."""
    spec = ARCHS[arch]
    shape = tuple(in_shape or spec.in_shape)
    bounds = [0, *[p.after + 1 for p in policy.points]]
    out = []
    for s, p in enumerate(policy.points):
        _, _, shape = build_segment(spec, shape, split, widen, 2, 2, False, bounds[s],
                                    bounds[s + 1])
        k = shape[0] if p.k is None else min(p.k, shape[0])
        out.append((k, *shape[1:]))
        shape = (shape[0] + (split - 1) * k, *shape[1:])
    return out


def exchange_bytes(arch: str, policy: ExchangePolicy | str, *, split: int = 4, widen: int = 0,
                   in_shape=None) -> int:
    """Bytes the branches send each other per image: every point's tensor, bit-packed
    (``ceil(values * bits / 8)``), once per (sender, receiver) pair."""
    policy = policy if isinstance(policy, ExchangePolicy) else ExchangePolicy.parse(policy)
    total = 0
    for p, shape in zip(policy.points, exchange_shapes(arch, policy, split=split, widen=widen,
                                                        in_shape=in_shape)):
        total += split * (split - 1) * ((math.prod(shape) * p.bits + 7) // 8)
    return total
