"""AXI4 read master: a block of 64-bit beats from DRAM onto a stream.

:class:`AxiReadMaster` takes one command (``addr``, ``beats``) on ``cmd`` when idle and issues
the reads as INCR bursts of at most 16 beats (the Zynq-7000 HP ports are AXI3: 16 beats at
most), up to ``outstanding`` bursts in flight; the data beats leave on ``o_stream`` in order
(``rready`` is ``o_stream.ready``). The next command is taken as soon as the last burst's
address has been accepted, before its data has arrived. The first read address is offered the
cycle after the command is taken.

Ports (Verilog names as written, the ``m_axi_`` prefix of an AXI4 master):
``m_axi_arid[3:0]`` (always 0: one ID, data in order), ``m_axi_rid[3:0]``, ``m_axi_araddr[31:0] m_axi_arlen[7:0] m_axi_arsize[2:0]
m_axi_arburst[1:0] m_axi_arvalid m_axi_arready m_axi_rdata[63:0] m_axi_rresp[1:0]
m_axi_rlast m_axi_rvalid m_axi_rready``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiReadMaster", "BURST", "CMD_LAYOUT", "axi_read_signature"]

#: Beats per burst (AXI3 limit of the Zynq HP ports).
BURST = 16
#: A read command: byte address and number of 64-bit beats.
CMD_LAYOUT = data.StructLayout({"addr": unsigned(32), "beats": unsigned(24)})


def axi_read_signature() -> dict:
    """The AXI4 read channels of a master with 64-bit data (component members)."""
    return {"m_axi_arid": Out(4), "m_axi_rid": In(4), "m_axi_araddr": Out(32),
            "m_axi_arlen": Out(8), "m_axi_arsize": Out(3),
            "m_axi_arburst": Out(2), "m_axi_arvalid": Out(1), "m_axi_arready": In(1),
            "m_axi_rdata": In(64), "m_axi_rresp": In(2), "m_axi_rlast": In(1),
            "m_axi_rvalid": In(1), "m_axi_rready": Out(1)}


class AxiReadMaster(wiring.Component):
    """See the module docstring.

    Members
    -------
    cmd : In(stream.Signature(CMD_LAYOUT))
    o_stream : Out(stream.Signature(unsigned(64)))
    m_axi_* : the AXI4 read channels
    """

    def __init__(self, outstanding: int = 8):
        self.outstanding = int(outstanding)
        super().__init__({"cmd": In(stream.Signature(CMD_LAYOUT)),
                          "o_stream": Out(stream.Signature(unsigned(64))),
                          **axi_read_signature()})

    def elaborate(self, platform):
        m = Module()
        addr = Signal(32)
        left = Signal(24)                     # beats whose address is not yet issued
        inflight = Signal(range(self.outstanding + 1))
        ar_hs = Signal()
        r_last = Signal()
        m.d.comb += [
            self.cmd.ready.eq(left == 0),
            self.m_axi_arid.eq(0),
            self.m_axi_araddr.eq(addr),
            self.m_axi_arlen.eq(Mux(left >= BURST, BURST - 1, left - 1)),
            self.m_axi_arsize.eq(3),            # 8 bytes per beat
            self.m_axi_arburst.eq(1),           # INCR
            self.m_axi_arvalid.eq((left != 0) & (inflight < self.outstanding)),
            ar_hs.eq(self.m_axi_arvalid & self.m_axi_arready),
            self.o_stream.payload.eq(self.m_axi_rdata),
            self.o_stream.valid.eq(self.m_axi_rvalid),
            self.m_axi_rready.eq(self.o_stream.ready),
            r_last.eq(self.m_axi_rvalid & self.m_axi_rready & self.m_axi_rlast),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [addr.eq(self.cmd.payload.addr), left.eq(self.cmd.payload.beats)]
        with m.Elif(ar_hs):
            m.d.sync += [addr.eq(addr + BURST * 8),
                         left.eq(Mux(left >= BURST, left - BURST, 0))]
        m.d.sync += inflight.eq(inflight + ar_hs - r_last)
        return m
