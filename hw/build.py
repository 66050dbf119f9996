"""Generate the hardware for a model: Verilog, the folding and a report, in one folder.

:func:`generate` lowers the IR (the whole model as one LCP core, or one branch alone) with a given
or chosen :class:`~lcp.hw.folding.Folding`, converts it to Verilog with Amaranth and writes::

    BUILD/lcp_core.v (or lcp_branch.v)   the design (top module of the same name)
    BUILD/folding.json                   per-layer PE/SIMD and the AXI widths
    BUILD/report.json                    ports and packing, cycle model, resource estimate
    BUILD/model.json, model.npz          the IR it was built from

Top module ports (see :mod:`lcp.hw.graph`): ``clk``, ``rst`` (active high, synchronous),
``s_axis_{tdata,tvalid,tready,tlast}`` (one image per frame) and ``m_axis_{...}`` (one result
per frame, ``tlast`` on its last word). Packing of a frame (:func:`lcp.hw.plumbing.pack_frames`):
the elements of the integer tensor in stream order (HWC for a ``(C, H, W)`` tensor, IR order for a
vector), ``bits`` each, two's complement when signed, from the least significant bit of word 0
up; the last word is zero-padded.

:func:`cached_build` keeps builds in a content-addressed cache (model digest, folding, scope,
generator version).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lcp.cache import build_once, cache_root, digest, source_digest
from lcp.counters import count_graph
from lcp.ir import IRError, Model, save

from .base import DEVICES, Resources, StreamFormat
from .chooser import Choice, choose
from .delay import (ASIC_TARGETS, keeps_dsp, link_register, ram_register,
                    threshold_in_register, tree_levels_per_stage)
from .folding import Folding
from .plans import plan_for
from .graph import PlanGraph, Timing, lower_branch, lower_core
from .plumbing import words_per_frame

__all__ = ["GENERATOR_VERSION", "TOP_NAMES", "HwBuild", "lower", "generate", "cached_build",
           "cache_key", "default_folding", "cached_choice", "model_macs"]

#: Bumped whenever the generated hardware changes for the same IR and folding.
GENERATOR_VERSION = "1"
#: Top module name per scope.
TOP_NAMES = {"core": "lcp_core", "branch": "lcp_branch"}


def lower(model: Model, folding: Folding, scope: str = "core", index: int = 0) -> PlanGraph:
    """Plan graph of the model (``scope="core"``) or of branch ``index`` (``"branch"``)."""
    if scope == "core":
        return lower_core(model, folding)
    if scope == "branch":
        if not 0 <= index < len(model.branches):
            raise IRError(f"{model.name} has {len(model.branches)} branch(es), no branch {index}")
        return lower_branch(model, index, folding)
    raise IRError(f"unknown scope {scope!r} (core or branch)")


def model_macs(model: Model, scope: str = "core", index: int = 0) -> int:
    """Multiply-accumulates per image of the model or of one branch."""
    graphs = model.graphs if scope == "core" else [model.branches[index]]
    return sum(count_graph(model, g).macs for g in graphs)


def default_folding(model: Model, scope: str = "core", index: int = 0,
                    in_width: int = 64, out_width: int = 64) -> Choice:
    """Folding used when none is asked for: the XC7Z020 budget when the design fits it, else a
    latency target of one cycle per 1,000 MACs (simulation-friendly). Cached by content."""
    return cached_choice(model, scope, index, in_width, out_width)


def cached_choice(model: Model, scope: str = "core", index: int = 0, in_width: int = 64,
                  out_width: int = 64, *, target: int | None = None,
                  budget: str | None = None) -> Choice:
    """The folding chooser's answer for ``target`` and/or ``budget`` (neither: the default
    above), kept in the build cache (:mod:`lcp.cache`) under the model, the scope, the stream
    widths, the goal and the source of the generator and the chooser (the chooser can take
    minutes on a large model)."""
    key = digest("folding", model.digest(), scope, index, in_width, out_width, target, budget,
                 GENERATOR_VERSION, _generator_digest(chooser=True))

    def build(folder: Path) -> Choice:
        if target is None and budget is None:
            try:
                c = choose(model, budget="xc7z020", scope=scope, index=index,
                           in_width=in_width, out_width=out_width)
            except IRError:
                goal = max(2_000, model_macs(model, scope, index) // 1_000)
                c = choose(model, target=goal, scope=scope, index=index, in_width=in_width,
                           out_width=out_width)
        else:
            c = choose(model, target=target, budget=budget, scope=scope, index=index,
                       in_width=in_width, out_width=out_width)
        (folder / "choice.json").write_text(json.dumps({
            "folding": c.folding.to_json(), "latency": c.latency, "interval": c.interval,
            "resources": c.resources.to_json(), "met": c.met, "note": c.note}))
        return c

    def load_choice(folder: Path) -> Choice:
        d = json.loads((folder / "choice.json").read_text())
        r = d["resources"]
        return Choice(Folding.from_json(d["folding"]), d["latency"], d["interval"],
                      Resources(r["lut"], r["ff"], r["dsp"], r["bram36"]), 0, d["met"],
                      d.get("note", ""))

    return build_once(cache_root() / "foldings", key, build, load_choice)


@dataclass
class HwBuild:
    """A generated design (see :func:`generate`)."""

    dir: Path
    top: str
    verilog: Path
    scope: str
    index: int
    folding: Folding
    graph: PlanGraph
    timing: Timing
    resources: Resources
    report: dict

    @property
    def in_fmt(self) -> StreamFormat:
        return self.graph.in_fmt

    @property
    def out_fmt(self) -> StreamFormat:
        return self.graph.out_fmt

    def tap_formats(self) -> list[tuple[str, StreamFormat]]:
        return [(n.tensor, n.plan.out_fmt) for _, n in self.graph.taps()]


def _report(model: Model, g: PlanGraph, folding: Folding, scope: str, index: int, top: str,
            timing: Timing, res: Resources, choice: Choice | None) -> dict:
    def port(fmt: StreamFormat, width: int, tensor: str) -> dict:
        return {"tensor": tensor, "tdata_bits": width, **fmt.describe(),
                "order": "HWC" if len(fmt.shape) == 3 else "LC" if len(fmt.shape) == 2 else
                ("IR" if np.array_equal(fmt.perm, np.arange(fmt.size)) else "permuted"),
                "words_per_frame": words_per_frame(fmt, width),
                "bytes_per_frame": words_per_frame(fmt, width) * width // 8}

    out_tensor = model.output if scope == "core" else model.branches[index].output
    per_layer = {}
    for name, r in g.node_resources().items():
        per_layer[name] = r.to_json()
    budgets = {k: {"fits": res.fits(v), "usage": round(res.usage(v), 3)}
               for k, v in DEVICES.items()}
    rep = {
        "format": "lcp-hw-report", "version": 1, "generator": GENERATOR_VERSION,
        "model": model.name, "model_digest": model.digest(), "scope": scope,
        **({"branch": index} if scope == "branch" else {}),
        "top": top,
        "ports": {
            "clock": "clk", "reset": "rst (active high, synchronous)",
            "s_axis": port(g.in_fmt, g.in_width, model.input.name),
            "m_axis": port(g.out_fmt, g.out_width, out_tensor),
            "tlast": "input: ignored (frames are counted); output: last word of each frame",
        },
        "macs_per_image": model_macs(model, scope, index),
        "model_cycles": {**timing.to_json(),
                         "layer_done_cycles": timing.layer_done},
        "resources_estimate": res.to_json(),
        "resources_per_layer": per_layer,
        "budgets": budgets,
        "folding": folding.to_json()["layers"],
        "graph": g.describe(),
    }
    if choice is not None:
        rep["chooser"] = {"evaluations": choice.evaluations, "target_met": choice.met,
                          "note": choice.note}
    return rep


def pipelined(model: Model, folding: Folding, tree_k: int, ram_reg: int = 0,
              fpga: bool = False, in_reg: bool = False, link_reg: bool = False) -> Folding:
    """``folding`` with ``tree_k`` (adder levels per pipeline stage) on every layer whose
    engine takes it, with ``ram_reg`` registers on its memory reads, with ``in_reg`` the
    threshold engines' input registered (:class:`~lcp.hw.pointwise.ThresholdPlan`), with
    ``link_reg`` a register slice on every link (:class:`~lcp.hw.folding.Folding`); ``fpga``
    (no clock gates, no buffer trees): the operand register loaded every cycle (``load_always``,
    :class:`~lcp.hw.mvu.MvuParams`), the window output in two registers (``pingpong``,
    :class:`~lcp.hw.window.WindowEngine`), so that no wide register's enable is a handshake.
    Where the memory reads are registered (``ram_reg``), the line buffers' reads are too
    (``lb_reg = 2``, :func:`lcp.hw.window._line_buffer`). (Their registered write,
    ``lb_reg = 1``, is not set here: on the CifarNet-split8 branch on an LFE5U-85F it gave no
    gain over the seeds.)"""
    for layer in model.layers():
        keys = plan_for(layer).fold_keys
        if "tree_k" in keys:
            folding = folding.with_layer(layer.name, tree_k=int(tree_k))
        for key, on in (("ram_reg", ram_reg), ("load_always", fpga), ("pingpong", fpga),
                        ("in_reg", in_reg), ("lb_reg", 2 if ram_reg else 0)):
            if on and key in keys:
                folding = folding.with_layer(layer.name, **{key: int(on)})
    return replace(folding, link_reg=1) if link_reg else folding


def without_dsp(model: Model, folding: Folding) -> Folding:
    """``folding`` with no DSP lanes (``dsp = 0`` on every layer whose engine takes it): the
    same PE x SIMD and cycles, each lane its own multiplier (standard cells have no DSP)."""
    for layer in model.layers():
        if "dsp" in plan_for(layer).fold_keys and folding.layer(layer.name).get("dsp"):
            folding = folding.with_layer(layer.name, dsp=0)
    return folding


def generate(model: Model, out_dir: str | Path, *, folding: Folding | None = None,
             target: int | None = None, budget: str | None = None, scope: str = "core",
             index: int = 0, in_width: int | None = None, out_width: int | None = None,
             taps: bool = False, verilog: bool = True, clock_mhz: float | None = None,
             tech: str | None = None) -> HwBuild:
    """Lower, fold and write the design into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    folding : Folding, optional
        Use this folding; otherwise :func:`~lcp.hw.chooser.choose` picks one for ``target``
        and/or ``budget`` (or :func:`default_folding` when neither is given).
    in_width, out_width : int, optional
        AXI ``tdata`` widths (default: the folding's, else 64).
    taps : bool
        Add the ``tap{k}_*`` diagnosis ports (see :mod:`lcp.hw.graph`).
    verilog : bool
        Write the Verilog (False: the report and folding only).
    clock_mhz, tech : float, str, optional
        Pipeline the adder trees for this clock on this target (:mod:`lcp.hw.delay`): every
        engine that takes ``tree_k`` gets the levels per stage of the delay model. A ``tech``
        without hard multipliers, or whose multiplier path does not fit the clock
        (:func:`~lcp.hw.delay.keeps_dsp`), gets no DSP lanes (:func:`without_dsp`); a folding
        chosen for a budget is then chosen without the budget's DSP slices.

    Raises
    ------
    IRError
        naming the layer when the hardware cannot be built.
    """
    from amaranth.back import verilog as av

    model.validate()
    choice = None
    no_dsp = tech is not None and not keeps_dsp(tech, clock_mhz)
    if folding is None:
        in_width, out_width = in_width or 64, out_width or 64
        if target is None and budget is None:
            choice = default_folding(model, scope, index, in_width, out_width)
        else:
            room = budget
            if no_dsp and budget in DEVICES:
                room = replace(DEVICES[budget], dsp=0)
            choice = choose(model, target=target, budget=room, scope=scope, index=index,
                            in_width=in_width, out_width=out_width)
        folding = choice.folding
    else:
        folding = replace(folding, in_width=in_width or folding.in_width,
                          out_width=out_width or folding.out_width)
    if no_dsp:
        folding = without_dsp(model, folding)
    if clock_mhz is not None:
        t = tech or "asap7"
        folding = pipelined(model, folding, tree_levels_per_stage(t, clock_mhz),
                            ram_register(t, clock_mhz), fpga=t not in ASIC_TARGETS,
                            in_reg=threshold_in_register(t, clock_mhz),
                            link_reg=link_register(t, clock_mhz))
    g = lower(model, folding, scope, index)
    timing = g.lowered_timing
    res = g.resources()
    top = TOP_NAMES[scope]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = _report(model, g, folding, scope, index, top, timing, res, choice)
    if choice is not None and budget is not None:
        rep["chooser"]["budget"] = budget
    vpath = out / f"{top}.v"
    if verilog:
        t0 = time.time()
        text = av.convert(g.top(taps=taps), name=top, emit_src=False)
        vpath.write_text(text)
        rep["verilog"] = {"file": vpath.name, "seconds": round(time.time() - t0, 1),
                          "taps": [{"port": f"tap{k}", "tensor": n.tensor,
                                    **n.plan.out_fmt.describe()} for k, n in g.taps()]
                          if taps else []}
    folding.save(out / "folding.json")
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    save(model, out / "model")
    return HwBuild(out, top, vpath, scope, index, folding, g, timing, res, rep)


#: Modules whose source decides the RTL of a given IR and folding.
_RTL_MODULES = ("base", "plumbing", "window", "mvu", "depthwise", "pointwise", "plans",
                "graph", "build")


def _generator_digest(chooser: bool = False) -> str:
    """Hash of the generator's source files: a changed generator never reuses a cached build
    (``chooser``: also the folding chooser, for cached foldings)."""
    here = Path(__file__).parent
    return source_digest(*(here / f"{name}.py"
                           for name in _RTL_MODULES + (("chooser",) if chooser else ())))


def cache_key(model: Model, folding: Folding, scope: str, index: int, taps: bool) -> str:
    """Content address of a build: model, folding, scope, taps and generator."""
    return digest(model.digest(), folding.digest(), scope, index, taps, GENERATOR_VERSION,
                  _generator_digest())


def cached_build(model: Model, folding: Folding, *, scope: str = "core", index: int = 0,
                 taps: bool = False, root: Path | None = None) -> HwBuild:
    """:func:`generate` into ``root/KEY`` unless that build exists (content-addressed,
    :func:`lcp.cache.build_once`)."""
    def load_build(d: Path) -> HwBuild:
        g = lower(model, folding, scope, index)
        return HwBuild(d, TOP_NAMES[scope], d / f"{TOP_NAMES[scope]}.v", scope, index, folding,
                       g, g.lowered_timing, g.resources(),
                       json.loads((d / "report.json").read_text()))

    return build_once(Path(root) if root is not None else cache_root(),
                      cache_key(model, folding, scope, index, taps),
                      lambda d: generate(model, d, folding=folding, scope=scope, index=index,
                                         taps=taps), load_build)
