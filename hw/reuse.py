"""One reused engine for a whole branch: layers time-multiplexed on a ``PE x SIMD`` MVU whose
weights stream from DRAM (the LCP paper's FPGA design: one 32x64 systolic array, weights in DDR).

When even the dataflow design of :mod:`lcp.hw.chooser` with its big layers reading weights from
DRAM (:mod:`lcp.hw.weightstream`) exceeds the device (VGG16 at 32x32 on the XC7Z020: its
512-channel pools and output frame buffers alone pass the LUT and BRAM budget), the branch runs
layer after layer on one engine:

- activations live in on-chip buffers (ping, pong, and one for a residual's skip tensor), each
  as large as the largest tensor of the branch, ``SIMD`` elements per word;
- a conv/dense layer (its plan is ``parallel`` in :mod:`lcp.hw.plans`) runs as the DRAM engine
  of :mod:`lcp.hw.weightstream`: ``ceil(O / PE)`` blocks, each fetching ``PE x F`` weights and
  ``PE`` biases over the HP port (double-buffered: block ``k+1`` is fetched while block ``k``
  computes) and computing ``P x ceil(F / SIMD)`` steps (``P`` output positions; a grouped or
  depthwise layer's ``F`` is its per-output ``C/G*KH*KW``, so a depthwise layer uses
  ``9 / SIMD`` of each PE's lanes); then :data:`~lcp.hw.mvu.PIPELINE_LATENCY` cycles;
- every other layer with an engine (requantizer, pool, add, concat) is one pass over its input
  elements at ``SIMD`` per cycle, its parameters (thresholds) fetched first; ``flatten`` is free;
- the image arrives and the result leaves on the 64-bit streams (``bits / 64`` cycles each).

The branch's latency is the sum; the interval equals the latency (one image at a time). The
resource estimate: the MVU (DSP48 for as many lanes as the budget has, LUT multipliers for the
rest, FINN's cost), its adder trees and accumulators, the activation and weight-tile buffers, the
AXI4 read master and a control block. :func:`choose_reused` picks the power-of-two ``PE x SIMD``
with the lowest latency that fits the budget; :func:`serve` the faster of it and the dataflow
design.

This engine is a model only: it has no generator (its weight path, the AXI read master and the
MVU fed from a weight stream, is the one of :mod:`lcp.hw.weightstream`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lcp.ir import IRError, Model, bits_for_range

from .base import DEVICES, Resources, bram36
from .chooser import choose
from .mvu import PIPELINE_LATENCY, lut_mult_cost
from .plans import plan_for
from .weightstream import AXI_MASTER_COST, ZYNQ_HP, HpPort

__all__ = ["ReusedChoice", "reused_cycles", "reused_resources", "choose_reused", "serve", "SIZES"]

#: PE and SIMD values tried (powers of two).
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
#: Control, address generation and requantizer logic of the reused engine (estimate).
CONTROL_COST = Resources(lut=2500, ff=2000)


@dataclass
class ReusedChoice:
    """The reused engine chosen for a branch: ``pe x simd`` lanes, cycle model, resources."""

    pe: int
    simd: int
    latency: int
    interval: int
    resources: Resources
    layers: dict
    dram_bytes: int
    port: HpPort

    def to_json(self) -> dict:
        return {"engine": "reused", "pe": self.pe, "simd": self.simd, "latency": self.latency,
                "interval": self.interval, "resources": self.resources.to_json(),
                "dram_bytes_per_image": self.dram_bytes, "port": self.port.to_json()}


def _layers(model: Model, scope: str, index: int) -> list:
    if scope == "branch":
        return list(model.branches[index].layers)
    return [l for b in model.branches for l in b.layers] + list(model.merge.layers)


def _bits(spec) -> int:
    return bits_for_range(spec.lo, spec.hi)[0]


def _widths(model: Model, layers) -> tuple[int, int, int]:
    """``(weight bits, activation bits, accumulator bits)``: the widest of the layers."""
    wb, xb, ab = 2, 2, 8
    for l in layers:
        cls = plan_for(l)
        if getattr(cls, "passthrough", False):
            continue
        if cls.parallel:
            # activations are stored requantized: the widest input of a conv/dense layer
            xb = max(xb, _bits(model.tensors[l.inputs[0]]))
            w = l.weight
            wb = max(wb, bits_for_range(min(int(w.min()), -1), int(w.max()))[0],
                     int(l.attrs.get("weight_bits", 0)))
            ab = max(ab, _bits(model.tensors[l.output]))
    return wb, xb, ab


def reused_cycles(model: Model, pe: int, simd: int, *, scope: str = "branch", index: int = 0,
                  port: HpPort = ZYNQ_HP) -> tuple[int, dict, int]:
    """``(latency, per-layer cycles, DRAM bytes per image)`` of the reused engine."""
    layers = _layers(model, scope, index)
    wb, xb, ab = _widths(model, layers)
    per: dict[str, int] = {}
    dram = 0
    first = model.tensors[layers[0].inputs[0]]
    t = math.ceil(math.prod(first.shape) * _bits(first) / port.beat_bits)
    for l in layers:
        cls = plan_for(l)
        if getattr(cls, "passthrough", False):
            per[l.name] = 0
            continue
        out = model.tensors[l.output]
        if cls.parallel:
            O, F = cls.mvu_shape(l)
            positions = math.prod(out.shape[1:]) if len(out.shape) > 1 else 1
            fo, fi = math.ceil(O / pe), math.ceil(F / simd)
            beats = math.ceil((pe * F * wb + pe * ab) / port.beat_bits)
            dram += fo * beats * port.beat_bits // 8
            fetch = port.fetch_cycles(beats)
            comp = positions * fi
            f_start, c_end = 0, None
            for _ in range(fo):
                f_done = f_start + fetch
                c_start = f_done if c_end is None else max(f_done, c_end)
                c_end = c_start + comp
                f_start = max(f_done, c_start)
            c = c_end + PIPELINE_LATENCY
        else:
            n_in = sum(math.prod(model.tensors[i].shape) for i in l.inputs
                       if i in model.tensors)
            pbits = sum(int(np.asarray(v).size) * ab for v in l.params.values())
            pbeats = math.ceil(pbits / port.beat_bits)
            dram += pbeats * port.beat_bits // 8
            c = port.fetch_cycles(pbeats) + math.ceil(n_in / simd) + PIPELINE_LATENCY
        per[l.name] = int(c)
        t += c
    last = model.tensors[layers[-1].output]
    t += math.ceil(math.prod(last.shape) * _bits(last) / port.beat_bits)
    return int(t), per, int(dram)


def reused_resources(model: Model, pe: int, simd: int, budget: Resources, *,
                     scope: str = "branch", index: int = 0) -> Resources:
    """Resource estimate of the ``pe x simd`` reused engine for the branch (DSP48 lanes up to
    the budget's, LUT multipliers for the rest)."""
    layers = _layers(model, scope, index)
    wb, xb, ab = _widths(model, layers)
    lanes = pe * simd
    dsp = min(lanes, int(budget.dsp))
    mult = (lanes - dsp) * lut_mult_cost(wb, xb)
    tree = pe * max(simd - 1, 0) * (wb + xb + math.log2(max(simd, 2)) / 2)
    acc = 3 * pe * ab
    biggest = max(math.prod(model.tensors[l.output].shape) for l in layers)
    biggest = max(biggest, math.prod(model.tensors[layers[0].inputs[0]].shape))
    act = 3 * bram36(simd * xb, math.ceil(biggest / simd))
    max_f = max((plan_for(l).mvu_shape(l)[1] for l in layers if plan_for(l).parallel),
                default=1)
    tile = 2 * bram36(lanes * wb, math.ceil(max_f / simd))
    # one output word of PE lanes per cycle goes through the requantizer (a compare per
    # threshold level per lane, thresholds in the tile memory)
    levels = (1 << xb) - 1
    requant = pe * levels * ab / 2
    return (Resources(lut=mult + tree + acc + requant + simd * xb * 2, ff=lanes * (wb + xb)
                      + acc, dsp=dsp, bram=act + tile)
            + AXI_MASTER_COST + CONTROL_COST)


def choose_reused(model: Model, budget: str | Resources = "xc7z020", *, scope: str = "branch",
                  index: int = 0, port: HpPort = ZYNQ_HP) -> ReusedChoice:
    """The power-of-two ``PE x SIMD`` reused engine with the lowest latency within ``budget``
    (ties: fewer lanes); :class:`~lcp.ir.IRError` when none fits."""
    if isinstance(budget, str):
        if budget not in DEVICES:
            raise IRError(f"unknown device {budget!r} (known: {', '.join(DEVICES)})")
        budget = DEVICES[budget]
    best = None
    for pe in SIZES:
        for simd in SIZES:
            r = reused_resources(model, pe, simd, budget, scope=scope, index=index)
            if not r.fits(budget):
                continue
            lat, per, dram = reused_cycles(model, pe, simd, scope=scope, index=index, port=port)
            key = (lat, pe * simd)
            if best is None or key < best[0]:
                best = (key, ReusedChoice(pe, simd, lat, lat, r, per, dram, port))
    if best is None:
        raise IRError(f"{model.name}: not even a 1x1 reused engine fits {budget.to_json()}")
    return best[1]


def serve(model: Model, budget: str | Resources = "xc7z020", *, scope: str = "branch",
          index: int = 0, max_evals: int = 400) -> dict:
    """The faster of the dataflow design (:func:`lcp.hw.chooser.choose`, its big layers
    reading weights from DRAM where they do not fit) and the reused engine
    (:func:`choose_reused`), both within ``budget``; a dict with ``engine`` (``"dataflow"``
    or ``"reused"``), ``latency``, ``interval``, ``resources``, and the other's figures (or
    why it does not fit) under ``"alternative"``."""
    flow = None
    try:
        c = choose(model, budget=budget, scope=scope, index=index, max_evals=max_evals)
        flow = {"engine": "dataflow", "latency": c.latency, "interval": c.interval,
                "resources": c.resources.to_json(), "folding": c.folding.to_json()["layers"],
                "dram_layers": sorted(k for k, v in c.folding.to_json()["layers"].items()
                                      if v.get("dram"))}
    except IRError as e:
        why_flow = str(e)
    reused = choose_reused(model, budget, scope=scope, index=index).to_json()
    if flow is None:
        return {**reused, "alternative": {"engine": "dataflow", "fits": False,
                                          "reason": why_flow}}
    best, other = (flow, reused) if flow["latency"] <= reused["latency"] else (reused, flow)
    other = {k: v for k, v in other.items() if k != "folding"}
    return {**best, "alternative": other}
