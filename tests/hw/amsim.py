"""Run a :class:`~lcp.hw.graph.PlanGraph` top in Amaranth's own simulator.

One testbench drives ``s_axis`` (the source side), another takes ``m_axis`` (the sink side);
both can insert idle/back-pressure cycles. Returns the output frames and the cycles at which the
first input word and every last output word moved, for comparison with the cycle model.
"""

from __future__ import annotations

import itertools

import numpy as np
from amaranth.sim import Simulator

from lcp.hw.plumbing import pack_frames, unpack_frames, words_per_frame

__all__ = ["simulate_graph"]


def simulate_graph(graph, xq: np.ndarray, *, src_pause=None, sink_pause=None,
                   max_cycles=200_000):
    top = graph.top()
    in_fmt, out_fmt = graph.in_fmt, graph.out_fmt
    win, wout = graph.in_width, graph.out_width
    frames = pack_frames(xq, in_fmt, win)
    words = []
    for fr in frames:
        n = len(fr) * 8 // win
        for k in range(n):
            words.append((int.from_bytes(fr[k * win // 8:(k + 1) * win // 8], "little"),
                          k == n - 1))
    n_out_words = words_per_frame(out_fmt, wout) * len(xq)
    got: list[int] = []
    stamps = {"first_in": None, "last_out": []}
    sim = Simulator(top)
    sim.add_clock(1e-8)
    src_pause = itertools.cycle(src_pause or [0])
    sink_pause = itertools.cycle(sink_pause or [0])

    async def source(ctx):
        cyc = 0
        k = 0
        while k < len(words):
            pause = next(src_pause)
            if pause:
                ctx.set(top.s_axis_tvalid, 0)
                await ctx.tick()
                cyc += 1
                continue
            data, last = words[k]
            ctx.set(top.s_axis_tdata, data)
            ctx.set(top.s_axis_tlast, int(last))
            ctx.set(top.s_axis_tvalid, 1)
            _, _, ready = await ctx.tick().sample(top.s_axis_tready)
            if ready:
                if stamps["first_in"] is None:
                    stamps["first_in"] = cyc
                k += 1
            cyc += 1
        ctx.set(top.s_axis_tvalid, 0)

    async def sink(ctx):
        cyc = 0
        per = words_per_frame(out_fmt, wout)
        while len(got) < n_out_words:
            if cyc > max_cycles:
                raise TimeoutError(f"no output after {max_cycles} cycles ({len(got)} words)")
            pause = next(sink_pause)
            ctx.set(top.m_axis_tready, 0 if pause else 1)
            _, _, valid, data, last = await ctx.tick().sample(
                top.m_axis_tvalid, top.m_axis_tdata, top.m_axis_tlast)
            if valid and not pause:
                got.append(data)
                if len(got) % per == 0:
                    assert last, "tlast missing on the last word of an image"
                    stamps["last_out"].append(cyc)
                else:
                    assert not last, "tlast before the last word of an image"
            cyc += 1

    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    per = words_per_frame(out_fmt, wout)
    out_frames = [b"".join(w.to_bytes(wout // 8, "little") for w in got[f * per:(f + 1) * per])
                  for f in range(len(xq))]
    return unpack_frames(out_frames, out_fmt), stamps


def stream_run(dut, inputs: dict[str, list[list[int]]], outputs: dict[str, int], *,
               src_pause=None, sink_pause=None, max_cycles=50_000):
    """Drive stream ports of ``dut`` beat by beat and collect output beats.

    ``inputs``: port name -> list of beats (each a list of lane values); ``outputs``: port
    name -> number of beats to collect. One testbench per port. Returns port -> beats.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = {k: [] for k in outputs}

    def lanes(port):
        p = getattr(dut, port).payload
        return [p[i] for i in range(len(p))] if hasattr(p, "__len__") else [p]

    def make_src(port, beats, seed):
        pause = itertools.cycle(src_pause or [0])

        async def src(ctx):
            s = getattr(dut, port)
            ls = lanes(port)
            k = 0
            while k < len(beats):
                if next(pause):
                    ctx.set(s.valid, 0)
                    await ctx.tick()
                    continue
                for sig, v in zip(ls, beats[k]):
                    ctx.set(sig, int(v))
                ctx.set(s.valid, 1)
                _, _, ready = await ctx.tick().sample(s.ready)
                if ready:
                    k += 1
            ctx.set(s.valid, 0)
        return src

    def make_sink(port, n):
        pause = itertools.cycle(sink_pause or [0])

        async def sink(ctx):
            s = getattr(dut, port)
            ls = lanes(port)
            cyc = 0
            while len(got[port]) < n:
                if cyc > max_cycles:
                    raise TimeoutError(f"{port}: {len(got[port])} of {n} beats")
                p = next(pause)
                ctx.set(s.ready, 0 if p else 1)
                res = await ctx.tick().sample(s.valid, *ls)
                valid, vals = res[2], res[3:]
                if valid and not p:
                    got[port].append([int(v) for v in vals])
                cyc += 1
        return sink

    for k, (port, beats) in enumerate(inputs.items()):
        sim.add_testbench(make_src(port, beats, k))
    for port, n in outputs.items():
        sim.add_testbench(make_sink(port, n))
    sim.run()
    return got
