"""Plumbing blocks in Amaranth's simulator: lane converters, broadcast, FIFO, AXI packing.

Each block is driven beat by beat (one testbench per port) with and without idle cycles and
back-pressure and compared with a plain Python reference (the same elements in the same order).
"""

import numpy as np
import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from lcp.hw.base import StreamFormat
from lcp.hw.plumbing import (AxisInPlan, AxisOutPlan, Fork, FifoPlan, Relane, RelanePlan, StreamFifo,
                             pack_frames, unpack_frames, words_per_frame)
from lcp.ir import IRError

from tests.hw.amsim import stream_run

PAUSES = [dict(), dict(src_pause=[0, 1, 1, 0, 0, 1], sink_pause=[1, 0, 0, 1])]


def _fmt(size, lanes, lo=-8, hi=7):
    return StreamFormat((size,), lo, hi, lanes, np.arange(size))


def _beats(rng, fmt, frames):
    v = rng.integers(fmt.lo, fmt.hi + 1, size=(frames * fmt.size,))
    return v, [list(v[k:k + fmt.lanes]) for k in range(0, v.size, fmt.lanes)]


@pytest.mark.parametrize("a,b", [(1, 4), (4, 1), (2, 6), (6, 4), (3, 3 * 4), (12, 3)])
@pytest.mark.parametrize("pause", range(len(PAUSES)))
@pytest.mark.parametrize("shift", [False, True])
def test_relane(a, b, pause, shift):
    rng = np.random.default_rng(a * 10 + b)
    fmt = _fmt(24, a)
    vals, beats = _beats(rng, fmt, 2)
    dut = Relane(fmt, b, shift)
    got = stream_run(dut, {"i_stream": beats}, {"o_stream": vals.size // b}, **PAUSES[pause])
    assert np.array_equal(np.asarray(got["o_stream"]).reshape(-1), vals)


def test_relane_shift_costs_a_choice_per_bit():
    """A shifting split: a 2:1 choice per bit of all but its last beat (twice the LUTs of the
    multiplexer's estimate), the same flip-flops; a gather is the same either way."""
    split, shift = RelanePlan(_fmt(24, 12), 3), RelanePlan(_fmt(24, 12), 3, shift=True)
    assert shift.resources().ff == split.resources().ff
    assert shift.resources().lut - 8 == pytest.approx(2 * (split.resources().lut - 8))
    assert RelanePlan(_fmt(24, 3), 12, shift=True).resources() == RelanePlan(_fmt(24, 3), 12).resources()


def test_relane_timing_model_gather_then_split():
    """The cycle model of a non-dividing conversion goes through the lcm."""
    plan = RelanePlan(_fmt(24, 6), 4)
    assert plan.steps == [(6, 12), (12, 4)]
    acc, out = plan.timing([np.arange(8)])
    assert out.size == 12 and np.all(np.diff(out) >= 1)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_relane_split_timing_follows_the_beat_recurrence(n):
    """Splitting a word into ``n`` beats: word ``j`` is taken with its last beat, at
    ``max(offer, previous word + n)``, its beats leave one per cycle (beat-by-beat reference)."""
    rng = np.random.default_rng(n)
    offers = np.cumsum(rng.integers(0, 2 * n, size=200))
    acc, out = RelanePlan(_fmt(n * 200, n), 1).timing([offers])
    ref_acc, ref_out, prev = [], [], -1
    for o in offers:
        t = max(int(o), prev)
        ref_acc.append(t)
        ref_out += [t + 1 + k for k in range(n)]
        prev = t + n
    assert acc[0].tolist() == ref_acc and out.tolist() == ref_out


@pytest.mark.parametrize("pause", range(len(PAUSES)))
def test_fork(pause):
    rng = np.random.default_rng(5)
    fmt = _fmt(12, 3)
    vals, beats = _beats(rng, fmt, 2)
    dut = Fork(fmt, 3)
    got = stream_run(dut, {"i_stream": beats}, {f"o_stream{k}": len(beats) for k in range(3)},
                     **PAUSES[pause])
    for k in range(3):
        assert np.array_equal(np.asarray(got[f"o_stream{k}"]).reshape(-1), vals)


@pytest.mark.parametrize("pause", range(len(PAUSES)))
def test_fifo(pause):
    rng = np.random.default_rng(6)
    fmt = _fmt(40, 2, lo=0, hi=200)
    vals, beats = _beats(rng, fmt, 1)
    dut = StreamFifo(fmt, 5)
    got = stream_run(dut, {"i_stream": beats}, {"o_stream": len(beats)}, **PAUSES[pause])
    assert np.array_equal(np.asarray(got["o_stream"]).reshape(-1), vals)
    assert FifoPlan(fmt, 5).resources().lut > 0


@pytest.mark.parametrize("bits,signed,width,shape", [(8, False, 64, (3, 4, 4)),
                                                     (4, False, 8, (10,)),
                                                     (5, True, 24, (2, 3, 3)),
                                                     (13, True, 64, (10,))])
def test_pack_unpack_roundtrip(bits, signed, width, shape):
    rng = np.random.default_rng(bits)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    from lcp.ir import TensorSpec
    fmt = StreamFormat.of(TensorSpec(shape, lo, hi), 1)
    x = rng.integers(lo, hi + 1, size=(3, *shape))
    frames = pack_frames(x, fmt, width)
    assert all(len(f) * 8 == words_per_frame(fmt, width) * width for f in frames)
    np.testing.assert_array_equal(unpack_frames(frames, fmt), x)


def test_pack_uint8_images_is_hwc_bytes():
    """8-bit images on a 64-bit stream: the frame is the HWC byte image (a plain DMA copy)."""
    from lcp.ir import TensorSpec
    x = np.random.default_rng(0).integers(0, 256, size=(2, 3, 32, 32))
    fmt = StreamFormat.of(TensorSpec((3, 32, 32), 0, 255), 3)
    frames = pack_frames(x, fmt, 64)
    assert len(frames[0]) == 3072 and words_per_frame(fmt, 64) == 384
    assert frames[1] == x[1].transpose(1, 2, 0).astype(np.uint8).tobytes()


def test_bad_lanes():
    with pytest.raises(IRError, match="lanes do not divide"):
        _fmt(10, 4)


def _adapter_run(dut, src, snk, items, offers, ready):
    """An adapter in Amaranth's simulator: item ``k`` offered on ``src = (valid, data, ready)``
    from cycle ``offers[k]``, output ``b`` taken on ``snk = (ready, valid, *data)`` from cycle
    ``ready[b]`` on. Returns (item accept cycles, output offer cycles, outputs as tuples of
    ints); checks that an output offered stays the same until it is taken."""
    acc, out, got = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def source(ctx):
        cyc = k = 0
        while k < len(items):
            on = offers[k] <= cyc
            ctx.set(src[0], int(on))
            ctx.set(src[1], items[k])
            _, _, rdy = await ctx.tick().sample(src[2])
            if on and rdy:
                acc.append(cyc)
                k += 1
            cyc += 1
        ctx.set(src[0], 0)

    async def sink(ctx):
        cyc = 0
        shown = None
        while len(got) < len(ready):
            assert cyc < 20_000
            take = cyc >= ready[len(got)]
            ctx.set(snk[0], int(take))
            _, _, valid, *data = await ctx.tick().sample(*snk[1:])
            if valid:
                data = tuple(_ints(d) for d in data)
                if shown is None:
                    out.append(cyc)
                    shown = data
                assert data == shown, f"output {len(got)} changed while offered"
                if take:
                    got.append(data)
                    shown = None
            cyc += 1

    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return np.array(acc), np.array(out), got


def _ints(v):
    """A sampled value: an int, or a tuple of ints for an array (a ``data.Const``)."""
    return tuple(int(e) for e in v) if isinstance(v, data.Const) else int(v)


def _axis_in_run(plan, words, offers, ready):
    dut = plan.build()
    acc, out, got = _adapter_run(dut, (dut.s_axis.tvalid, dut.s_axis.tdata, dut.s_axis.tready),
                                 (dut.o_stream.ready, dut.o_stream.valid, dut.o_stream.payload),
                                 words, offers, ready)
    return acc, out, [list(b[0]) for b in got]


@pytest.mark.parametrize("size,lanes,width,seed", [(96, 6, 32, 0), (36, 3, 8, 1), (120, 10, 64, 2),
                                                   (64, 16, 16, 3), (60, 2, 64, 4)])
def test_axis_in_cycles_match_its_model(size, lanes, width, seed):
    """Every word's accept cycle and every beat's offer cycle equal the input adapter's cycle
    model, with words offered late and beats refused (the back-pressure the graph's model
    carries to the input), and the beats are the packed elements, whatever the padding bits of
    each image's last word hold."""
    rng = np.random.default_rng(seed)
    fmt = _fmt(size, lanes)
    plan = AxisInPlan(fmt, width)
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(3, size))
    frames = pack_frames(x, fmt, width)
    words = [int.from_bytes(fr[k:k + width // 8], "little")
             for fr in frames for k in range(0, len(fr), width // 8)]
    used = size * fmt.bits % width
    for k in range(plan.words - 1, len(words), plan.words) if used else ():
        words[k] |= int(rng.integers(1, 1 << (width - used))) << used     # padding not zero
    offers = np.cumsum(rng.integers(0, 3, size=len(words)))
    ready = np.cumsum(rng.integers(0, 5, size=3 * fmt.beats))
    acc, out, beats = _axis_in_run(plan, words, offers, ready)
    (m_acc,), m_out = plan.timing([offers], ready)
    assert acc.tolist() == m_acc.tolist()
    assert out.tolist() == m_out.tolist()
    assert np.array_equal(np.asarray(beats).reshape(3, -1), x)


def _axis_out_run(plan, beats, offers, ready):
    dut = plan.build()
    return _adapter_run(dut, (dut.i_stream.valid, dut.i_stream.payload, dut.i_stream.ready),
                        (dut.m_axis.tready, dut.m_axis.tvalid, dut.m_axis.tdata,
                         dut.m_axis.tlast), beats, offers, ready)


@pytest.mark.parametrize("size,lanes,width,seed", [(96, 6, 32, 0), (36, 3, 8, 1), (120, 10, 64, 2),
                                                   (64, 16, 16, 3), (60, 2, 64, 4), (10, 1, 8, 5)])
def test_axis_out_cycles_match_its_model(size, lanes, width, seed):
    """With a ready sink every beat's accept cycle and every word's offer cycle equal the
    output adapter's cycle model, beats offered late; with a sink that refuses words the
    words stay put while offered, and either way they are the packed frames, ``tlast`` on each
    frame's last word."""
    rng = np.random.default_rng(seed)
    fmt = _fmt(size, lanes)
    plan = AxisOutPlan(fmt, width)
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(3, size))
    beats = [[int(v) for v in x.reshape(-1)[k:k + lanes]] for k in range(0, x.size, lanes)]
    offers = np.cumsum(rng.integers(0, 3, size=len(beats)))
    n_words = 3 * plan.words
    frames = pack_frames(x, fmt, width)
    expect = [(int.from_bytes(fr[k:k + width // 8], "little"), int(k + width // 8 == len(fr)))
              for fr in frames for k in range(0, len(fr), width // 8)]
    acc, out, words = _axis_out_run(plan, beats, offers, np.zeros(n_words, dtype=np.int64))
    (m_acc,), m_out = plan.timing([offers])
    assert acc.tolist() == m_acc.tolist()
    assert out.tolist() == m_out.tolist()
    assert words == expect
    ready = np.cumsum(rng.integers(0, 5, size=n_words))
    _, _, words = _axis_out_run(plan, beats, offers, ready)
    assert words == expect
