"""One reused engine for a whole branch: its layers run one after the other on one ``PE x
SIMD`` multiply-accumulate array whose weights stream from DRAM (the LCP paper's FPGA design:
one 32x64 systolic array, weights in DDR); the choice between it and the dataflow design.

When even the dataflow design of :mod:`lcp.hw.chooser` with its big layers reading weights from
DRAM (:mod:`lcp.hw.weightstream`) exceeds the device (VGG16 at 32x32 on the XC7Z020: its
512-channel frame buffers alone pass the LUT and BRAM budget), the branch runs phase after
phase on one engine. The program (phases, memory layout, DRAM image), its exact cycle model and
its resource estimate are :class:`lcp.hw.reuse_program.ReusedProgram`'s, the generator is
:class:`lcp.hw.reuse_engine.ReusedEngine` (conv/dense with their thresholds, max pools,
flatten; other layers are modelled phases without a generator). :func:`choose_reused` picks
the power-of-two ``PE x SIMD`` the generator builds (``PE`` divides ``SIMD``, a step word of
whole 64-bit beats) with the lowest latency that fits the budget, with the activations on chip,
or, when no such engine fits (224x224 feature maps), in DRAM
(:class:`lcp.hw.reuse_actdram.ActDramProgram`, modelled only); :func:`serve` the faster of
it and the dataflow design. The interval equals the latency (one image at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

from lcp.ir import IRError, Model

from .base import DEVICES, Resources
from .chooser import choose
from .reuse_actdram import ActDramProgram
from .reuse_program import ReusedProgram
from .weightstream import ZYNQ_HP, HpPort

__all__ = ["ReusedChoice", "reused_cycles", "reused_resources", "choose_reused", "serve", "SIZES"]

#: PE and SIMD values tried (powers of two).
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


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
    buildable: bool = True
    activations: str = "chip"

    def program(self, model: Model, *, scope: str = "branch", index: int = 0):
        """The chosen program (:class:`ReusedProgram`, or :class:`ActDramProgram` when the
        activations are in DRAM)."""
        prog = ReusedProgram(model, self.pe, self.simd, scope=scope, index=index, port=self.port)
        return ActDramProgram.of(prog) if self.activations == "dram" else prog

    def to_json(self) -> dict:
        return {"engine": "reused", "pe": self.pe, "simd": self.simd,
                "activations": self.activations, "latency": self.latency,
                "interval": self.interval, "resources": self.resources.to_json(),
                "dram_bytes_per_image": self.dram_bytes, "port": self.port.to_json(),
                "generator": self.buildable}


def reused_cycles(model: Model, pe: int, simd: int, *, scope: str = "branch", index: int = 0,
                  port: HpPort = ZYNQ_HP) -> tuple[int, dict, int]:
    """``(latency, per-phase cycles, DRAM bytes per image)`` of the reused engine."""
    return ReusedProgram(model, pe, simd, scope=scope, index=index, port=port).cycles()


def reused_resources(model: Model, pe: int, simd: int, budget: Resources, *,
                     scope: str = "branch", index: int = 0) -> Resources:
    """Resource estimate of the ``pe x simd`` reused engine for the branch (DSP48 lanes up to
    the budget's, LUT multipliers for the rest)."""
    return ReusedProgram(model, pe, simd, scope=scope, index=index).resources(int(budget.dsp))


def choose_reused(model: Model, budget: str | Resources = "xc7z020", *, scope: str = "branch",
                  index: int = 0, port: HpPort = ZYNQ_HP) -> ReusedChoice:
    """The power-of-two ``PE x SIMD`` reused engine with the lowest latency within ``budget``
    (ties: fewer lanes); :class:`~lcp.ir.IRError` when none fits."""
    if isinstance(budget, str):
        if budget not in DEVICES:
            raise IRError(f"unknown device {budget!r} (known: {', '.join(DEVICES)})")
        budget = DEVICES[budget]
    best = None
    chip = ReusedProgram(model, 1, 1, scope=scope, index=index, port=port)
    for base in (chip, ActDramProgram.of(chip)):
        if best is not None:
            break           # activations in DRAM only when none fits with them on chip
        for pe in SIZES:
            for simd in SIZES:
                prog = base.resized(pe, simd)
                if simd % pe or prog.step_bits % 64:
                    continue
                r = prog.resources(int(budget.dsp))
                if not r.fits(budget):
                    continue
                lat, per, dram = prog.cycles()
                key = (lat, pe * simd)
                if best is None or key < best[0]:
                    best = (key, ReusedChoice(pe, simd, lat, lat, r, per, dram, port,
                                              prog.buildable(), base.activations))
    if best is None:
        raise IRError(f"{model.name}: no reused engine (PE x SIMD in {SIZES}) fits "
                      f"{budget.to_json()}")
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
