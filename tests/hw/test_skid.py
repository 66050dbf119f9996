"""Register slices (``link_reg``): the slice alone against its take rule, and whole graphs with
a slice on every link against the golden reference and the cycle model."""

import numpy as np
import pytest
from amaranth.lib import stream
from amaranth.sim import Simulator

from lcp.hw.folding import Folding
from lcp.hw.graph import lower_branch
from lcp.hw.skid import RegisterSlice, slice_resources, slice_taken
from lcp.ir import IRError

from tests.hw.irgen import Builder
from tests.hw.test_engines import chain_model, check


@pytest.mark.parametrize("seed", range(3))
def test_register_slice_takes_beats_by_its_rule(seed):
    """Random producer gaps and consumer stalls: the beats leave in order, each one cycle at
    least after it entered, and the cycles the slice took them are :func:`slice_taken` of the
    cycles they were first offered and the cycles the consumer took them."""
    rng = np.random.default_rng(seed)
    n = 60
    gaps = rng.integers(0, 3, size=n)
    stall = rng.random(400) < 0.45
    dut = RegisterSlice(stream.Signature(8))
    offered, taken, accepted, beats = [], [], [], []

    async def producer(ctx):
        cyc = 0
        for k in range(n):
            for _ in range(int(gaps[k])):
                ctx.set(dut.i_stream.valid, 0)
                await ctx.tick()
                cyc += 1
            ctx.set(dut.i_stream.payload, (k * 37) & 0xFF)
            ctx.set(dut.i_stream.valid, 1)
            offered.append(cyc)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
                cyc += 1
                if ready:
                    taken.append(cyc - 1)
                    break
        ctx.set(dut.i_stream.valid, 0)

    async def consumer(ctx):
        cyc = 0
        while len(beats) < n:
            ready = not stall[cyc % stall.size]
            ctx.set(dut.o_stream.ready, int(ready))
            _, _, valid, data = await ctx.tick().sample(dut.o_stream.valid,
                                                        dut.o_stream.payload)
            if valid and ready:
                beats.append(data)
                accepted.append(cyc)
            cyc += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert beats == [(k * 37) & 0xFF for k in range(n)]
    assert all(a > t for a, t in zip(accepted, taken))
    assert slice_taken(offered, accepted).tolist() == taken
    assert stall.any() and (np.asarray(taken) > np.asarray(offered)).any()


def _residual_model():
    b = Builder((3, 6, 6), in_bits=8, signed=True, seed=7)
    x = b.threshold(b.conv("input", 4, 3, pad=1), 3)
    y = b.threshold(b.conv(x, 4, 3, pad=1), 3)
    b.relu(b.conv(b.add(x, y), 2, 1, wbits=3))
    m = b.model()
    L = [l.name for l in m.branches[0].layers]
    return m, {L[0]: {"pe": 2, "simd": 27}, L[2]: {"pe": 4, "simd": 12}}, (24, 8)


def _chain():
    m, (c, d0, d1) = chain_model()
    return m, {c: {"pe": 4, "simd": 18, "tree_k": 2},
               d0: {"pe": 3, "simd": 8, "dsp": 12}, d1: {"pe": 4, "simd": 6}}, (32, 8)


@pytest.mark.parametrize("make", [_chain, _residual_model], ids=["chain", "residual"])
def test_link_registers_exact_and_modelled(make):
    """``link_reg``: a slice on every link without FIFO (after the input adapter and the
    broadcasts too); outputs exact with and without back-pressure, the model's cycles those
    of the simulation, each image later than with skid buffers but no later than one cycle
    per slice on its way."""
    m, fold, (win, wout) = make()
    g0 = lower_branch(m, 0, Folding(fold, win, wout))
    g1 = check(m, Folding(fold, win, wout, link_reg=1))
    slices = sum(map(g1.slice, g1.links))
    assert slices >= 3 and all(l.fifo or g1.slice(l) for l in g1.links)
    assert not any(map(g1.skid, g1.links))
    assert g1.describe()["register_slices"] == slices
    # the lane converters' splits shift their word out (the residual model's 4 -> 2 lanes)
    relanes = [n.plan for n in g1.nodes if n.kind == "relane"]
    assert relanes and all(p.shift for p in relanes)
    assert make is _chain or any(b < a for p in relanes for a, b in p.steps)
    t0, t1 = g0.timing(frames=2), g1.timing(frames=2)
    assert t0.latency < t1.latency <= t0.latency + slices
    skid_ff = sum(l.fmt.beat_bits + 1 for l in g0.links if g0.skid(l))
    slice_ff = sum(slice_resources(l.fmt.beat_bits).ff for l in g1.links if g1.slice(l))
    assert g1.resources().ff - g0.resources().ff == slice_ff - skid_ff > 0


def test_link_reg_round_trips_and_is_checked():
    """The folding file keeps ``link_reg`` (and omits it when 0: older foldings' digests stay);
    a value other than 0 or 1 is refused naming the key."""
    m, fold, (win, wout) = _chain()
    f = Folding(fold, win, wout, link_reg=1)
    assert Folding.from_json(f.to_json()) == f
    assert "link_reg" not in Folding(fold, win, wout).to_json()
    assert f.with_layer(next(iter(fold)), pe=2).link_reg == 1
    with pytest.raises(IRError, match="link_reg"):
        Folding(fold, win, wout, link_reg=2).check(m)
