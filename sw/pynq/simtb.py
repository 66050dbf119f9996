"""The simulated PL of the PYNQ stand-in: the Verilated ``lcp_pynq`` top, an AXI DMA model and a
request server, run by cocotb inside the simulator.

:func:`serve` (the cocotb test) connects to the Unix socket named in its config and answers the
requests of :class:`lcp.sw.pynq.sim.SimDevice` (:mod:`lcp.sw.pynq.wire`):

- register reads and writes in the engine's window are real AXI4-Lite transactions on the top's
  ``s_axi_control`` port (cocotbext-axi ``AxiLiteMaster``);
- when the top has an AXI4 read master (``m_axi_ar*``/``m_axi_r*``: the reused engine reading
  its weights, HP0 on the board), :class:`DdrTarget` answers it (cocotbext-axi
  ``AxiSlaveRead``) from the same DDR file, physical address ``ddr_base + k`` = byte ``k``; a
  read outside the file answers ``SLVERR``;
- register reads and writes in the DMA's window go to :class:`DmaModel`, a model of the Xilinx
  AXI DMA in simple mode (PG021: ``DMACR``/``DMASR``/address/``LENGTH`` per channel; a
  ``LENGTH`` write starts a transfer). MM2S reads the shared DDR file and sends the bytes on
  ``s_axis`` (``AxiStreamSource``, ``tlast`` on the last word); S2MM takes one packet from
  ``m_axis`` (``AxiStreamSink``, ready only while a transfer is armed) and writes it to the DDR
  file; a packet longer than ``LENGTH`` sets ``DMAIntErr`` and halts the channel, as the IP does.

Simulated time advances while a DMA channel is busy (in chunks of ``chunk`` cycles; requests
that arrive meanwhile are answered at the end of the chunk, like a CPU that polls the status
register every ``chunk`` cycles) and during AXI4-Lite transactions; while both channels are
idle the simulation waits for the next request and the PL clock stands still.

Config (JSON file named by ``$LCP_PYNQ_SIM_CONFIG``): ``socket``, ``ddr_path``, ``ddr_base``,
``ddr_bytes``, ``engine_base``, ``engine_range``, ``dma_base``, ``dma_range``, ``period_ns``,
``chunk``, ``src_pause``, ``sink_pause`` (0/1 lists, cycled; 1 = idle / not ready).

``python -m lcp.sw.pynq.simtb CONFIG.json`` runs the compiled simulation (cocotb runner) with
that config; :func:`compile_top` compiles a build's ``lcp_pynq.v`` once.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import select
import socket
import sys
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, First, RisingEdge, Timer
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiReadBus, AxiSlaveRead, AxiStreamBus,
                           AxiStreamFrame, AxiStreamSink, AxiStreamSource)

from lcp.cache import build_once
from lcp.hw.sim import verilator_env

from . import wire as w

__all__ = ["DmaModel", "DdrTarget", "serve", "compile_top", "sim_dir", "run", "ENV_CONFIG", "TOP"]

ENV_CONFIG = "LCP_PYNQ_SIM_CONFIG"
TOP = "lcp_pynq"


class _Channel:
    """One DMA channel's registers (``base`` 0x00 for MM2S, 0x30 for S2MM)."""

    def __init__(self, base: int):
        self.base = base
        self.reset()

    def reset(self):
        self.cr = 0
        self.sr = w.SR_HALTED
        self.addr = 0
        self.addr_msb = 0
        self.length = 0
        self.busy = False
        self.task = None

    @property
    def running(self) -> bool:
        return bool(self.cr & w.CR_RS) and not self.sr & w.SR_HALTED


class DmaModel:
    """Xilinx AXI DMA, simple (direct register) mode, both channels (see the module docstring).

    Parameters
    ----------
    src, sink : AxiStreamSource, AxiStreamSink
        The stream ends on the top's ``s_axis`` (MM2S) and ``m_axis`` (S2MM).
    ddr : mmap.mmap
        The shared DDR file; physical address ``ddr_base + k`` is byte ``k``.
    """

    def __init__(self, src, sink, ddr, ddr_base: int, ddr_bytes: int):
        self.src, self.sink, self.ddr = src, sink, ddr
        self.ddr_base, self.ddr_bytes = ddr_base, ddr_bytes
        self.mm2s, self.s2mm = _Channel(w.DMA_MM2S), _Channel(w.DMA_S2MM)
        self.changed = Event()
        self.sink_pattern: list[int] = []
        self.sink.set_pause_generator(self._sink_pause())

    @property
    def busy(self) -> bool:
        return self.mm2s.busy or self.s2mm.busy

    def _sink_pause(self):
        k = 0
        while True:
            pat = self.sink_pattern
            paused = not self.s2mm.busy or (bool(pat[k % len(pat)]) if pat else False)
            k += 1
            yield paused

    def _channel(self, off: int) -> tuple[_Channel, int]:
        ch = self.s2mm if off >= w.DMA_S2MM else self.mm2s
        return ch, off - ch.base

    def read(self, off: int) -> int:
        ch, reg = self._channel(off)
        return {w.DMACR: ch.cr, w.DMASR: ch.sr, w.DMA_ADDR: ch.addr, w.DMA_ADDR_MSB: ch.addr_msb,
                w.DMA_LENGTH: ch.length}.get(reg, 0)

    def write(self, off: int, value: int) -> None:
        ch, reg = self._channel(off)
        if reg == w.DMACR:
            if value & w.CR_RESET:
                self._abort(ch)
                ch.reset()
                return
            ch.cr = value
            if value & w.CR_RS:
                ch.sr &= ~w.SR_HALTED
            else:
                self._abort(ch)
                ch.sr |= w.SR_HALTED
        elif reg == w.DMASR:
            ch.sr &= ~(value & (w.SR_IOC_IRQ | w.SR_ERR_IRQ | 0x2000))
        elif reg == w.DMA_ADDR:
            ch.addr = value
        elif reg == w.DMA_ADDR_MSB:
            ch.addr_msb = value
        elif reg == w.DMA_LENGTH:
            ch.length = value & ((1 << 26) - 1)
            if ch.running and not ch.busy:
                self._start(ch)

    def _error(self, ch: _Channel, bit: int) -> None:
        ch.sr |= bit | w.SR_ERR_IRQ | w.SR_HALTED
        ch.busy = False
        self.changed.set()

    def _start(self, ch: _Channel) -> None:
        addr = (ch.addr_msb << 32) | ch.addr
        off = addr - self.ddr_base
        if ch.length == 0:
            return self._error(ch, w.SR_INT_ERR)
        if off < 0 or off + ch.length > self.ddr_bytes:
            return self._error(ch, w.SR_DEC_ERR)
        ch.sr &= ~w.SR_IDLE
        ch.busy = True
        run = self._mm2s if ch is self.mm2s else self._s2mm
        ch.task = cocotb.start_soon(run(off, ch.length))

    def _done(self, ch: _Channel) -> None:
        ch.busy = False
        ch.task = None
        ch.sr |= w.SR_IDLE | w.SR_IOC_IRQ
        self.changed.set()

    async def _mm2s(self, off: int, n: int) -> None:
        await self.src.send(AxiStreamFrame(bytes(self.ddr[off:off + n])))
        await self.src.wait()
        self._done(self.mm2s)

    async def _s2mm(self, off: int, n: int) -> None:
        frame = await self.sink.recv()
        data = bytes(frame.tdata)
        take = min(len(data), n)
        self.ddr[off:off + take] = data[:take]
        if len(data) > n:
            self.s2mm.length = n
            return self._error(self.s2mm, w.SR_INT_ERR)
        self.s2mm.length = len(data)
        self._done(self.s2mm)

    def _abort(self, ch: _Channel) -> None:
        """Stop a channel: drop the transfer and the stream state (queued and partly sent or
        received packets), as the IP's channel halt does."""
        if ch.task is not None and not ch.task.done():
            ch.task.cancel()
        ch.task = None
        end = self.src if ch is self.mm2s else self.sink
        end.clear()
        # cocotbext-axi's reset hook kills the bus coroutine (and its packet in flight) and
        # drives tvalid/tready low; de-asserting it starts a fresh one
        end._handle_reset(True)
        end._handle_reset(False)
        if ch.busy:
            ch.busy = False
            self.changed.set()


class DdrTarget:
    """The shared DDR file as the target of an ``AxiSlaveRead`` (physical addresses)."""

    def __init__(self, ddr, ddr_base: int, ddr_bytes: int):
        self.ddr, self.ddr_base, self.ddr_bytes = ddr, ddr_base, ddr_bytes
        self.reads = 0

    async def read(self, address: int, length: int) -> bytes:
        off = address - self.ddr_base
        if off < 0 or off + length > self.ddr_bytes:
            raise ValueError(f"AXI read at 0x{address:08X}: outside the DDR")
        self.reads += 1
        return bytes(self.ddr[off:off + length])


def _pattern(bits) -> list[int]:
    return [1 if b else 0 for b in (bits or [])]


@cocotb.test()
async def serve(dut):
    """Answer the stand-in's requests until it quits or disconnects (see the module doc)."""
    cfg = json.loads(Path(os.environ[ENV_CONFIG]).read_text())
    period = float(cfg.get("period_ns", 10))
    chunk = int(cfg.get("chunk", 4096))
    cocotb.start_soon(Clock(dut.aclk, period, unit="ns").start())
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.aclk, dut.aresetn,
                         reset_active_level=False)
    src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk, dut.aresetn,
                          reset_active_level=False)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk, dut.aresetn,
                         reset_active_level=False)
    fd = os.open(cfg["ddr_path"], os.O_RDWR)
    ddr = mmap.mmap(fd, int(cfg["ddr_bytes"]))
    os.close(fd)
    dma = DmaModel(src, sink, ddr, int(cfg["ddr_base"]), int(cfg["ddr_bytes"]))
    dma.sink_pattern = _pattern(cfg.get("sink_pause"))
    if hasattr(dut, "m_axi_arvalid"):
        AxiSlaveRead(AxiReadBus.from_prefix(dut, "m_axi"), dut.aclk, dut.aresetn,
                     target=DdrTarget(ddr, int(cfg["ddr_base"]), int(cfg["ddr_bytes"])),
                     reset_active_level=False)
    if any(_pattern(cfg.get("src_pause"))):
        src.set_pause_generator(itertools.cycle(_pattern(cfg["src_pause"])))

    dut.aresetn.value = 0
    await ClockCycles(dut.aclk, 8)
    dut.aresetn.value = 1
    await RisingEdge(dut.aclk)

    eb, er = int(cfg["engine_base"]), int(cfg["engine_range"])
    db, dr = int(cfg["dma_base"]), int(cfg["dma_range"])

    def cycle() -> int:
        return int(get_sim_time("ns") // period)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(cfg["socket"])
    w.send_reply(sock, w.OK, 0, cycle(), json.dumps({"top": TOP, "pid": os.getpid()}).encode())

    async def handle(op, addr, value, payload) -> bool:
        try:
            if op == w.OP_READ:
                if eb <= addr < eb + er:
                    r = await axil.read(addr - eb, 4)
                    v = int.from_bytes(bytes(r.data), "little")
                elif db <= addr < db + dr:
                    v = dma.read(addr - db)
                else:
                    raise ValueError(f"read at 0x{addr:08X}: no slave at this address")
                w.send_reply(sock, w.OK, v, cycle())
            elif op == w.OP_WRITE:
                if eb <= addr < eb + er:
                    await axil.write(addr - eb, int(value & 0xFFFF_FFFF).to_bytes(4, "little"))
                elif db <= addr < db + dr:
                    dma.write(addr - db, int(value & 0xFFFF_FFFF))
                else:
                    raise ValueError(f"write at 0x{addr:08X}: no slave at this address")
                w.send_reply(sock, w.OK, 0, cycle())
            elif op == w.OP_CYCLE:
                w.send_reply(sock, w.OK, cycle(), cycle())
            elif op == w.OP_PAUSE:
                d = json.loads(payload.decode())
                pat = _pattern(d.get("src_pause"))
                src.set_pause_generator(itertools.cycle(pat) if any(pat) else None)
                if not any(pat):
                    src.pause = False
                dma.sink_pattern = _pattern(d.get("sink_pause"))
                w.send_reply(sock, w.OK, 0, cycle())
            elif op == w.OP_QUIT:
                w.send_reply(sock, w.OK, 0, cycle())
                return False
            else:
                raise ValueError(f"unknown request {op}")
        except (ValueError, KeyError) as e:
            w.send_reply(sock, w.ERR, 0, cycle(), str(e).encode())
        return True

    try:
        while True:
            if dma.busy:
                dma.changed.clear()
                await First(dma.changed.wait(), Timer(chunk * period, unit="ns"))
                while select.select([sock], [], [], 0)[0]:
                    if not await handle(*w.recv_request(sock)):
                        return
            else:
                sock.setblocking(True)
                if not await handle(*w.recv_request(sock)):
                    return
    except w.WireError:
        return          # the driver went away
    finally:
        sock.close()
        ddr.close()


# -- compiling and running ------------------------------------------------------------------

def sim_dir(build_dir: Path, waves: bool = False) -> Path:
    return Path(build_dir) / ("pynq_sim_waves" if waves else "pynq_sim")


def compile_top(build_dir: str | Path, waves: bool = False) -> float:
    """Compile ``BUILD/lcp_pynq.v`` with Verilator once (kept in ``BUILD/pynq_sim``); seconds
    spent (0 when already compiled). Concurrent callers wait (:func:`lcp.cache.build_once`)."""
    build_dir = Path(build_dir)

    def build(d: Path) -> float:
        verilator_env()
        from cocotb_tools.runner import get_runner
        t0 = time.time()
        # the PyPI wheel's verilated.mk leaves the precompiled-header include flag empty
        old = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = ((old + " ") if old else "") + "CFG_CXXFLAGS_PCH_I=-include"
        try:
            get_runner("verilator").build(
                sources=[build_dir / f"{TOP}.v"], hdl_toplevel=TOP, build_dir=d,
                build_args=["-Wno-fatal"], waves=waves, timescale=("1ns", "1ps"),
                log_file=build_dir / (d.name + ".log"))
        finally:
            if old is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = old
        return time.time() - t0

    return build_once(build_dir, sim_dir(build_dir, waves).name, build, lambda _: 0.0)


def run(config_path: str | Path) -> int:
    """Run the compiled simulation with ``config_path`` (blocks until the driver quits)."""
    cfg_path = Path(config_path).resolve()
    cfg = json.loads(cfg_path.read_text())
    verilator_env()
    from cocotb_tools.runner import get_runner
    waves = bool(cfg.get("waves"))
    runner = get_runner("verilator")
    env = {ENV_CONFIG: str(cfg_path),
           "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")}
    runner.test(test_module="lcp.sw.pynq.simtb", hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
                build_dir=sim_dir(Path(cfg["build_dir"]), waves), test_dir=cfg_path.parent,
                extra_env=env, waves=waves, results_xml=str(cfg_path.parent / "results.xml"),
                log_file=cfg_path.parent / "sim.log")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
