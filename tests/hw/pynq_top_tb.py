"""cocotb tests of the PYNQ top ``lcp_pynq`` (run by tests/hw/test_pynq_top.py).

Layers: :class:`Tb` holds the drivers (cocotbext-axi ``AxiLiteMaster`` on ``s_axi_control``,
``AxiStreamSource`` on ``s_axis``) and the monitor (``AxiStreamSink`` on ``m_axis``); the
reference model is the golden reference's output, packed into frames by the pytest side
(``$LCP_PYNQ_TB_DIR``: ``expected.json``, ``in_frames.npy``, ``out_frames.npy``); the checks
compare in order.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

CTRL, STATUS, ERROR, BATCH, WATCHDOG = 0x08, 0x0C, 0x10, 0x14, 0x18
CYCLES, BUSY_CYCLES, FRAMES_IN, FRAMES_OUT = 0x20, 0x28, 0x30, 0x34
WEIGHT_BASE = 0x90
RUN, CLEAR, SOFT_RESET = 1, 2, 4
PARTIAL_FRAME, IN_STARVED, OUT_BLOCKED, STALL = 1, 2, 4, 8
BUSY, IDLE = 2, 4


class Tb:
    """Clock, reset, the bus drivers and the reference data of one test."""

    def __init__(self, dut):
        self.dut = dut
        d = Path(os.environ["LCP_PYNQ_TB_DIR"])
        self.exp = json.loads((d / "expected.json").read_text())
        self.inp = np.load(d / "in_frames.npy", allow_pickle=False)
        self.out = np.load(d / "out_frames.npy", allow_pickle=False)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.aclk,
                                  dut.aresetn, reset_active_level=False)
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk,
                                   dut.aresetn, reset_active_level=False)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk,
                                  dut.aresetn, reset_active_level=False)

    async def reset(self):
        cocotb.start_soon(Clock(self.dut.aclk, 10, unit="ns").start())
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, 5)
        self.dut.aresetn.value = 1
        await RisingEdge(self.dut.aclk)

    async def rd(self, addr: int) -> int:
        r = await self.axil.read(addr, 4)
        return int.from_bytes(bytes(r.data), "little")

    async def wr(self, addr: int, value: int) -> None:
        await self.axil.write(addr, int(value).to_bytes(4, "little"))

    async def recv(self, cycles: int = 200_000) -> bytes:
        fr = await with_timeout(self.sink.recv(), cycles * 10, "ns")
        return bytes(fr.tdata)


@cocotb.test()
async def registers(dut):
    """Constant registers equal the build's values; writable ones read back; strobes, W1C,
    pulses, read-only and unmapped addresses behave as documented."""
    tb = Tb(dut)
    await tb.reset()
    for off, want in tb.exp["consts"].items():
        got = await tb.rd(int(off))
        assert got == want, f"register 0x{int(off):03X}: 0x{got:08X} != 0x{want:08X}"
    assert await tb.rd(BATCH) == 1
    assert await tb.rd(WATCHDOG) == 0
    assert await tb.rd(CTRL) == 0
    assert await tb.rd(ERROR) == 0
    st = await tb.rd(STATUS)
    assert st & IDLE and not st & BUSY, hex(st)
    await tb.wr(BATCH, 0x1234_5678)
    assert await tb.rd(BATCH) == 0x1234_5678
    await tb.axil.write(BATCH + 1, b"\xAA")             # one byte lane (WSTRB = 0b0010)
    assert await tb.rd(BATCH) == 0x1234_AA78
    await tb.wr(WATCHDOG, 77)
    assert await tb.rd(WATCHDOG) == 77
    assert await tb.rd(WEIGHT_BASE) == 0
    await tb.wr(WEIGHT_BASE, 0x1001_2000)
    assert await tb.rd(WEIGHT_BASE) == 0x1001_2000
    await tb.axil.write(WEIGHT_BASE + 3, b"\x3F")       # byte lane 3 (WSTRB = 0b1000)
    assert await tb.rd(WEIGHT_BASE) == 0x3F01_2000
    await tb.wr(0x000, 0)                                # ID is read-only
    assert await tb.rd(0x000) == tb.exp["consts"]["0"]
    assert await tb.rd(0x800) == 0                       # unmapped
    await tb.wr(CTRL, RUN | CLEAR | SOFT_RESET)
    assert await tb.rd(CTRL) == RUN                      # pulses read 0
    c0 = await tb.rd(CYCLES)
    c1 = await tb.rd(CYCLES)
    assert c1 > c0 and await tb.rd(CYCLES + 4) == 0
    await tb.wr(CTRL, CLEAR)
    assert await tb.rd(CYCLES) < c1


async def _check_batch(tb, pause_src, pause_sink):
    n = len(tb.inp)
    if pause_src:
        tb.src.set_pause_generator(itertools.cycle(pause_src))
    if pause_sink:
        tb.sink.set_pause_generator(itertools.cycle(pause_sink))
    await tb.wr(CTRL, CLEAR | RUN)
    await tb.wr(BATCH, n)
    # like the DMA's MM2S: one packet, tlast on its last word only
    await tb.src.send(AxiStreamFrame(tb.inp.tobytes()))
    got = await tb.recv()
    assert got == tb.out.tobytes(), "batched results differ from the reference (golden)"
    assert await tb.rd(FRAMES_IN) == n and await tb.rd(FRAMES_OUT) == n
    assert await tb.rd(BUSY_CYCLES) > 0
    st = await tb.rd(STATUS)
    assert st & IDLE and await tb.rd(ERROR) == 0, hex(st)
    tb.src.clear_pause_generator()
    tb.sink.clear_pause_generator()
    tb.sink.pause = False


@cocotb.test()
async def stream_batch(dut):
    """All images as one packet, results as one packet (tlast after BATCH results)."""
    tb = Tb(dut)
    await tb.reset()
    await _check_batch(tb, None, None)


@cocotb.test()
async def stream_batch_idle_backpressure(dut):
    """The same with an idle source and a back-pressuring sink ([1, 1, 1, 0] cycled)."""
    tb = Tb(dut)
    await tb.reset()
    await _check_batch(tb, [1, 1, 1, 0], [1, 1, 1, 0])


@cocotb.test()
async def stream_per_frame(dut):
    """BATCH = 1: one result packet per image, in order."""
    tb = Tb(dut)
    await tb.reset()
    await tb.wr(CTRL, RUN)
    for fr in tb.inp:
        await tb.src.send(AxiStreamFrame(fr.tobytes()))
    for k, want in enumerate(tb.out):
        assert await tb.recv() == want.tobytes(), f"result {k}"


@cocotb.test()
async def run_gates_input(dut):
    """Without CTRL.RUN no input word is taken; setting it lets the image through."""
    tb = Tb(dut)
    await tb.reset()
    await tb.src.send(AxiStreamFrame(tb.inp[0].tobytes()))
    await ClockCycles(dut.aclk, 100)
    assert int(dut.s_axis_tready.value) == 0
    assert await tb.rd(FRAMES_IN) == 0
    await tb.wr(CTRL, RUN)
    assert await tb.recv() == tb.out[0].tobytes()


@cocotb.test()
async def partial_frame_and_soft_reset(dut):
    """tlast inside an image sets ERROR.PARTIAL_FRAME; W1C clears it; SOFT_RESET drops the
    partial image; the next image is computed correctly."""
    tb = Tb(dut)
    await tb.reset()
    await tb.wr(CTRL, RUN)
    word = tb.exp["in_width"] // 8
    await tb.src.send(AxiStreamFrame(tb.inp[0].tobytes()[:-word]))
    await tb.src.wait()
    await ClockCycles(dut.aclk, 5)
    assert await tb.rd(ERROR) == PARTIAL_FRAME
    assert await tb.rd(STATUS) & BUSY
    await tb.wr(ERROR, PARTIAL_FRAME)
    assert await tb.rd(ERROR) == 0
    await tb.wr(CTRL, RUN | SOFT_RESET)
    await ClockCycles(dut.aclk, 2)
    assert await tb.rd(STATUS) & IDLE
    await tb.src.send(AxiStreamFrame(tb.inp[1].tobytes()))
    assert await tb.recv() == tb.out[1].tobytes()


@cocotb.test()
async def watchdog_flags(dut):
    """WATCHDOG: a result nobody takes raises OUT_BLOCKED; half an image raises IN_STARVED."""
    tb = Tb(dut)
    await tb.reset()
    await tb.wr(CTRL, RUN)
    await tb.wr(WATCHDOG, 2000)          # above the latency: computing has quiet stretches
    tb.sink.pause = True
    await tb.src.send(AxiStreamFrame(tb.inp[0].tobytes()))
    for _ in range(100):
        await ClockCycles(dut.aclk, 100)
        if await tb.rd(ERROR):
            break
    assert await tb.rd(ERROR) == OUT_BLOCKED
    tb.sink.pause = False
    assert await tb.recv() == tb.out[0].tobytes()
    await tb.wr(ERROR, 0xF)
    half = tb.inp[1].tobytes()[:tb.exp["in_width"] // 8]
    await tb.src.send(AxiStreamFrame(half))
    await ClockCycles(dut.aclk, 2500)
    assert await tb.rd(ERROR) & IN_STARVED
    assert not await tb.rd(ERROR) & (OUT_BLOCKED | STALL)
