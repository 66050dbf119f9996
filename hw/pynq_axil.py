"""The AXI4-Lite register block of the PYNQ top (:class:`RegisterFile`) and the register map
as data (:func:`regmap_json`) and as a table (:func:`regmap_markdown`).

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
0x090       WEIGHT_BASE       rw      0x00000000  byte address of the weight image in DRAM
                                                  (``w_base`` of engines reading weights over
                                                  the HP port; register map 1.1)
==========  ================  ======  ==========  ==============================================

Watchdog (when ``WATCHDOG`` > 0): while an image is in flight and no stream word moves for
``WATCHDOG`` cycles, one flag is set, by the state at that cycle: ``OUT_BLOCKED`` when a result
word is offered and not taken (no S2MM transfer armed, or one too short), else ``IN_STARVED``
when an image is only partly received and the engine waits for its next word (the MM2S
transfer ended mid-image or stopped), else ``STALL`` (the engine neither takes nor offers a
word). Set ``WATCHDOG`` well above the engine's latency: computing an image has quiet
stretches. Unmapped addresses read 0; writes to read-only registers are ignored;
every response is OKAY (a SLVERR would become a bus error on the Zynq's GP port).
"""

from __future__ import annotations

from typing import ClassVar

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from lcp.ir import IRError

from .build import GENERATOR_VERSION
from .pynq_regs import (AXIL_ADDR_WIDTH, ID_MAGIC, REGMAP_VERSION, VLNV, EngineInfo, Field,
                        Register, _dims, _lsbs, _s32)

__all__ = ["RegisterFile", "register_values", "regmap_json", "regmap_markdown", "axil_members"]


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
    weight_base : Out(32)
        ``WEIGHT_BASE``: where an engine reading weights from DRAM finds them.
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

    class WeightBase(Register, offset=0x090, name="WEIGHT_BASE"):
        """byte address of the weight image in DRAM (the engines' w_base)"""
        fields = (Field("address", 32, "rw"),)
        reset = 0

    #: Every register, by offset.
    MAP: ClassVar[tuple[type[Register], ...]] = ()

    def __init__(self, *, info: EngineInfo):
        if not isinstance(info, EngineInfo):
            raise TypeError(f"Engine info must be an EngineInfo, not {info!r}")
        self._info = info
        self._consts = register_values(info)
        members = axil_members("s_axi_control", AXIL_ADDR_WIDTH)
        members.update({
            "run": Out(1), "clear": Out(1), "soft_reset": Out(1),
            "batch": Out(32), "watchdog": Out(32), "weight_base": Out(32),
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
        weight_base = Signal(32, init=R.WeightBase.reset)
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
                with m.Case(R.WeightBase.offset >> 2):
                    m.d.sync += weight_base.eq((weight_base & ~mask) | wbits)
        # sticky flags: a flag raised in the same cycle as a clear stays set
        m.d.sync += error.as_value().eq(
            Mux(pulse_clear, 0, error.as_value() & ~err_clear) | self.error_set.as_value())
        m.d.comb += [self.run.eq(ctrl.run), self.clear.eq(pulse_clear),
                     self.soft_reset.eq(pulse_reset), self.batch.eq(batch),
                     self.watchdog.eq(watchdog), self.weight_base.eq(weight_base)]

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
            R.Watchdog.offset: watchdog, R.WeightBase.offset: weight_base,
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


def axil_members(prefix: str, addr_width: int) -> dict:
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
