"""PYNQ top level: a generated engine (an LCP core or one branch) between the two channels of
an AXI DMA, with an AXI4-Lite register block that identifies the compiled model.

Ports of the top module ``lcp_pynq`` (Verilog names)::

    aclk, aresetn                          clock; reset, active low, synchronous
    s_axi_control_{aw,w,b,ar,r}*           AXI4-Lite slave, 32-bit data, 12-bit address
    s_axis_{tdata,tvalid,tready,tlast}     images in (from the DMA's MM2S channel)
    m_axis_{tdata,tvalid,tready,tlast}     results out (to the DMA's S2MM channel)
    m_axi_{ar*,r*}                         only when the core reads its weights from DRAM (the
                                           reused engine, :mod:`lcp.hw.pynq_reused`): an AXI4
                                           read master, 64-bit data (HP0), reading from the
                                           byte address in ``WEIGHT_BASE``

``tdata`` is 32 or 64 bits (the DMA's stream width), packed as :mod:`lcp.hw.build` documents:
one image is ``IN_WORDS`` words, one result ``OUT_WORDS`` words. Input ``tlast`` is not needed
to delimit images (they are counted); ``tlast`` on a word that is not the last of an image
raises ``ERROR.PARTIAL_FRAME``. Output ``tlast`` is asserted on the last word of every
``BATCH``-th result, because the DMA's S2MM channel ends a transfer at ``tlast``: the driver
writes ``BATCH`` = images per transfer. The registers are :mod:`lcp.hw.pynq_axil` (the map)
and :mod:`lcp.hw.pynq_regs` (the contract with the driver: register types, :class:`EngineInfo`).

:func:`generate_pynq_reused` writes the same top around the reused engine (and its DRAM image,
``weights.bin``). :func:`generate_pynq` writes the top (``lcp_pynq.v``), the engine build files of
:func:`lcp.hw.build.generate`, and ``lcp_engine.json`` (the ``EngineInfo``, the register map
and the stream formats), which the driver :mod:`lcp.sw.pynq.driver` reads; ``REGISTERS.md`` is
the same map as a table. :func:`cached_pynq_build` keeps builds in a content-addressed cache.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from amaranth.hdl import ClockDomain, ClockSignal, Module, Mux, ResetInserter, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from lcp.cache import build_once, cache_root, digest, source_digest
from lcp.ir import IRError, Model

from .axiread import axi_read_signature
from .base import DEVICES
from .build import GENERATOR_VERSION, cache_key, generate
from .folding import Folding
from .graph import PlanGraph
from .pynq_axil import RegisterFile, axil_members, register_values, regmap_json, regmap_markdown
from .plumbing import axis_top_members
from .pynq_regs import (AXIL_ADDR_WIDTH, CLOCK_MHZ, DMA_INSTANCE, DMA_VLNV, DMA_WIDTHS,
                        ENGINE_INSTANCE, PYNQ_TOP_VERSION, TOP_NAME, VLNV, EngineInfo)
from .pynq_reused import ReusedDesign
from .reuse_program import ReusedProgram

__all__ = ["PynqTop", "PynqBuild", "generate_pynq", "generate_pynq_reused", "cached_pynq_build",
           "soc_json", "write_engine_files"]


# -- the top level ---------------------------------------------------------------------------

class PynqTop(wiring.Component):
    """The PYNQ top level (ports and registers: see the module docstring).

    Parameters
    ----------
    graph : PlanGraph or ReusedDesign
        The engine (:func:`lcp.hw.build.lower`), wrapped as its :class:`~lcp.hw.graph.GraphTop`;
        or the reused engine (:class:`lcp.hw.pynq_reused.ReusedDesign`), whose core reads its
        weights from DRAM: the top then has its AXI4 read master as ``m_axi_*``
        (:func:`lcp.hw.axiread.axi_read_signature`; HP0 in the block design) and feeds it
        ``WEIGHT_BASE``.
    info : EngineInfo
        What the registers report; must describe ``graph``'s ports.

    Raises
    ------
    TypeError
        naming the bad argument.
    ValueError
        when a stream width is not one of :data:`DMA_WIDTHS` or ``info`` does not match.
    """

    def __init__(self, *, graph: PlanGraph, info: EngineInfo):
        if not isinstance(graph, (PlanGraph, ReusedDesign)):
            raise TypeError(f"Graph must be a PlanGraph or a ReusedDesign, not {graph!r}")
        if not isinstance(info, EngineInfo):
            raise TypeError(f"Engine info must be an EngineInfo, not {info!r}")
        for what, w in (("input", graph.in_width), ("output", graph.out_width)):
            if w not in DMA_WIDTHS:
                raise ValueError(f"The {what} stream width must be one of {DMA_WIDTHS} (an AXI "
                                 f"DMA stream port), not {w!r}")
        if (info.inp.width, info.out.width) != (graph.in_width, graph.out_width):
            raise ValueError(f"Engine info widths {(info.inp.width, info.out.width)} do not "
                             f"match the graph's {(graph.in_width, graph.out_width)}")
        self._graph, self._info = graph, info
        members = {"aclk": In(1), "aresetn": In(1)}
        members.update(axil_members("s_axi_control", AXIL_ADDR_WIDTH))
        members.update(axis_top_members(graph.in_width, graph.out_width))
        if self.reads_dram:
            members.update(axi_read_signature())
        super().__init__(members)

    @property
    def reads_dram(self) -> bool:
        """The core reads its weights from DRAM (the top has ``m_axi_*``)."""
        return bool(getattr(self._graph, "reads_dram", False))

    @property
    def graph(self) -> PlanGraph:
        return self._graph

    @property
    def info(self) -> EngineInfo:
        return self._info

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(self.aclk), ResetSignal("sync").eq(~self.aresetn)]

        regs = RegisterFile(info=self._info)
        m.submodules.regs = regs
        for name, member in axil_members("s_axi_control", AXIL_ADDR_WIDTH).items():
            port, theirs = getattr(self, name), getattr(regs, name)
            m.d.comb += port.eq(theirs) if member.flow == wiring.Out else theirs.eq(port)

        engine = self._graph.top()
        soft = Signal()
        m.submodules.engine = ResetInserter({"sync": soft})(engine)
        m.d.comb += soft.eq(regs.soft_reset)
        if self.reads_dram:
            m.d.comb += engine.w_base.eq(regs.weight_base)
            for name, member in axi_read_signature().items():
                port, theirs = getattr(self, name), getattr(engine, name)
                m.d.comb += port.eq(theirs) if member.flow == wiring.Out else theirs.eq(port)

        run = regs.run
        in_fire, out_fire = Signal(), Signal()
        m.d.comb += [
            engine.s_axis_tdata.eq(self.s_axis_tdata),
            engine.s_axis_tvalid.eq(self.s_axis_tvalid & run),
            engine.s_axis_tlast.eq(self.s_axis_tlast),
            self.s_axis_tready.eq(engine.s_axis_tready & run),
            in_fire.eq(self.s_axis_tvalid & engine.s_axis_tready & run),
            self.m_axis_tdata.eq(engine.m_axis_tdata),
            self.m_axis_tvalid.eq(engine.m_axis_tvalid),
            engine.m_axis_tready.eq(self.m_axis_tready),
            out_fire.eq(engine.m_axis_tvalid & self.m_axis_tready),
        ]

        # image and result framing
        in_words, out_batch = self._info.inp.words, Signal(32)
        in_word = Signal(range(max(in_words, 2)))
        pending = Signal(32)              # images started and not yet answered
        frames_in, frames_out = Signal(32), Signal(32)
        cycles, busy_cycles = Signal(64), Signal(64)
        batch_eff = Signal(32)
        m.d.comb += batch_eff.eq(Mux(regs.batch == 0, 1, regs.batch))
        last_in = Signal()
        m.d.comb += last_in.eq(in_word == in_words - 1)
        starts, ends = Signal(), Signal()
        m.d.comb += [starts.eq(in_fire & (in_word == 0)), ends.eq(out_fire & engine.m_axis_tlast)]
        m.d.comb += self.m_axis_tlast.eq(engine.m_axis_tlast & (out_batch == batch_eff - 1))
        busy = Signal()
        m.d.comb += busy.eq(pending != 0)

        err = Signal(RegisterFile.Error.layout())
        m.d.comb += err.partial_frame.eq(in_fire & self.s_axis_tlast & ~last_in)

        with m.If(in_fire):
            m.d.sync += in_word.eq(Mux(last_in, 0, in_word + 1))
        m.d.sync += pending.eq(pending + starts - ends)
        with m.If(ends):
            m.d.sync += out_batch.eq(Mux(out_batch >= batch_eff - 1, 0, out_batch + 1))
        with m.If(regs.clear):
            m.d.sync += [frames_in.eq(0), frames_out.eq(0), cycles.eq(0), busy_cycles.eq(0)]
        with m.Else():
            m.d.sync += [frames_in.eq(frames_in + (in_fire & last_in)),
                         frames_out.eq(frames_out + ends), cycles.eq(cycles + 1),
                         busy_cycles.eq(busy_cycles + busy)]
        with m.If(soft):
            m.d.sync += [in_word.eq(0), pending.eq(0), out_batch.eq(0)]

        # watchdog: consecutive cycles of work in flight without a word moving
        quiet = Signal(32)
        fired = Signal()
        moving = in_fire | out_fire
        with m.If(~busy | moving | (regs.watchdog == 0) | soft):
            m.d.sync += [quiet.eq(0), fired.eq(0)]
        with m.Elif(~fired):
            m.d.sync += quiet.eq(quiet + 1)
            with m.If(quiet + 1 >= regs.watchdog):
                m.d.sync += fired.eq(1)
                with m.If(engine.m_axis_tvalid & ~self.m_axis_tready):
                    m.d.comb += err.out_blocked.eq(1)
                with m.Elif((in_word != 0) & self.s_axis_tready & ~self.s_axis_tvalid):
                    m.d.comb += err.in_starved.eq(1)
                with m.Else():
                    m.d.comb += err.stall.eq(1)

        m.d.comb += [
            regs.busy.eq(busy), regs.in_ready.eq(self.s_axis_tready),
            regs.out_valid.eq(engine.m_axis_tvalid), regs.error_set.eq(err),
            regs.cycles.eq(cycles), regs.busy_cycles.eq(busy_cycles),
            regs.frames_in.eq(frames_in), regs.frames_out.eq(frames_out),
        ]
        return m


# -- builds ----------------------------------------------------------------------------------

@dataclass
class PynqBuild:
    """A generated PYNQ top (see :func:`generate_pynq`)."""

    dir: Path
    verilog: Path
    info: EngineInfo
    folding: Folding | None      # None for the reused engine (lcp_engine.json's folding)
    report: dict

    top: ClassVar[str] = TOP_NAME

    @property
    def engine_json(self) -> Path:
        return self.dir / "lcp_engine.json"


def soc_json(info: EngineInfo) -> dict:
    """The system around the engine: instance names, address windows, the DMA's configuration
    (the parameter names PYNQ's DMA driver reads), the PL clock. The Vivado project of
    :mod:`lcp.synth.bitstream` and the simulated board of :mod:`lcp.sw.pynq.sim` both follow
    it."""
    return {
        "clock_mhz": CLOCK_MHZ,
        "engine": {"instance": ENGINE_INSTANCE[0], "vlnv": VLNV, "base": ENGINE_INSTANCE[1],
                   "range": ENGINE_INSTANCE[2]},
        "dma": {"instance": DMA_INSTANCE[0], "vlnv": DMA_VLNV, "base": DMA_INSTANCE[1],
                "range": DMA_INSTANCE[2],
                "parameters": {
                    "c_include_sg": "0", "c_micro_dma": "0", "c_sg_length_width": "26",
                    "c_addr_width": "32", "c_include_mm2s": "1", "c_include_s2mm": "1",
                    "c_m_axi_mm2s_data_width": "64", "c_m_axi_s2mm_data_width": "64",
                    "c_m_axis_mm2s_tdata_width": str(info.inp.width),
                    "c_s_axis_s2mm_tdata_width": str(info.out.width),
                    "c_include_mm2s_dre": "0", "c_include_s2mm_dre": "0",
                    "c_mm2s_burst_size": "16", "c_s2mm_burst_size": "16"}},
    }


def write_engine_files(out: Path, info: EngineInfo, folding: dict, report: dict) -> None:
    """Write ``lcp_engine.json`` (``folding``: the design's description) and
    ``REGISTERS.md`` of a build into ``out``."""
    doc = {"format": "lcp-engine", "version": 1, "top": TOP_NAME, "vlnv": VLNV,
           "pynq_top_version": PYNQ_TOP_VERSION, "generator": GENERATOR_VERSION,
           "engine": info.to_json(), "regmap": regmap_json(info), "soc": soc_json(info),
           "folding": folding,
           "model_cycles": report.get("model_cycles", {}),
           "resources_estimate": report.get("resources_estimate", {})}
    (out / "lcp_engine.json").write_text(json.dumps(doc, indent=1))
    (out / "REGISTERS.md").write_text(
        f"# {TOP_NAME} registers (AXI4-Lite, VLNV {VLNV})\n\n{regmap_markdown()}\n")


def generate_pynq(model: Model, out_dir: str | Path, *, folding: Folding | None = None,
                  target: int | None = None, budget: str | None = None, scope: str = "core",
                  index: int = 0, in_width: int | None = None,
                  out_width: int | None = None) -> PynqBuild:
    """Write the PYNQ top of ``model`` (or branch ``index``) into ``out_dir``.

    Files: ``lcp_pynq.v`` (top module ``lcp_pynq``), ``lcp_engine.json`` (engine info, register
    map with this build's constants, folding, cycle model), ``REGISTERS.md``, and the engine
    files of :func:`lcp.hw.build.generate` (``report.json``, ``folding.json``, the IR).
    Arguments as for :func:`lcp.hw.build.generate`; widths must be 32 or 64.

    Raises
    ------
    IRError
        when the engine cannot be built or a register value does not fit.
    """
    from amaranth.back import verilog as av

    for what, w in (("in_width", in_width), ("out_width", out_width)):
        if w is not None and w not in DMA_WIDTHS:
            raise IRError(f"{what} {w} is not an AXI DMA stream width here ({DMA_WIDTHS})")
    out = Path(out_dir)
    b = generate(model, out, folding=folding, target=target, budget=budget, scope=scope,
                 index=index, in_width=in_width, out_width=out_width, verilog=False)
    info = EngineInfo.of(model, b.graph, scope, index)
    register_values(info)         # raises on values that do not fit
    try:
        top = PynqTop(graph=b.graph, info=info)
    except ValueError as e:
        raise IRError(str(e)) from None
    t0 = time.time()
    vpath = out / f"{TOP_NAME}.v"
    vpath.write_text(av.convert(top, name=TOP_NAME, emit_src=False))
    rep = dict(b.report)
    rep["pynq"] = {"file": vpath.name, "seconds": round(time.time() - t0, 1)}
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    write_engine_files(out, info, b.folding.to_json(), rep)
    return PynqBuild(out, vpath, info, b.folding, rep)


def generate_pynq_reused(model: Model, out_dir: str | Path, pe: int, simd: int, *,
                         scope: str = "branch", index: int = 0, in_width: int = 64,
                         out_width: int = 64, port=None):
    """Write the PYNQ top of the ``pe x simd`` reused engine of ``model`` (``scope`` /
    ``index`` as :class:`ReusedProgram`) into ``out_dir``: ``lcp_pynq.v``, ``lcp_engine.json``
    (its ``folding`` entry :meth:`ReusedDesign.to_json`), ``REGISTERS.md``, ``report.json``
    and ``weights.bin`` (the DRAM image). Returns a :class:`lcp.hw.pynq_top.PynqBuild` whose
    ``folding`` is ``None``.

    Raises
    ------
    IRError
        when the engine cannot be built or a register value does not fit.
    """
    from amaranth.back import verilog as av

    kw = {} if port is None else {"port": port}
    prog = ReusedProgram(model, pe, simd, scope=scope, index=index, **kw)
    design = ReusedDesign(prog, in_width, out_width)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = EngineInfo.of(model, design, "core" if scope == "core" else "branch", index)
    t0 = time.time()
    vpath = out / f"{TOP_NAME}.v"
    vpath.write_text(av.convert(PynqTop(graph=design, info=info), name=TOP_NAME,
                                emit_src=False))
    img = prog.dram_image()
    (out / "weights.bin").write_bytes(img.tobytes())
    rep = {"engine": "reused", "design": design.to_json(), "model_cycles": design.model_cycles(),
           "resources_estimate": prog.resources(int(DEVICES["xc7z020"].dsp)).to_json(),
           "pynq": {"file": vpath.name, "seconds": round(time.time() - t0, 1)},
           "weights": {"file": "weights.bin", "bytes": int(img.size)}}
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    write_engine_files(out, info, design.to_json(), rep)
    return PynqBuild(out, vpath, info, None, rep)


#: The top's sources (this module, the register block and the register contract), in the
#: cache key: an edited top or register map never reuses a stale build.
_SOURCE_HASH = source_digest(*(Path(__file__).with_name(f) for f in
                               ("pynq_top.py", "pynq_axil.py", "pynq_regs.py")))[:12]


def cached_pynq_build(model: Model, folding: Folding, *, scope: str = "core", index: int = 0,
                      root: Path | None = None) -> PynqBuild:
    """:func:`generate_pynq` into ``root/KEY`` unless it exists (``KEY``: the engine's cache key,
    :data:`PYNQ_TOP_VERSION` and the top's source hash; ``root`` defaults to
    ``cache_root()/pynq``; :func:`lcp.cache.build_once`)."""
    def load_build(d: Path) -> PynqBuild:
        j = json.loads((d / "lcp_engine.json").read_text())
        return PynqBuild(d, d / f"{TOP_NAME}.v", EngineInfo.from_json(j["engine"]),
                         Folding.load(d / "folding.json"),
                         json.loads((d / "report.json").read_text()))

    def build(d: Path) -> PynqBuild:
        b = generate_pynq(model, d, folding=folding, scope=scope, index=index)
        return PynqBuild(d, d / f"{TOP_NAME}.v", b.info, b.folding, b.report)

    return build_once(Path(root) if root is not None else cache_root() / "pynq",
                      digest(cache_key(model, folding, scope, index, False), PYNQ_TOP_VERSION,
                             _SOURCE_HASH), build, load_build)
