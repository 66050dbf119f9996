"""Stream plumbing: FIFOs, lane converters, broadcast, and the AXI4-Stream boundary adapters.

Each block comes as an Amaranth :class:`~amaranth.lib.wiring.Component` plus a *plan* (a plain
Python object with the block's parameters, its cycle model and its resource estimate). Plans are
what the folding chooser reads; ``plan.build()`` makes the component.

Cycle-model convention (every plan in :mod:`lcp.hw`): ``timing(offers)`` takes, per input, the
cycle at which each beat is first offered (``valid`` high) and returns the cycles at which the
block accepts them (``valid & ready``) and the cycles at which it offers its output beats. Outputs
are assumed to be taken as soon as offered (the graph builder puts a FIFO on every link where
that does not hold, see :mod:`lcp.hw.graph`).
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from lcp import frames
from lcp.ir import IRError

from .base import Resources, StreamFormat, bram36, stream_signature

__all__ = [
    "FifoPlan", "StreamFifo", "RelanePlan", "Relane", "ForkPlan", "Fork",
    "AxisInPlan", "AxisIn", "AxisOutPlan", "AxisOut", "axis_signature", "axis_top_members",
    "pack_frames",
    "unpack_frames", "words_per_frame",
]


def _run_max(offers: np.ndarray, gap: int = 1) -> np.ndarray:
    """``t[j] = max(offers[j], t[j-1] + gap)``: a server taking one item per ``gap`` cycles."""
    offers = np.asarray(offers, dtype=np.int64)
    if offers.size == 0:
        return offers
    j = np.arange(offers.size, dtype=np.int64) * gap
    return j + np.maximum.accumulate(offers - j)


# -- FIFO ------------------------------------------------------------------------------------

class FifoPlan:
    """A stream FIFO of ``depth`` beats of ``fmt`` (``SyncFIFOBuffered``: 2 cycles from write
    to the first read offer)."""

    kind = "fifo"
    LATENCY = 2

    def __init__(self, fmt: StreamFormat, depth: int):
        self.in_fmt = self.out_fmt = fmt
        self.depth = max(2, int(depth))

    def timing(self, offers):
        acc = _run_max(offers[0])
        return [acc], _run_max(acc + self.LATENCY)

    def resources(self) -> Resources:
        bits = self.out_fmt.beat_bits
        inner = self.depth - 1
        if inner * bits <= 64 * 64:            # distributed RAM: one LUT6 per 64 bits x 1
            lut, bram = bits * math.ceil(inner / 64) + 12, 0.0
        else:
            lut, bram = 12, bram36(bits, inner)
        return Resources(lut=lut, ff=bits + 2 * math.ceil(math.log2(self.depth + 1)) + 2, bram=bram)

    def build(self) -> "StreamFifo":
        return StreamFifo(self.out_fmt, self.depth)


class StreamFifo(wiring.Component):
    """First-in first-out queue of stream beats.

    Parameters
    ----------
    fmt : StreamFormat
        Format of the beats (input and output).
    depth : int
        Capacity in beats (at least 2).
    """

    def __init__(self, fmt: StreamFormat, depth: int):
        self.fmt, self.depth = fmt, max(2, int(depth))
        super().__init__({"i_stream": In(stream_signature(fmt)),
                          "o_stream": Out(stream_signature(fmt))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.fmt.beat_bits, depth=self.depth)
        m.d.comb += [
            fifo.w_data.eq(self.i_stream.payload.as_value()),
            fifo.w_en.eq(self.i_stream.valid),
            self.i_stream.ready.eq(fifo.w_rdy),
            self.o_stream.payload.eq(fifo.r_data),
            self.o_stream.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o_stream.ready),
        ]
        return m


# -- lane converter ----------------------------------------------------------------------------

class RelanePlan:
    """Change the lanes of a stream (same elements, same order): ``a -> b`` lanes.

    Gathers when ``a`` divides ``b``, splits when ``b`` divides ``a``, else gathers to
    ``lcm(a, b)`` and splits that. ``shift`` (the folding's ``link_reg``): a split shifts its
    word by ``b`` lanes per beat and shows the first ``b``, so that its output comes straight
    from flip-flops (no ``n:1`` multiplexer between its registers and the link, the longest
    path into the next register slice on an LFE5U-85F: five LUTs); same beats, same cycles.
    """

    kind = "relane"

    def __init__(self, fmt: StreamFormat, lanes: int, shift: bool = False):
        self.in_fmt, self.out_fmt = fmt, fmt.with_lanes(lanes)
        self.shift = bool(shift)
        a, b = fmt.lanes, int(lanes)
        self.steps: list[tuple[int, int]] = []
        if b % a == 0 or a % b == 0:
            self.steps = [(a, b)]
        else:
            lcm = a * b // math.gcd(a, b)
            self.steps = [(a, lcm), (lcm, b)]

    def timing(self, offers):
        off = np.asarray(offers[0], dtype=np.int64)
        acc0 = None
        for a, b in self.steps:
            if b % a == 0:             # gather n beats into one
                n = b // a
                acc = _run_max(off)
                out = acc[n - 1::n] + 1
            else:                      # split one beat into n
                n = a // b
                # word j is taken with its last beat: t[j] = max(off[j], t[j-1] + n), and its
                # beats leave at t[j] + 1 .. t[j] + n
                acc = _run_max(np.maximum(off, -1), n)
                out = (acc[:, None] + 1 + np.arange(n)).reshape(-1)
            if acc0 is None:
                acc0 = acc
            off = out
        return [acc0], off

    def resources(self) -> Resources:
        r = Resources()
        bits = self.in_fmt.bits
        for a, b in self.steps:
            wide = max(a, b)
            n = wide // min(a, b)
            if b % a == 0:
                mux = 0
            elif self.shift:            # a 2:1 choice (load or shift) per bit of all but a beat
                mux = wide * bits * (n - 1) / n
            else:                       # n:1 mux on the narrow side
                mux = wide * bits * (n - 1) / n / 2
            r += Resources(lut=mux + 8, ff=wide * bits + math.ceil(math.log2(n + 1)) + 1)
        return r

    def build(self) -> "Relane":
        return Relane(self.in_fmt, self.out_fmt.lanes, self.shift)


class Relane(wiring.Component):
    """Lane converter ``fmt.lanes -> lanes`` (see :class:`RelanePlan`)."""

    def __init__(self, fmt: StreamFormat, lanes: int, shift: bool = False):
        self.plan = RelanePlan(fmt, lanes, shift)
        super().__init__({"i_stream": In(stream_signature(self.plan.in_fmt)),
                          "o_stream": Out(stream_signature(self.plan.out_fmt))})

    def elaborate(self, platform):
        m = Module()
        src = self.i_stream
        fmt = self.plan.in_fmt
        for k, (a, b) in enumerate(self.plan.steps):
            ofmt = fmt.with_lanes(b)
            blk = _Gather(fmt, ofmt) if b % a == 0 else _Split(fmt, ofmt, self.plan.shift)
            m.submodules[f"step{k}"] = blk
            if k == 0:
                wiring.connect(m, wiring.flipped(src), blk.i_stream)
            else:
                wiring.connect(m, src, blk.i_stream)
            src, fmt = blk.o_stream, ofmt
        wiring.connect(m, src, wiring.flipped(self.o_stream))
        return m


class _Gather(wiring.Component):
    def __init__(self, ifmt, ofmt):
        self.ifmt, self.ofmt = ifmt, ofmt
        super().__init__({"i_stream": In(stream_signature(ifmt)),
                          "o_stream": Out(stream_signature(ofmt))})

    def elaborate(self, platform):
        m = Module()
        a, b = self.ifmt.lanes, self.ofmt.lanes
        n = b // a
        i, o = self.i_stream, self.o_stream
        idx = Signal(range(max(n, 2)))
        free = ~o.valid | o.ready
        m.d.comb += i.ready.eq(free)
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & i.ready):
            with m.Switch(idx):
                for k in range(n):
                    with m.Case(k):
                        m.d.sync += [o.payload[k * a + l].eq(i.payload[l]) for l in range(a)]
            with m.If(idx == n - 1):
                m.d.sync += [idx.eq(0), o.valid.eq(1)]
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
        return m


class _Split(wiring.Component):
    """One beat of ``a`` lanes out as ``a / b`` beats of ``b``: beat ``k`` is lanes ``k*b ..``
    of the word, picked by the beat index (``shift``: the word shifted down ``b`` lanes as
    each beat leaves, the beat its first ``b`` lanes)."""

    def __init__(self, ifmt, ofmt, shift: bool = False):
        self.ifmt, self.ofmt, self.shift = ifmt, ofmt, bool(shift)
        super().__init__({"i_stream": In(stream_signature(ifmt)),
                          "o_stream": Out(stream_signature(ofmt))})

    def elaborate(self, platform):
        m = Module()
        a, b = self.ifmt.lanes, self.ofmt.lanes
        n = a // b
        i, o = self.i_stream, self.o_stream
        word = Signal(self.ifmt.layout)
        idx = Signal(range(max(n, 2)))
        if self.shift:
            m.d.comb += [o.payload[l].eq(word[l]) for l in range(b)]
        else:
            with m.Switch(idx):
                for k in range(n):
                    with m.Case(k):
                        m.d.comb += [o.payload[l].eq(word[k * b + l]) for l in range(b)]
        done = o.valid & o.ready & (idx == n - 1)
        m.d.comb += i.ready.eq(~o.valid | done)
        with m.If(o.valid & o.ready):
            m.d.sync += idx.eq(idx + 1)
            if self.shift:
                m.d.sync += [word[l].eq(word[l + b]) for l in range(a - b)]
            with m.If(idx == n - 1):
                m.d.sync += [idx.eq(0), o.valid.eq(0)]
        with m.If(i.valid & i.ready):
            m.d.sync += [word.eq(i.payload), o.valid.eq(1), idx.eq(0)]
        return m


# -- broadcast --------------------------------------------------------------------------------

class ForkPlan:
    """Broadcast one stream to ``n`` consumers (an eager fork: each output takes the beat when
    it is ready; the input moves on when all have it)."""

    kind = "fork"

    def __init__(self, fmt: StreamFormat, n: int):
        self.in_fmt = self.out_fmt = fmt
        self.n = int(n)

    def timing(self, offers):
        off = np.asarray(offers[0], dtype=np.int64)
        return [off], off

    def resources(self) -> Resources:
        return Resources(lut=2 * self.n + 2, ff=self.n)

    def build(self) -> "Fork":
        return Fork(self.in_fmt, self.n)


class Fork(wiring.Component):
    """Eager broadcast of ``i_stream`` to ``o_stream0`` .. ``o_stream{n-1}``."""

    def __init__(self, fmt: StreamFormat, n: int):
        self.fmt, self.n = fmt, int(n)
        members = {"i_stream": In(stream_signature(fmt))}
        members.update({f"o_stream{k}": Out(stream_signature(fmt)) for k in range(self.n)})
        super().__init__(members)

    @property
    def outputs(self):
        return [getattr(self, f"o_stream{k}") for k in range(self.n)]

    def elaborate(self, platform):
        m = Module()
        i = self.i_stream
        done = Signal(self.n)
        taken = [Signal(name=f"taken{k}") for k in range(self.n)]
        for k, o in enumerate(self.outputs):
            m.d.comb += [o.payload.eq(i.payload), o.valid.eq(i.valid & ~done[k]),
                         taken[k].eq(done[k] | o.ready)]
        all_taken = Cat(*taken).all()
        m.d.comb += i.ready.eq(all_taken)
        with m.If(i.valid):
            with m.If(all_taken):
                m.d.sync += done.eq(0)
            with m.Else():
                m.d.sync += done.eq(Cat(*taken))
        return m


# -- AXI4-Stream boundary --------------------------------------------------------------------

def axis_signature(width: int) -> wiring.Signature:
    """AXI4-Stream master signature (``tdata``, ``tvalid``, ``tready``, ``tlast``)."""
    return wiring.Signature({"tdata": Out(width), "tvalid": Out(1), "tready": In(1),
                             "tlast": Out(1)})


def axis_top_members(in_width: int, out_width: int) -> dict:
    """The flat AXI4-Stream ports of a top level (``s_axis_t*`` in, ``m_axis_t*`` out), named as
    the Verilog ports a DMA or a testbench connects to."""
    return {"s_axis_tdata": In(in_width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1)}


def words_per_frame(fmt: StreamFormat, width: int) -> int:
    """AXI words of one image: ``ceil(size * bits / width)``."""
    return frames.words_per_frame(fmt.size, fmt.bits, width)


def pack_frames(x: np.ndarray, fmt: StreamFormat, width: int) -> list[bytes]:
    """Integer images ``(N, *fmt.shape)`` -> AXI frames, one ``bytes`` per image (the packing
    contract of :mod:`lcp.frames`)."""
    return [row.tobytes() for row in frames.pack_frames(x, fmt.port(width))]


def unpack_frames(frames_: list[bytes], fmt: StreamFormat) -> np.ndarray:
    """Inverse of :func:`pack_frames`: frames -> integer images ``(N, *fmt.shape)``."""
    need = -(-fmt.size * fmt.bits // 8)
    for n, fr in enumerate(frames_):
        if len(fr) < need:
            raise IRError(f"output frame {n} has {8 * len(fr)} bits, expected at least "
                          f"{fmt.size * fmt.bits}")
    rows = np.stack([np.frombuffer(bytes(fr)[:need], dtype=np.uint8) for fr in frames_]) \
        if len(frames_) else np.zeros((0, need), np.uint8)
    return frames.unpack_frames(rows, fmt.port(8))


class AxisInPlan:
    """AXI4-Stream words of ``width`` bits -> beats of ``fmt`` (see :func:`pack_frames`).

    One image is ``words_per_frame`` words; ``tlast`` is not needed to delimit frames and is
    ignored (the count is known); the padding bits of the last word are dropped.
    """

    kind = "axis_in"

    def __init__(self, fmt: StreamFormat, width: int):
        if width % 8 or width < 8:
            raise IRError(f"AXI-Stream width {width} is not a positive multiple of 8")
        self.out_fmt = fmt
        self.width = int(width)
        self.words = words_per_frame(fmt, width)
        # room for a word and three beats: a word is taken while the buffer holds at most three
        # beats, whether or not a beat leaves on that cycle (``tready`` from registers, not
        # from the consumer's ``ready``); after a stall the next beat is ready the cycle after
        # the previous one is taken, so back-pressure never costs extra cycles
        self.cap = self.width + 3 * fmt.beat_bits

    def timing(self, offers, ready=None):
        """Cycle-exact model of :class:`AxisIn` (``offers``: the words, as offered).

        ``ready`` (optional, per output beat): the first cycle the consumer takes that beat;
        a beat moves at ``max(offer, ready)`` and the words behind it wait for room (the
        graph's cycle model passes it to carry back-pressure to the input).
        """
        off = np.asarray(offers[0], dtype=np.int64)
        W, B, cap = self.width, self.out_fmt.beat_bits, self.cap
        beats = self.out_fmt.beats
        frames = off.size // self.words
        acc = np.empty(off.size, dtype=np.int64)
        out = np.empty(frames * beats, dtype=np.int64)
        rdy = (np.full(out.size, -(1 << 60), dtype=np.int64) if ready is None
               else np.asarray(ready, dtype=np.int64))
        t = int(off[0]) if off.size else 0
        cnt, wl, bl, wi, bi = 0, self.words, beats, 0, 0
        offered = False
        while bi < out.size:
            valid = cnt >= B
            if valid and not offered:
                out[bi], offered = t, True
            fire = valid and t >= rdy[bi]
            cnt1 = cnt - B if fire else cnt
            if fire:
                bi += 1
                offered = False
            room = wl > 0 and cnt + W <= cap and wi < off.size
            take = room and off[wi] <= t
            if fire and bl == 1:
                cnt, wl, bl = 0, self.words, beats
            else:
                if fire:
                    bl -= 1
                cnt = cnt1
            if take:
                acc[wi] = t
                wi += 1
                cnt += W
                wl -= 1
            t += 1
            if not fire and not take:          # idle until the next event
                events = [int(rdy[bi])] if valid else []
                if room:
                    events.append(int(off[wi]))
                if events:
                    t = max(t, min(events))
        return [acc], out

    def resources(self) -> Resources:
        """The word's barrel shift into the buffer (the count only takes multiples of
        ``gcd(W, B)``, and Yosys finds the constant low bits: ``log2`` of that many places, two
        per LUT), one LUT per buffer bit to pick a beat leaving or not, and the control (the
        counters, ``tready``'s four outcomes). ``synth_xilinx`` of this adapter (LUT/FF):
        590/152, 625/272 and 371/144 for B/W = 24/64, 64/64, 32/32 (estimate 590/152, 626/272,
        370/144)."""
        cap = self.cap
        places = max(2, cap // math.gcd(self.width, self.out_fmt.beat_bits))
        shift = cap * math.ceil(math.log2(places)) / 2
        return Resources(lut=shift + cap + 114, ff=cap + 16)

    def build(self) -> "AxisIn":
        return AxisIn(self.out_fmt, self.width)


class AxisIn(wiring.Component):
    """AXI4-Stream slave (``s_axis``) -> beat stream ``o_stream`` of ``fmt``.

    Parameters
    ----------
    fmt : StreamFormat
        Format of the output beats (its element bits and stream order define the packing).
    width : int
        ``tdata`` width in bits (a multiple of 8).
    """

    def __init__(self, fmt: StreamFormat, width: int):
        self.plan = AxisInPlan(fmt, width)
        super().__init__({"s_axis": In(axis_signature(self.plan.width)),
                          "o_stream": Out(stream_signature(fmt))})

    def elaborate(self, platform):
        m = Module()
        p = self.plan
        W, B, cap = p.width, p.out_fmt.beat_bits, p.cap
        beats = p.out_fmt.beats
        s, o = self.s_axis, self.o_stream
        buf = Signal(cap)
        cnt = Signal(range(cap + 1))
        wl = Signal(range(p.words + 1), init=p.words)
        bl = Signal(range(beats + 1), init=beats)
        fire = Signal()
        # everything but the final choice comes from registers and the source's ``tvalid``:
        # a word is taken on room without a beat leaving (``tready`` never waits on the
        # consumer), and both outcomes of a beat leaving or not (the count, ``valid``, the
        # buffer: one shifter, a beat leaving moves the word B bits down, a constant shift)
        # are ready when the consumer's ready picks one, two gates before the registers
        at_cnt = Signal(cap + B)
        ready = Signal()          # cnt >= B as a register: the consumer's advance waits on it
        grown = Signal(range(cap + W + 1))
        # ``tready`` (room for a word: ``wl != 0`` and ``cnt + W <= cap``) is a register too,
        # loaded from its value for each of (word taken, beat leaving), compared beforehand
        room = Signal(init=1)
        m.d.comb += [
            o.valid.eq(ready),
            o.payload.eq(buf[:B]),
            fire.eq(o.valid & o.ready),
            s.tready.eq(room),
            at_cnt.eq(s.tdata << cnt),
        ]
        take = s.tvalid & s.tready

        def room_after(words, beats_out):          # words left and the count afterwards
            return (wl != words) & (cnt + (words * W - beats_out * B + W) <= cap)
        m.d.comb += grown.eq(cnt + Mux(take, W, 0))
        shifted = Signal(cap)
        m.d.comb += shifted.eq(Mux(fire, buf >> B, buf))
        incoming = Signal(cap)
        m.d.comb += incoming.eq(Mux(take, Mux(fire, at_cnt >> B, at_cnt), 0))
        last = fire & (bl == 1)
        # after an image the buffer holds the last word's padding; it is not cleared then (a
        # reset of every buffer bit on the consumer's ready) but dropped by the next word:
        # ``fresh`` (a register) until a word is taken
        fresh = Signal()
        with m.If(last):
            m.d.sync += [cnt.eq(0), ready.eq(0), wl.eq(p.words), bl.eq(beats),
                         room.eq(1), fresh.eq(1)]
        with m.Else():
            with m.If(take):
                m.d.sync += fresh.eq(0)
            m.d.sync += [room.eq(Mux(take, Mux(fire, room_after(1, 1), room_after(1, 0)),
                                     Mux(fire, room_after(0, 1), room_after(0, 0)))),
                         cnt.eq(Mux(fire, grown - B, grown)),
                         ready.eq(Mux(fire, grown >= 2 * B, grown >= B)),
                         buf.eq(Mux(fresh, 0, shifted) | incoming)]
            with m.If(fire):
                m.d.sync += bl.eq(bl - 1)
            with m.If(take):
                m.d.sync += wl.eq(wl - 1)
        return m


class AxisOutPlan:
    """Beats of ``fmt`` -> AXI4-Stream words of ``width`` bits, ``tlast`` on the last word of
    each image, the last word zero-padded (see :func:`pack_frames`)."""

    kind = "axis_out"

    def __init__(self, fmt: StreamFormat, width: int):
        if width % 8 or width < 8:
            raise IRError(f"AXI-Stream width {width} is not a positive multiple of 8")
        self.in_fmt = fmt
        self.width = int(width)
        self.words = words_per_frame(fmt, width)
        # room for a word and two beats less a bit: a beat is taken on the count alone,
        # whether or not a word leaves on that cycle (``ready`` and the beat's placement from
        # registers, never from ``m_axis.tready``); with a ready sink the count stays below
        # ``W + B``, so every beat is still taken the cycle it is offered
        self.cap = self.width + 2 * fmt.beat_bits - 1

    def timing(self, offers):
        """Cycle-exact model of :class:`AxisOut` with an always-ready sink."""
        off = np.asarray(offers[0], dtype=np.int64)
        W, B, cap = self.width, self.in_fmt.beat_bits, self.cap
        beats = self.in_fmt.beats
        frames = off.size // beats
        acc = np.empty(off.size, dtype=np.int64)
        out = np.empty(frames * self.words, dtype=np.int64)
        t = int(off[0]) if off.size else 0
        cnt, bl, wl, bi, wi = 0, beats, self.words, 0, 0
        while wi < out.size:
            valid = cnt >= W or (bl == 0 and cnt > 0)
            if valid:
                out[wi] = t
                wi += 1
            take = bl > 0 and cnt + B <= cap and bi < off.size and off[bi] <= t
            if valid and wl == 1:
                cnt, bl, wl = 0, beats, self.words
            elif valid:
                wl -= 1
                cnt -= W
            if take:
                acc[bi] = t
                bi += 1
                cnt += B
                bl -= 1
            t += 1
            if not valid and not take and bi < off.size and off[bi] > t:
                t = int(off[bi])
        return [acc], out

    def resources(self) -> Resources:
        cap = self.cap
        shift = cap * math.ceil(math.log2(cap)) / 2
        return Resources(lut=shift + 2 * cap + 30, ff=cap + 40)

    def build(self) -> "AxisOut":
        return AxisOut(self.in_fmt, self.width)


class AxisOut(wiring.Component):
    """Beat stream ``i_stream`` of ``fmt`` -> AXI4-Stream master ``m_axis``."""

    def __init__(self, fmt: StreamFormat, width: int):
        self.plan = AxisOutPlan(fmt, width)
        super().__init__({"i_stream": In(stream_signature(fmt)),
                          "m_axis": Out(axis_signature(self.plan.width))})

    def elaborate(self, platform):
        m = Module()
        p = self.plan
        W, B, cap = p.width, p.in_fmt.beat_bits, p.cap
        beats = p.in_fmt.beats
        i, o = self.i_stream, self.m_axis
        buf = Signal(cap)
        cnt = Signal(range(cap + 1))
        bl = Signal(range(beats + 1), init=beats)
        wl = Signal(range(p.words + 1), init=p.words)
        fire = Signal()
        m.d.comb += [
            o.tvalid.eq((cnt >= W) | ((bl == 0) & (cnt != 0))),
            o.tdata.eq(buf[:W]),
            o.tlast.eq(wl == 1),
            fire.eq(o.tvalid & o.tready),
            i.ready.eq((bl != 0) & (cnt + B <= cap)),
        ]
        # the beat goes in at ``cnt`` (a register: the shifter's select never waits on
        # ``tready``); a word leaving shifts buffer and beat down together. A word leaves
        # with ``cnt >= W`` but at the end of an image, so a beat taken beside it lands at
        # ``W`` or above and ``tdata`` holds while ``tvalid`` waits on ``tready``
        take = i.valid & i.ready
        merged = Signal(cap)
        m.d.comb += merged.eq(buf | Mux(take, i.payload.as_value() << cnt, 0))
        with m.If(fire & (wl == 1)):
            m.d.sync += [cnt.eq(0), buf.eq(0), bl.eq(beats), wl.eq(p.words)]
        with m.Else():
            grown = cnt + Mux(take, B, 0)
            m.d.sync += [cnt.eq(Mux(fire, grown - W, grown)),
                         buf.eq(Mux(fire, merged >> W, merged))]
            with m.If(take):
                m.d.sync += bl.eq(bl - 1)
            with m.If(fire):
                m.d.sync += wl.eq(wl - 1)
        return m
