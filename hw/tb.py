"""cocotb testbench for a generated LCP design (``lcp_core`` or ``lcp_branch``).

Runs inside the simulator process started by :mod:`lcp.hw.sim`; everything it needs comes from
files in the folder named by ``$LCP_TB_DIR`` (no pickles):

``config.json``
    ``in_width``, ``out_width`` (bits), ``out_bytes`` (per frame), ``frames``, ``period_ns``,
    ``max_cycles``, ``src_pause`` / ``sink_pause`` (lists of 0/1, cycled; 1 = idle / not ready),
    ``taps`` (list of tap port names to record, may be empty), ``monitor_input`` (bool).
``in_frames.npy``
    ``uint8 (N, in_bytes)``: one packed input frame per image (:func:`lcp.hw.plumbing.pack_frames`).
``expected.npy`` (optional)
    ``uint8 (N, out_bytes)``: reference output frames for the in-order checker.

It writes ``out_frames.npy`` (``uint8 (N, out_bytes)``), ``stats.json`` (cycle stamps, checker
result, wall time) and, when taps are asked for, ``taps.npz`` (per tap: the cycle and the bytes of
every beat that moved).

Layers: :class:`Driver` (cocotbext-axi ``AxiStreamSource``), :class:`OutputMonitor`
(``AxiStreamSink``), :class:`InputMonitor` (``AxiStreamMonitor`` on ``s_axis``: what the design
really took), :class:`TapMonitor`, :class:`Checker` (in-order scoreboard against the reference
model's frames).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import convert, get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import (AxiStreamBus, AxiStreamFrame, AxiStreamMonitor, AxiStreamSink,
                           AxiStreamSource)

__all__ = ["Driver", "OutputMonitor", "InputMonitor", "TapMonitor", "Checker", "ENV_DIR",
           "run_frames"]

ENV_DIR = "LCP_TB_DIR"


class Driver:
    """Sends packed frames on ``s_axis``; records the cycle of the first word taken."""

    def __init__(self, dut, period_ns: float, pause=None):
        self.dut, self.period = dut, period_ns
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        if pause and any(pause):
            self.src.set_pause_generator(itertools.cycle(pause))
        self.first_cycle: int | None = None

    async def send(self, frames):
        for fr in frames:
            await self.src.send(AxiStreamFrame(bytes(fr)))

    async def stamp_first(self):
        """Cycle (sim time / period) at which the first input word moves."""
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            if int(dut.s_axis_tvalid.value) and int(dut.s_axis_tready.value):
                self.first_cycle = _cycle(self.period)
                return


class OutputMonitor:
    """Receives result frames on ``m_axis`` (one per image, ``tlast`` delimited)."""

    def __init__(self, dut, pause=None):
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        if pause and any(pause):
            self.sink.set_pause_generator(itertools.cycle(pause))

    async def recv(self):
        return await self.sink.recv()


class InputMonitor:
    """Watches ``s_axis``: the frames the design actually took."""

    def __init__(self, dut):
        self.mon = AxiStreamMonitor(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)

    def frames(self) -> list[bytes]:
        out = []
        while not self.mon.empty():
            out.append(bytes(self.mon.recv_nowait().tdata))
        return out


class TapMonitor:
    """Records every beat of the ``tap{k}`` diagnosis ports: (cycle, payload bytes)."""

    def __init__(self, dut, names: list[str], period_ns: float):
        self.dut, self.names, self.period = dut, names, period_ns
        self.beats = {n: [] for n in names}
        self.cycles = {n: [] for n in names}
        self.widths = {n: len(getattr(dut, f"{n}_data").value) for n in names}

    async def run(self):
        dut = self.dut
        fires = [(n, getattr(dut, f"{n}_fire"), getattr(dut, f"{n}_data")) for n in self.names]
        while True:
            await RisingEdge(dut.clk)
            for n, fire, data in fires:
                if int(fire.value):
                    v = data.value.to_unsigned()
                    self.beats[n].append(v.to_bytes((self.widths[n] + 7) // 8, "little"))
                    self.cycles[n].append(_cycle(self.period))

    def save(self, path: Path):
        arrays = {}
        for n in self.names:
            b = self.beats[n]
            width = (self.widths[n] + 7) // 8
            arrays[f"{n}_bytes"] = (np.frombuffer(b"".join(b), dtype=np.uint8).reshape(len(b), width)
                                    if b else np.zeros((0, width), dtype=np.uint8))
            arrays[f"{n}_cycles"] = np.asarray(self.cycles[n], dtype=np.int64)
        np.savez(path, **arrays)


class Checker:
    """In-order scoreboard: output frame ``k`` must equal reference frame ``k``."""

    def __init__(self, expected: np.ndarray | None):
        self.expected = expected
        self.mismatches: list[int] = []
        self.count = 0

    def check(self, frame: bytes):
        k = self.count
        self.count += 1
        if self.expected is None:
            return
        want = bytes(self.expected[k].tobytes())
        if bytes(frame) != want:
            self.mismatches.append(k)


def _cycle(period_ns: float) -> int:
    return int(round(get_sim_time("ns") / period_ns))


@cocotb.test()
async def run_frames(dut):
    """Drive every input frame, collect every output frame, write results (see module doc)."""
    d = Path(os.environ[ENV_DIR])
    cfg = json.loads((d / "config.json").read_text())
    frames = np.load(d / "in_frames.npy", allow_pickle=False)
    exp_path = d / "expected.npy"
    expected = np.load(exp_path, allow_pickle=False) if exp_path.exists() else None
    period = float(cfg.get("period_ns", 10))
    n = len(frames)

    cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    driver = Driver(dut, period, cfg.get("src_pause"))
    out = OutputMonitor(dut, cfg.get("sink_pause"))
    inp = InputMonitor(dut) if cfg.get("monitor_input") else None
    taps = TapMonitor(dut, cfg.get("taps") or [], period) if cfg.get("taps") else None
    checker = Checker(expected)

    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    t0 = time.time()
    stamp = cocotb.start_soon(driver.stamp_first())
    if taps is not None:
        cocotb.start_soon(taps.run())
    cocotb.start_soon(driver.send(frames))
    outs, last_cycles = [], []
    limit = float(cfg.get("max_cycles", 10_000_000)) * period
    try:
        for _ in range(n):
            fr = await with_timeout(out.recv(), limit, "ns")
            outs.append(bytes(fr.tdata))
            last_cycles.append(int(round(convert(fr.sim_time_end, "step", to="ns") / period))
                               if fr.sim_time_end is not None else _cycle(period))
            checker.check(fr.tdata)
        timeout = False
    except Exception as e:        # SimTimeoutError: a stalled design
        dut._log.error(f"no output frame {len(outs)}: {e}")
        timeout = True
    wall = time.time() - t0
    await ClockCycles(dut.clk, 2)
    if not stamp.done():
        stamp.cancel()

    ob = int(cfg["out_bytes"])
    arr = np.zeros((n, ob), dtype=np.uint8)
    for k, fr in enumerate(outs):
        arr[k, :min(ob, len(fr))] = np.frombuffer(fr[:ob], dtype=np.uint8)
    np.save(d / "out_frames.npy", arr)
    stats = {
        "frames_in": n, "frames_out": len(outs), "timeout": timeout,
        "first_in_cycle": driver.first_cycle, "last_out_cycles": last_cycles,
        "mismatches": checker.mismatches, "wall_seconds": wall,
        "input_frames_seen": (len(inp.frames()) if inp is not None else None),
    }
    (d / "stats.json").write_text(json.dumps(stats))
    if taps is not None:
        taps.save(d / "taps.npz")
