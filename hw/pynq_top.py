"""PYNQ top level: a generated engine (an LCP core or one branch) between the two channels of
an AXI DMA, with an AXI4-Lite register block that identifies the compiled model.

Ports of the top module ``lcp_pynq`` (Verilog names)::

    aclk, aresetn                          clock; reset, active low, synchronous
    s_axi_control_{aw,w,b,ar,r}*           AXI4-Lite slave, 32-bit data, 12-bit address
    s_axis_{tdata,tvalid,tready,tlast}     images in (from the DMA's MM2S channel)
    m_axis_{tdata,tvalid,tready,tlast}     results out (to the DMA's S2MM channel)

``tdata`` is 32 or 64 bits (the DMA's stream width), packed as :mod:`lcp.hw.build` documents:
one image is ``IN_WORDS`` words, one result ``OUT_WORDS`` words. Input ``tlast`` is not needed
to delimit images (they are counted); ``tlast`` on a word that is not the last of an image
raises ``ERROR.PARTIAL_FRAME``. Output ``tlast`` is asserted on the last word of every
``BATCH``-th result, because the DMA's S2MM channel ends a transfer at ``tlast``: the driver
writes ``BATCH`` = images per transfer.

Register map (32-bit registers, byte offsets; access per field: r read-only, rw read/write,
w1c write 1 to clear, w1p write 1 for a one-cycle pulse, reads 0). 64-bit counters read as
``_LO`` then ``_HI``: reading ``_LO`` latches the high word that ``_HI`` returns.

==========  ================  ======  ==========  ==============================================
offset      name              access  reset       contents
==========  ================  ======  ==========  ==============================================
0x000       ID                r       0x4C435031  magic "LCP1"
0x004       VERSION           r       -           [15:0] register map version (major.minor
                                                  bytes), [31:16] hardware generator version
0x008       CTRL              rw/w1p  0x00000000  [0] RUN (rw): accept input; [1] CLEAR (w1p):
                                                  zero the counters and ERROR; [2] SOFT_RESET
                                                  (w1p): reset the engine, drop partial images
0x00C       STATUS            r       -           [0] RUN, [1] BUSY (an image in flight),
                                                  [2] IDLE, [3] ERROR (ERROR != 0),
                                                  [4] IN_READY, [5] OUT_VALID
0x010       ERROR             w1c     0x00000000  sticky: [0] PARTIAL_FRAME, [1] IN_STARVED,
                                                  [2] OUT_BLOCKED, [3] STALL (see below)
0x014       BATCH             rw      0x00000001  results per output packet (0 acts as 1)
0x018       WATCHDOG          rw      0x00000000  cycles without progress before an ERROR
                                                  flag is raised (0: off)
0x01C       SCOPE             r       -           [0] 1 = one branch, 0 = LCP core; [15:8]
                                                  branch index; [23:16] branches in the model
0x020       CYCLES_LO/HI      r       0           cycles since reset or CLEAR (64 bit)
0x028       BUSY_CYCLES_LO/HI r       0           cycles with an image in flight (64 bit)
0x030       FRAMES_IN         r       0           images taken (complete)
0x034       FRAMES_OUT        r       0           results sent (complete)
0x038       IN_WORDS          r       -           stream words per image
0x03C       OUT_WORDS         r       -           stream words per result
0x040       MODEL_HASH0..7    r       -           SHA-256 of the model (``Model.digest()``):
                                                  word k = digest bytes 4k..4k+3, big endian
0x060       IN_FORMAT         r       -           [7:0] element bits, [8] signed, [15:12]
                                                  rank, [31:16] s_axis tdata bits
0x064       IN_DIM0..2        r       -           input shape (channels first; 0 = unused)
0x070       IN_LO, IN_HI      r       -           input integer range (two's complement)
0x078       OUT_FORMAT        r       -           as IN_FORMAT, for the result (m_axis)
0x07C       OUT_DIM0..2       r       -           result shape
0x088       OUT_LO, OUT_HI    r       -           result integer range
==========  ================  ======  ==========  ==============================================

Watchdog (when ``WATCHDOG`` > 0): while an image is in flight and no stream word moves for
``WATCHDOG`` cycles, one flag is set, by the state at that cycle: ``OUT_BLOCKED`` when a result
word is offered and not taken (no S2MM transfer armed, or one too short), else ``IN_STARVED``
when an image is only partly received and the engine waits for its next word (the MM2S
transfer ended mid-image or stopped), else ``STALL`` (the engine neither takes nor offers a
word). Set ``WATCHDOG`` well above the engine's latency: computing an image has quiet
stretches. Unmapped addresses read 0; writes to read-only registers are ignored;
every response is OKAY (a SLVERR would become a bus error on the Zynq's GP port).

:func:`generate_pynq` writes the top (``lcp_pynq.v``), the engine build files of
:func:`lcp.hw.build.generate`, and ``lcp_engine.json`` (the :class:`EngineInfo`, the register map
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
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from lcp.cache import build_once, cache_root, digest, source_digest
from lcp.frames import Port
from lcp.ir import IRError, Model

from .base import StreamFormat
from .build import GENERATOR_VERSION, cache_key, generate
from .folding import Folding
from .graph import PlanGraph

__all__ = [
    "PYNQ_TOP_VERSION", "REGMAP_VERSION", "TOP_NAME", "VLNV", "ID_MAGIC", "AXIL_ADDR_WIDTH",
    "DMA_WIDTHS", "Field", "Register", "EngineInfo", "RegisterFile", "PynqTop",
    "PynqBuild", "generate_pynq", "cached_pynq_build", "regmap_json", "regmap_markdown",
    "register_values", "ENGINE_INSTANCE", "DMA_INSTANCE", "DMA_VLNV", "CLOCK_MHZ", "soc_json",
]

#: Bumped whenever the generated top changes for the same engine.
PYNQ_TOP_VERSION = "1"
#: Register map version (major, minor): major changes break drivers, minor ones add registers.
REGMAP_VERSION = (1, 0)
#: Top module name.
TOP_NAME = "lcp_pynq"
#: VLNV of the packaged IP (the driver binds to it, :mod:`lcp.synth.bitstream` packages it).
VLNV = "lcp:lcp:lcp_engine:1.0"
#: ``ID`` register value: "LCP1".
ID_MAGIC = 0x4C435031
#: AXI4-Lite address bits (a 4 KiB window).
AXIL_ADDR_WIDTH = 12
#: ``tdata`` widths an AXI DMA stream port is configured with here.
DMA_WIDTHS = (32, 64)
#: Block-design instances and their AXI4-Lite windows on the Zynq's GP0 port: name, base, range.
ENGINE_INSTANCE = ("lcp_engine_0", 0x43C0_0000, 0x1_0000)
DMA_INSTANCE = ("axi_dma_0", 0x4040_0000, 0x1_0000)
#: The Xilinx AXI DMA the overlay uses (simple mode).
DMA_VLNV = "xilinx.com:ip:axi_dma:7.1"
#: PL clock of the overlay (FCLK_CLK0), MHz.
CLOCK_MHZ = 100


# -- the register map as data ----------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """A bit field of a register: ``width`` bits, ``access`` one of ``r rw w1c w1p``."""

    name: str
    width: int
    access: str
    doc: str = ""


class Register:
    """Base of the typed register classes (one 32-bit word, or ``count`` consecutive words).

    A subclass is declared as ``class Ctrl(Register, offset=0x08): fields = (...)``; its
    :meth:`layout` is the ``data.StructLayout`` of its fields (LSB first, padded to 32 bits).
    Constant registers compute their words from an :class:`EngineInfo` (:meth:`words`).
    """

    offset: ClassVar[int]
    count: ClassVar[int] = 1
    name: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]] = (Field("value", 32, "r"),)
    reset: ClassVar[int | None] = None

    def __init_subclass__(cls, *, offset: int, name: str, count: int = 1, **kwargs):
        super().__init_subclass__(**kwargs)
        if not isinstance(offset, int) or offset < 0 or offset % 4:
            raise TypeError(f"Register offset must be a non-negative multiple of 4, not "
                            f"{offset!r}")
        cls.offset, cls.name, cls.count = offset, name, count

    @classmethod
    def layout(cls) -> data.StructLayout:
        members, used = {}, 0
        for f in cls.fields:
            members[f.name] = f.width
            used += f.width
        if used > 32:
            raise TypeError(f"Register {cls.name} fields take {used} bits, more than 32")
        if used < 32:
            members["_reserved"] = 32 - used
        return data.StructLayout(members)

    @classmethod
    def access(cls) -> str:
        return "/".join(dict.fromkeys(f.access for f in cls.fields))

    @classmethod
    def words(cls, info: "EngineInfo") -> list[int]:
        """Values of a constant register (read-only, fixed by the build)."""
        raise NotImplementedError(cls.name)

    @classmethod
    def to_json(cls) -> dict:
        d = {"name": cls.name, "offset": cls.offset, "count": cls.count,
             "access": cls.access(), "doc": (cls.__doc__ or "").strip(),
             "fields": [{"name": f.name, "lsb": lsb, "width": f.width, "access": f.access,
                         "doc": f.doc} for f, lsb in zip(cls.fields, _lsbs(cls.fields))]}
        if cls.reset is not None:
            d["reset"] = cls.reset
        return d


def _lsbs(fields) -> list[int]:
    out, pos = [], 0
    for f in fields:
        out.append(pos)
        pos += f.width
    return out


def _s32(v: int) -> int:
    """``v`` as the 32-bit two's complement word."""
    if not -(1 << 31) <= v < (1 << 31):
        raise IRError(f"integer {v} does not fit a 32-bit register")
    return v & 0xFFFF_FFFF


@dataclass(frozen=True)
class EngineInfo:
    """What the register block of one build reports: the model, the scope and both ports."""

    model: str
    digest: str
    scope: str
    index: int
    branches: int
    inp: Port
    out: Port

    @classmethod
    def of(cls, model: Model, graph: PlanGraph, scope: str = "core",
           index: int = 0) -> "EngineInfo":
        out_tensor = model.output if scope == "core" else model.branches[index].output
        return cls(model.name, model.digest(), scope, int(index), len(model.branches),
                   _port(model, model.input.name, graph.in_fmt, graph.in_width),
                   _port(model, out_tensor, graph.out_fmt, graph.out_width))

    def to_json(self) -> dict:
        return {"model": self.model, "digest": self.digest, "scope": self.scope,
                "index": self.index, "branches": self.branches,
                "input": self.inp.to_json(), "output": self.out.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "EngineInfo":
        return cls(d["model"], d["digest"], d["scope"], int(d["index"]), int(d["branches"]),
                   Port.from_json(d["input"]), Port.from_json(d["output"]))


def _port(model: Model, tensor: str, fmt: StreamFormat, width: int) -> Port:
    """The port carrying IR ``tensor`` (its own shape; the stream may carry it flattened)."""
    return Port.of(tensor, model.tensors[tensor].shape, fmt.lo, fmt.hi, fmt.perm, width)


def _dims(shape) -> list[int]:
    return [int(s) for s in shape] + [0] * (3 - len(shape))


class RegisterFile(wiring.Component):
    """AXI4-Lite slave holding the register map (see the module docstring).

    Parameters
    ----------
    info : EngineInfo
        The build it describes (constant registers).

    Members
    -------
    s_axi_control_* : the AXI4-Lite slave (flat AXI names).
    run : Out(1)
        ``CTRL.RUN``.
    clear, soft_reset : Out(1)
        One-cycle pulses (``CTRL.CLEAR``, ``CTRL.SOFT_RESET``).
    batch, watchdog : Out(32)
        ``BATCH`` (0 reads as written, acts as 1 in the top) and ``WATCHDOG``.
    busy, in_ready, out_valid : In(1)
        Live state for ``STATUS``.
    error_set : In(Error.layout())
        Flags to set in ``ERROR`` this cycle (sticky until cleared).
    cycles, busy_cycles : In(64); frames_in, frames_out : In(32)
        Counters (kept by the top).

    Raises
    ------
    TypeError
        when ``info`` is not an :class:`EngineInfo`.
    """

    class Id(Register, offset=0x000, name="ID"):
        """magic "LCP1" """
        reset = ID_MAGIC

        @classmethod
        def words(cls, info):
            return [ID_MAGIC]

    class Version(Register, offset=0x004, name="VERSION"):
        """register map and hardware generator versions"""
        fields = (Field("regmap", 16, "r", "major << 8 | minor"),
                  Field("generator", 16, "r", "lcp.hw generator version"))

        @classmethod
        def words(cls, info):
            gen = int(GENERATOR_VERSION) if GENERATOR_VERSION.isdigit() else 0
            return [(REGMAP_VERSION[0] << 8) | REGMAP_VERSION[1] | (gen << 16)]

    class Ctrl(Register, offset=0x008, name="CTRL"):
        """control"""
        fields = (Field("run", 1, "rw", "accept input"),
                  Field("clear", 1, "w1p", "zero the counters and ERROR"),
                  Field("soft_reset", 1, "w1p", "reset the engine, drop partial images"))
        reset = 0

    class Status(Register, offset=0x00C, name="STATUS"):
        """live state"""
        fields = (Field("run", 1, "r"), Field("busy", 1, "r", "an image in flight"),
                  Field("idle", 1, "r"), Field("error", 1, "r", "ERROR != 0"),
                  Field("in_ready", 1, "r", "s_axis_tready"),
                  Field("out_valid", 1, "r", "m_axis_tvalid"))

    class Error(Register, offset=0x010, name="ERROR"):
        """sticky error flags"""
        fields = (Field("partial_frame", 1, "w1c", "input tlast inside an image"),
                  Field("in_starved", 1, "w1c", "watchdog: image partly received"),
                  Field("out_blocked", 1, "w1c", "watchdog: result word not taken"),
                  Field("stall", 1, "w1c", "watchdog: engine made no progress"))
        reset = 0

    class Batch(Register, offset=0x014, name="BATCH"):
        """results per output packet (tlast)"""
        fields = (Field("frames", 32, "rw"),)
        reset = 1

    class Watchdog(Register, offset=0x018, name="WATCHDOG"):
        """cycles without progress before a flag (0: off)"""
        fields = (Field("cycles", 32, "rw"),)
        reset = 0

    class Scope(Register, offset=0x01C, name="SCOPE"):
        """what the engine computes"""
        fields = (Field("branch", 1, "r", "1: one branch, 0: LCP core"),
                  Field("_pad", 7, "r"), Field("index", 8, "r", "branch index"),
                  Field("branches", 8, "r", "branches in the model"))

        @classmethod
        def words(cls, info):
            if info.index > 255 or info.branches > 255:
                raise IRError(f"{info.branches} branches do not fit the SCOPE register")
            return [int(info.scope == "branch") | (info.index << 8) | (info.branches << 16)]

    class Cycles(Register, offset=0x020, name="CYCLES", count=2):
        """cycles since reset or CLEAR (LO, HI)"""

    class BusyCycles(Register, offset=0x028, name="BUSY_CYCLES", count=2):
        """cycles with an image in flight (LO, HI)"""

    class FramesIn(Register, offset=0x030, name="FRAMES_IN"):
        """images taken"""

    class FramesOut(Register, offset=0x034, name="FRAMES_OUT"):
        """results sent"""

    class InWords(Register, offset=0x038, name="IN_WORDS"):
        """stream words per image"""

        @classmethod
        def words(cls, info):
            return [info.inp.words]

    class OutWords(Register, offset=0x03C, name="OUT_WORDS"):
        """stream words per result"""

        @classmethod
        def words(cls, info):
            return [info.out.words]

    class ModelHash(Register, offset=0x040, name="MODEL_HASH", count=8):
        """SHA-256 of the model, word k = digest bytes 4k..4k+3 big endian"""

        @classmethod
        def words(cls, info):
            raw = bytes.fromhex(info.digest)
            if len(raw) != 32:
                raise IRError(f"model digest {info.digest!r} is not a SHA-256 hex digest")
            return [int.from_bytes(raw[4 * k:4 * k + 4], "big") for k in range(8)]

    class InFormat(Register, offset=0x060, name="IN_FORMAT"):
        """input element format"""
        fields = (Field("bits", 8, "r"), Field("signed", 1, "r"), Field("_pad", 3, "r"),
                  Field("rank", 4, "r"), Field("tdata_bits", 16, "r"))

        @classmethod
        def words(cls, info):
            return [info.inp.format_word()]

    class InDim(Register, offset=0x064, name="IN_DIM", count=3):
        """input shape, channels first (0 = unused)"""

        @classmethod
        def words(cls, info):
            return _dims(info.inp.shape)

    class InRange(Register, offset=0x070, name="IN_RANGE", count=2):
        """input integer range LO, HI (two's complement)"""

        @classmethod
        def words(cls, info):
            return [_s32(info.inp.lo), _s32(info.inp.hi)]

    class OutFormat(Register, offset=0x078, name="OUT_FORMAT"):
        """result element format (as IN_FORMAT)"""
        fields = (Field("bits", 8, "r"), Field("signed", 1, "r"), Field("_pad", 3, "r"),
                  Field("rank", 4, "r"), Field("tdata_bits", 16, "r"))

        @classmethod
        def words(cls, info):
            return [info.out.format_word()]

    class OutDim(Register, offset=0x07C, name="OUT_DIM", count=3):
        """result shape, channels first (0 = unused)"""

        @classmethod
        def words(cls, info):
            return _dims(info.out.shape)

    class OutRange(Register, offset=0x088, name="OUT_RANGE", count=2):
        """result integer range LO, HI (two's complement)"""

        @classmethod
        def words(cls, info):
            return [_s32(info.out.lo), _s32(info.out.hi)]

    #: Every register, by offset.
    MAP: ClassVar[tuple[type[Register], ...]] = ()

    def __init__(self, *, info: EngineInfo):
        if not isinstance(info, EngineInfo):
            raise TypeError(f"Engine info must be an EngineInfo, not {info!r}")
        self._info = info
        self._consts = register_values(info)
        members = _axil_members("s_axi_control", AXIL_ADDR_WIDTH)
        members.update({
            "run": Out(1), "clear": Out(1), "soft_reset": Out(1),
            "batch": Out(32), "watchdog": Out(32),
            "busy": In(1), "in_ready": In(1), "out_valid": In(1),
            "error_set": In(RegisterFile.Error.layout()),
            "cycles": In(64), "busy_cycles": In(64), "frames_in": In(32), "frames_out": In(32),
        })
        super().__init__(members)

    @property
    def info(self) -> EngineInfo:
        return self._info

    def elaborate(self, platform):
        m = Module()
        R = RegisterFile
        ctrl = Signal(R.Ctrl.layout())
        error = Signal(R.Error.layout())
        batch = Signal(32, init=R.Batch.reset)
        watchdog = Signal(32, init=R.Watchdog.reset)
        cyc_hi = Signal(32)
        busy_hi = Signal(32)

        # -- write channel: take AW and W (in any order), then act and answer on B ----------
        aw_full, w_full, bvalid = Signal(), Signal(), Signal()
        aw_addr = Signal(AXIL_ADDR_WIDTH)
        w_data, w_strb = Signal(32), Signal(4)
        m.d.comb += [
            self.s_axi_control_awready.eq(~aw_full & ~bvalid),
            self.s_axi_control_wready.eq(~w_full & ~bvalid),
            self.s_axi_control_bvalid.eq(bvalid),
            self.s_axi_control_bresp.eq(0),
        ]
        with m.If(self.s_axi_control_awvalid & self.s_axi_control_awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(self.s_axi_control_awaddr)]
        with m.If(self.s_axi_control_wvalid & self.s_axi_control_wready):
            m.d.sync += [w_full.eq(1), w_data.eq(self.s_axi_control_wdata),
                         w_strb.eq(self.s_axi_control_wstrb)]
        with m.If(bvalid & self.s_axi_control_bready):
            m.d.sync += bvalid.eq(0)

        mask = Signal(32)
        m.d.comb += mask.eq(Mux(w_strb[0], 0xFF, 0) | Mux(w_strb[1], 0xFF00, 0)
                            | Mux(w_strb[2], 0xFF_0000, 0) | Mux(w_strb[3], 0xFF00_0000, 0))
        wbits = Signal(32)
        m.d.comb += wbits.eq(w_data & mask)
        do_write = Signal()
        m.d.comb += do_write.eq(aw_full & w_full)
        pulse_clear, pulse_reset = Signal(), Signal()
        err_clear = Signal(32)
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1)]
            with m.Switch(aw_addr[2:]):
                with m.Case(R.Ctrl.offset >> 2):
                    m.d.sync += ctrl.run.eq(Mux(mask[0], w_data[0], ctrl.run))
                    m.d.comb += [pulse_clear.eq(wbits[1]), pulse_reset.eq(wbits[2])]
                with m.Case(R.Error.offset >> 2):
                    m.d.comb += err_clear.eq(wbits)
                with m.Case(R.Batch.offset >> 2):
                    m.d.sync += batch.eq((batch & ~mask) | wbits)
                with m.Case(R.Watchdog.offset >> 2):
                    m.d.sync += watchdog.eq((watchdog & ~mask) | wbits)
        # sticky flags: a flag raised in the same cycle as a clear stays set
        m.d.sync += error.as_value().eq(
            Mux(pulse_clear, 0, error.as_value() & ~err_clear) | self.error_set.as_value())
        m.d.comb += [self.run.eq(ctrl.run), self.clear.eq(pulse_clear),
                     self.soft_reset.eq(pulse_reset), self.batch.eq(batch),
                     self.watchdog.eq(watchdog)]

        # -- read channel: one outstanding read, data registered --------------------------
        rvalid, rdata = Signal(), Signal(32)
        m.d.comb += [self.s_axi_control_arready.eq(~rvalid),
                     self.s_axi_control_rvalid.eq(rvalid),
                     self.s_axi_control_rdata.eq(rdata), self.s_axi_control_rresp.eq(0)]
        with m.If(rvalid & self.s_axi_control_rready):
            m.d.sync += rvalid.eq(0)
        status = Signal(R.Status.layout())
        m.d.comb += [status.run.eq(ctrl.run), status.busy.eq(self.busy),
                     status.idle.eq(~self.busy), status.error.eq(error.as_value() != 0),
                     status.in_ready.eq(self.in_ready), status.out_valid.eq(self.out_valid)]
        live = {
            R.Ctrl.offset: ctrl.as_value() & 1, R.Status.offset: status.as_value(),
            R.Error.offset: error.as_value(), R.Batch.offset: batch,
            R.Watchdog.offset: watchdog,
            R.Cycles.offset: self.cycles[:32], R.Cycles.offset + 4: cyc_hi,
            R.BusyCycles.offset: self.busy_cycles[:32], R.BusyCycles.offset + 4: busy_hi,
            R.FramesIn.offset: self.frames_in, R.FramesOut.offset: self.frames_out,
        }
        with m.If(self.s_axi_control_arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rdata.eq(0)]
            addr = self.s_axi_control_araddr
            with m.Switch(addr[2:]):
                for off, value in sorted({**self._consts, **live}.items()):
                    with m.Case(off >> 2):
                        m.d.sync += rdata.eq(value)
                        if off == R.Cycles.offset:
                            m.d.sync += cyc_hi.eq(self.cycles[32:])
                        if off == R.BusyCycles.offset:
                            m.d.sync += busy_hi.eq(self.busy_cycles[32:])
        return m


RegisterFile.MAP = tuple(sorted(
    (v for v in vars(RegisterFile).values() if isinstance(v, type) and issubclass(v, Register)),
    key=lambda r: r.offset))


def register_values(info: EngineInfo) -> dict[int, int]:
    """Byte offset -> value of every constant register of ``info``'s build."""
    out = {}
    for reg in RegisterFile.MAP:
        try:
            words = reg.words(info)
        except NotImplementedError:
            continue
        for k, w in enumerate(words):
            out[reg.offset + 4 * k] = int(w) & 0xFFFF_FFFF
    return out


def regmap_json(info: EngineInfo | None = None) -> dict:
    """The register map as data (with the constant values of ``info``'s build when given)."""
    d = {"format": "lcp-regmap", "version": list(REGMAP_VERSION), "vlnv": VLNV,
         "id": ID_MAGIC, "addr_width": AXIL_ADDR_WIDTH,
         "registers": [r.to_json() for r in RegisterFile.MAP]}
    if info is not None:
        d["values"] = {f"0x{k:03X}": v for k, v in sorted(register_values(info).items())}
    return d


def regmap_markdown() -> str:
    """The register map as a markdown table (fields with their bit positions)."""
    rows = ["| offset | name | access | reset | fields |", "|---|---|---|---|---|"]
    for r in RegisterFile.MAP:
        name = r.name if r.count == 1 else f"{r.name}[{r.count}]"
        fields = "; ".join(
            (f"[{lsb}] " if f.width == 1 else f"[{lsb + f.width - 1}:{lsb}] ") + f.name
            + (f" ({f.access})" if f.access != r.access() else "")
            + (f": {f.doc}" if f.doc else "")
            for f, lsb in zip(r.fields, _lsbs(r.fields)) if not f.name.startswith("_"))
        reset = "-" if r.reset is None else f"0x{r.reset:08X}"
        rows.append(f"| 0x{r.offset:03X} | {name} | {r.access()} | {reset} | "
                    f"{(r.__doc__ or '').strip()}: {fields} |")
    return "\n".join(rows)


def _axil_members(prefix: str, addr_width: int) -> dict:
    p = prefix
    return {
        f"{p}_awaddr": In(addr_width), f"{p}_awprot": In(3), f"{p}_awvalid": In(1),
        f"{p}_awready": Out(1),
        f"{p}_wdata": In(32), f"{p}_wstrb": In(4), f"{p}_wvalid": In(1), f"{p}_wready": Out(1),
        f"{p}_bresp": Out(2), f"{p}_bvalid": Out(1), f"{p}_bready": In(1),
        f"{p}_araddr": In(addr_width), f"{p}_arprot": In(3), f"{p}_arvalid": In(1),
        f"{p}_arready": Out(1),
        f"{p}_rdata": Out(32), f"{p}_rresp": Out(2), f"{p}_rvalid": Out(1), f"{p}_rready": In(1),
    }


# -- the top level ---------------------------------------------------------------------------

class PynqTop(wiring.Component):
    """The PYNQ top level (ports and registers: see the module docstring).

    Parameters
    ----------
    graph : PlanGraph
        The engine (:func:`lcp.hw.build.lower`), wrapped as its :class:`~lcp.hw.graph.GraphTop`.
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
        if not isinstance(graph, PlanGraph):
            raise TypeError(f"Graph must be a PlanGraph, not {graph!r}")
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
        members.update(_axil_members("s_axi_control", AXIL_ADDR_WIDTH))
        members.update({
            "s_axis_tdata": In(graph.in_width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(graph.out_width), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
        })
        super().__init__(members)

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
        for name, member in _axil_members("s_axi_control", AXIL_ADDR_WIDTH).items():
            port, theirs = getattr(self, name), getattr(regs, name)
            m.d.comb += port.eq(theirs) if member.flow == wiring.Out else theirs.eq(port)

        engine = self._graph.top()
        soft = Signal()
        m.submodules.engine = ResetInserter({"sync": soft})(engine)
        m.d.comb += soft.eq(regs.soft_reset)

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
    folding: Folding
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


def _engine_doc(info: EngineInfo, folding: Folding, report: dict) -> dict:
    return {"format": "lcp-engine", "version": 1, "top": TOP_NAME, "vlnv": VLNV,
            "pynq_top_version": PYNQ_TOP_VERSION, "generator": GENERATOR_VERSION,
            "engine": info.to_json(), "regmap": regmap_json(info), "soc": soc_json(info),
            "folding": folding.to_json(),
            "model_cycles": report.get("model_cycles", {}),
            "resources_estimate": report.get("resources_estimate", {})}


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
    (out / "lcp_engine.json").write_text(json.dumps(_engine_doc(info, b.folding, rep), indent=1))
    (out / "REGISTERS.md").write_text(
        f"# {TOP_NAME} registers (AXI4-Lite, VLNV {VLNV})\n\n{regmap_markdown()}\n")
    return PynqBuild(out, vpath, info, b.folding, rep)


#: This module's source, in the cache key: an edited top never reuses a stale build.
_SOURCE_HASH = source_digest(Path(__file__))[:12]


def cached_pynq_build(model: Model, folding: Folding, *, scope: str = "core", index: int = 0,
                      root: Path | None = None) -> PynqBuild:
    """:func:`generate_pynq` into ``root/KEY`` unless it exists (``KEY``: the engine's cache key,
    :data:`PYNQ_TOP_VERSION` and this module's source hash; ``root`` defaults to
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
