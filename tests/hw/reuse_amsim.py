"""Run the reused engine in Amaranth's own simulator with a small AXI4 read slave as the DRAM.

The slave takes a read address every cycle (``arready`` high) and answers the bursts in order,
back to back, the first beat ``latency`` cycles after the cycle its address was taken. The
source offers the input words back to back from cycle 0, the output is always ready. Returns
the cycles at which every input word was taken and every output word offered, and the words.
"""

from __future__ import annotations

import collections

import numpy as np
from amaranth.sim import Simulator

from lcp.hw.reuse_engine import ReusedEngine

__all__ = ["simulate_reused"]


def simulate_reused(prog, words: list[int], image: np.ndarray, *, base: int = 0x10000,
                    latency: int = 3, max_cycles: int = 500_000):
    """``(taken cycles, [(cycle, word), ...])`` of ``prog``'s engine on input ``words``."""
    dut = ReusedEngine(prog)
    img = bytes(np.asarray(image, dtype=np.uint8))
    n_out = prog.out_words * (len(words) // prog.in_words)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    taken, got = [], []

    async def dram(ctx):
        bursts, cyc = collections.deque(), 0
        ctx.set(dut.m_axi_arready, 1)
        while True:
            ready = bursts and bursts[0][0] <= cyc
            if ready:
                _, addr, n, k = bursts[0]
                off = addr - base + 8 * k
                ctx.set(dut.m_axi_rdata, int.from_bytes(img[off:off + 8], "little"))
                ctx.set(dut.m_axi_rlast, int(k == n - 1))
            ctx.set(dut.m_axi_rvalid, int(bool(ready)))
            _, _, arv, ara, arl, rv, rr = await ctx.tick().sample(
                dut.m_axi_arvalid, dut.m_axi_araddr, dut.m_axi_arlen, dut.m_axi_rvalid,
                dut.m_axi_rready)
            if arv:
                start = max(cyc + latency, bursts[-1][0] + bursts[-1][2] if bursts else 0)
                bursts.append([start, ara, arl + 1, 0])
            if rv and rr:
                bursts[0][3] += 1
                if bursts[0][3] == bursts[0][2]:
                    bursts.popleft()
            cyc += 1

    async def stream(ctx):
        ctx.set(dut.w_base, base)
        ctx.set(dut.o_stream.ready, 1)
        k = cyc = 0
        while len(got) < n_out and cyc < max_cycles:
            ctx.set(dut.i_stream.valid, int(k < len(words)))
            if k < len(words):
                ctx.set(dut.i_stream.payload, words[k])
            _, _, ir, ov, op = await ctx.tick().sample(dut.i_stream.ready, dut.o_stream.valid,
                                                       dut.o_stream.payload)
            if k < len(words) and ir:
                taken.append(cyc)
                k += 1
            if ov:
                got.append((cyc, int(op)))
            cyc += 1

    sim.add_process(dram)
    sim.add_testbench(stream)
    sim.run()
    return taken, got
