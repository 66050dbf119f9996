"""Sliding windows: the line buffer shared by convolutions and pools, and the pool engines.

The window unit scans the input image in raster order, one position per cycle. Positions are
the real pixels (each consumes one input beat holding all ``C`` channels) plus the *virtual*
positions right of and below the image that windows reaching into the right/bottom padding need
(no input). Top and left padding cost no cycles: rows and columns outside the image are replaced
by the pad value as they enter the window register. A line buffer (one ``Memory`` word per
column holding the ``KH-1`` previous rows of that column) and a ``KH x KW`` shift register give
one complete window per cycle. A position whose window is an output window copies it (or, for a
pool, its per-channel reduction) into the output register.

Per image the unit takes ``(H + vr) * (W + vc)`` cycles, ``vr``/``vc`` the virtual rows and
columns (``pads`` bottom/right as far as windows need them).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lcp.ir import IRError, Layer
from lcp.ops import Window
from lcp.shapes import pool_out

from .base import Resources, StreamFormat, bram36, stream_signature, tree_sum

__all__ = ["WindowGeometry", "WindowEngine", "PoolPlan", "MaxPoolPlan", "AvgPoolPlan",
           "window_scan"]


class WindowGeometry:
    """Geometry of a window op on a ``(C, H, W)`` input (``kernel``, ``stride``, ``pads`` as in
    the IR: pads top, left, bottom, right), or on a ``(C, L)`` input as ``(C, 1, L)`` (a 1-D
    window: kernel ``(1, K)``, the line buffer holds no row, the window is one shift register).

    Raises
    ------
    IRError
        naming ``layer`` when a pad is not smaller than the kernel (a window made of padding).
    """

    def __init__(self, layer: Layer, in_shape: tuple[int, ...]):
        self.name = layer.name
        win = Window.of(layer).as_2d()
        self.C, self.H, self.W = in_shape if len(in_shape) == 3 else (in_shape[0], 1, in_shape[1])
        self.kh, self.kw = win.kernel
        self.sh, self.sw = win.stride
        self.pt, self.pl, self.pb, self.pr = win.pads
        if self.pt >= self.kh or self.pb >= self.kh or self.pl >= self.kw or self.pr >= self.kw:
            raise IRError(f"layer {layer.name!r}: pads {layer.attrs['pads']} must be smaller than "
                          f"the kernel {self.kh}x{self.kw} for the window unit")
        self.OH = pool_out(self.H, self.kh, self.sh, self.pt, self.pb)
        self.OW = pool_out(self.W, self.kw, self.sw, self.pl, self.pr)
        self.rows = max(self.H, (self.OH - 1) * self.sh - self.pt + self.kh)
        self.cols = max(self.W, (self.OW - 1) * self.sw - self.pl + self.kw)

    @property
    def positions(self) -> int:
        return self.rows * self.cols

    @property
    def window(self) -> int:
        """Elements of one window: ``KH * KW * C``."""
        return self.kh * self.kw * self.C

    def row_emits(self) -> list[bool]:
        out = []
        for r in range(self.rows):
            t = r - self.kh + 1 + self.pt
            out.append(t >= 0 and t % self.sh == 0 and t // self.sh < self.OH)
        return out

    def col_emits(self) -> list[bool]:
        out = []
        for c in range(self.cols):
            t = c - self.kw + 1 + self.pl
            out.append(t >= 0 and t % self.sw == 0 and t // self.sw < self.OW)
        return out

    def positions_table(self):
        """Per position of one image: (is real pixel, emits a window)."""
        if getattr(self, "_table", None) is None:
            self._table = self._positions_table()
        return self._table

    def _positions_table(self):
        re, ce = np.array(self.row_emits()), np.array(self.col_emits())
        r, c = np.meshgrid(np.arange(self.rows), np.arange(self.cols), indexing="ij")
        real = (r < self.H) & (c < self.W)
        emit = re[r] & ce[c]
        return real.reshape(-1), emit.reshape(-1)

    def line_buffer_bits(self, bits: int) -> tuple[int, int]:
        """(width, depth) of the line buffer memory."""
        return (self.kh - 1) * self.C * bits, self.cols


def window_scan(geo: WindowGeometry, pixel_offers: np.ndarray, frames: int, steps: int = 1,
                depth: int = 1):
    """Cycle model of the window unit feeding a consumer that spends ``steps`` cycles on each
    window (an MVU: it takes window ``n`` at its last step; ``steps == 1``: at once).
    ``depth``: windows the unit's output holds (1: one register; 2: the two-window queue of
    ``pingpong``, which lets the scan run a window ahead of the consumer).

    Parameters
    ----------
    pixel_offers : numpy.ndarray
        Offer cycle of every input pixel (all frames, raster order).

    Returns
    -------
    (pixel_accepts, window_offers, window_starts)
        ``window_starts``: the cycle of the consumer's first step on each window.
    """
    real, emit = geo.positions_table()
    pixel_offers = np.asarray(pixel_offers, dtype=np.int64)
    real_all, emit_all = np.tile(real, frames), np.tile(emit, frames)
    # Position q advances at a[q] = max(a[q-1] + 1, its pixel's offer); an emitting position
    # also waits for the consumer to take the previous window (at its last step). With A[n] the
    # advance of the n-th emitting position e[n]: A[n] = max(A[n-1] + max(e[n]-e[n-1], steps),
    # B[n]), B[n] the bound from the pixels since e[n-1]; the consumer starts window n at
    # A[n] + 1. Both recurrences are running maxima, computed with cumulative maxima.
    q = np.arange(real_all.size, dtype=np.int64)
    c = np.full(real_all.size, -(1 << 60), dtype=np.int64)
    c[real_all] = pixel_offers - q[real_all]
    e = np.flatnonzero(emit_all)
    seg = np.concatenate([[0], e[:-1] + 1])
    B = e + np.maximum.reduceat(c[:e[-1] + 1], seg)
    if depth == 1:
        g = np.concatenate([[0], np.maximum(np.diff(e), steps)])
        G = np.cumsum(g)
        A = G + np.maximum.accumulate(B - G)
        starts = A + 1
    else:
        A, starts = _queue_scan(e, B, steps)
    v = c.copy()
    v[e] = A - e
    adv = q + np.maximum.accumulate(v)
    return adv[real_all], A + 1, starts


def _queue_scan(e: np.ndarray, B: np.ndarray, steps: int):
    """Advance cycles ``A`` of the emitting positions ``e`` and the consumer's start cycles
    with a two-window output queue: window ``n`` goes in once window ``n - 2`` has been taken
    (its room is a register: taken at ``A[n] - 1`` at the latest), the consumer starts it
    when it is in and the previous one is taken, and takes it ``steps - 1`` cycles later."""
    A = np.empty(e.size, dtype=np.int64)
    S = np.empty(e.size, dtype=np.int64)
    a = t1 = t2 = -(1 << 60)               # A[n-1], T[n-1], T[n-2] (T: taken)
    for n in range(e.size):
        an = max(int(B[n]), t2 + 1)
        if n:
            an = max(an, a + int(e[n] - e[n - 1]))
        sn = max(an + 1, t1 + 1)
        A[n], S[n] = an, sn
        a, t2, t1 = an, t1, sn + steps - 1
    return A, S


class WindowEngine(wiring.Component):
    """Window unit: pixels of ``in_fmt`` (one beat = all ``C`` channels) -> one beat per output
    window.

    Parameters
    ----------
    geo : WindowGeometry
    in_fmt : StreamFormat
        3-D input, ``lanes == C``.
    pad : int
        Value of padding elements (0 for convolution and average pool, the input minimum for a
        max pool, so that padding never wins).
    mode : str
        ``"window"``: the payload is the window, ``ArrayLayout(element, KH*KW*C)`` in
        ``(ky, kx, c)`` order; ``"max"``: per-channel maximum; ``"avg"``: per-channel
        ``clip(rnd(sum / 2**shift), out_lo, out_hi)``.
    out_fmt : StreamFormat
        Format of the output beats for ``"max"``/``"avg"`` (``lanes == C``).
    shift, rounding : int, str
        Average pool only (see the IR ``avgpool``).
    pingpong : bool
        ``"window"`` only (fold key ``pingpong`` of a convolution, FPGA builds): the output is a
        queue of two windows in two registers that load the next window every cycle while they
        hold none. The wide registers' load enables are flip-flops, not the scan's advance (a
        few gates behind the neighbours' ``valid``/``ready``, which on an FPGA has to reach every
        bit of a register spread next to the MVU lanes it feeds), and the scan waits on the
        queue's room (a register), never on the consumer's ``ready`` in the same cycle; it may
        run a window ahead (:func:`window_scan` with ``depth=2``). One more window register and
        a 2:1 multiplexer per bit.
    lb_reg : int
        The line buffer's write (1) or read (2) registered (fold key ``lb_reg``, see
        :func:`_line_buffer`): no cycle more.
    """

    def __init__(self, geo: WindowGeometry, in_fmt: StreamFormat, *, pad: int, mode: str,
                 out_fmt: StreamFormat | None = None, shift: int = 0, rounding: str = "floor",
                 pingpong: bool = False, lb_reg: int = 0):
        self.geo, self.in_fmt, self.pad, self.mode = geo, in_fmt, int(pad), mode
        self.lb_reg = lb_mode(lb_reg, geo.name)
        self.shift, self.rounding = int(shift), rounding
        if pingpong and mode != "window":
            raise IRError(f"layer {geo.name!r}: only a window output takes two registers "
                          f"(pingpong), not a {mode} pool's")
        self.pingpong = bool(pingpong)
        if in_fmt.lanes != geo.C:
            raise IRError(f"layer {geo.name!r}: the window unit takes whole pixels "
                          f"({geo.C} lanes), not {in_fmt.lanes}")
        if mode == "window":
            self.out_layout = data.ArrayLayout(in_fmt.element, geo.window)
        else:
            self.out_fmt = out_fmt
            self.out_layout = out_fmt.layout
        super().__init__({"i_stream": In(stream_signature(in_fmt)),
                          "o_stream": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        g, C = self.geo, self.geo.C
        kh, kw = g.kh, g.kw
        elem = self.in_fmt.element
        i, o = self.i_stream, self.o_stream

        c, c_next, step_c = _counter(m, g.cols, "c")
        r, r_next, step_r = _counter(m, g.rows, "r")
        last_c = c == g.cols - 1

        win = Signal(data.ArrayLayout(elem, kh * kw * C))
        nwin = Signal(data.ArrayLayout(elem, kh * kw * C))
        room = attach = None
        if self.pingpong:
            room, attach = _window_queue(m, nwin.shape(), o)

        row_ok, col_real, col_first, real, emit, adv, advance = _scan_control(m, g, i, o, room)
        advance(adv, c_next, adv & last_c, r_next)
        step_c(adv)
        step_r(adv & last_c)

        # line buffer: word[c] = pixels of rows r-1 .. r-kh+1 at column c
        if kh > 1:
            rd = _line_buffer(m, elem, C, kh, g.cols, adv, c, c_next, i.payload, self.lb_reg)

        def at(ky, kx, ch):
            return (ky * kw + kx) * C + ch

        padv = self.pad
        for ky in range(kh):
            keep = row_ok[ky] & col_real
            for ch in range(C):
                src = i.payload[ch] if ky == kh - 1 else rd.data[(kh - 2 - ky) * C + ch]
                m.d.comb += nwin[at(ky, kw - 1, ch)].eq(Mux(keep, src, padv))
                for kx in range(kw - 1):
                    m.d.comb += nwin[at(ky, kx, ch)].eq(
                        Mux(col_first, padv, win[at(ky, kx + 1, ch)]))

        with m.If(adv):
            m.d.sync += win.eq(nwin)
        if attach is not None:
            attach(nwin, adv & emit)
            return m
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(adv & emit):
            m.d.sync += o.valid.eq(1)
            self._emit(m, nwin, at)
        return m

    def _emit(self, m, nwin, at):
        g, o = self.geo, self.o_stream
        if self.mode == "window":
            m.d.sync += o.payload.eq(nwin)
            return
        for ch in range(g.C):
            vals = [nwin[at(ky, kx, ch)] for ky in range(g.kh) for kx in range(g.kw)]
            if self.mode == "max":
                m.d.sync += o.payload[ch].eq(_tree_max(vals))
            else:
                m.d.sync += o.payload[ch].eq(_avg(m, vals, self.shift, self.rounding,
                                                  self.out_fmt.lo, self.out_fmt.hi))


def _window_queue(m, layout, o):
    """A queue of two windows on ``o``: two slot registers, a ``hold`` flag each, ``head`` (the
    slot shown) and ``tail`` (the slot the next window goes to). A slot that holds no window
    loads the next one every cycle (its enable is its ``hold`` flip-flop); ``room`` (the tail
    slot is free) comes from registers. Returns ``(room, attach)``; ``attach(nwin, put)``
    puts ``nwin`` into the tail slot on ``put``."""
    slots = [Signal(layout, name=f"slot{k}", reset_less=True) for k in range(2)]
    hold = [Signal(name=f"hold{k}") for k in range(2)]
    head, tail, room = Signal(), Signal(), Signal()
    m.d.comb += [room.eq(~Mux(tail, hold[1], hold[0])),
                 o.valid.eq(Mux(head, hold[1], hold[0])),
                 o.payload.eq(Mux(head, slots[1], slots[0]))]

    def attach(nwin, put):
        taken = o.valid & o.ready
        for k in range(2):
            mine_t = tail if k else ~tail
            mine_h = head if k else ~head
            with m.If(~hold[k]):
                m.d.sync += slots[k].eq(nwin)
            with m.If(put & mine_t):
                m.d.sync += hold[k].eq(1)
            with m.Elif(taken & mine_h):
                m.d.sync += hold[k].eq(0)
        with m.If(put):
            m.d.sync += tail.eq(~tail)
        with m.If(taken):
            m.d.sync += head.eq(~head)

    return room, attach


def _scan_control(m, g: WindowGeometry, i, o, room=None):
    """The scan's control at row ``r``, column ``c`` (of the padded image): ``row_ok`` (bit k:
    window row k lies in the image), ``col_real``, ``col_first``, ``real`` (a pixel is taken
    here), ``emit`` (a window is offered here) and ``adv`` (the scan moves on this cycle: its
    pixel taken or padding, and the output free if it emits: ``room`` when given, else
    ``~o.valid | o.ready``); drives ``i.ready``.

    The position's flags are registers (``i.ready`` and ``adv`` are two gates from registers,
    not a table lookup of the counters): the returned ``advance(step_c, c_next, step_r,
    r_next)`` loads them from the tables at the counters' next values when they step."""
    kh = g.kh
    rows = {"emit": [int(v) for v in g.row_emits()],
            "ok": [sum(1 << k for k in range(kh) if 0 <= rr - kh + 1 + k < g.H)
                   for rr in range(g.rows)],
            "in": [int(rr < g.H) for rr in range(g.rows)]}
    cols = {"emit": [int(v) for v in g.col_emits()],
            "real": [int(cc < g.W) for cc in range(g.cols)],
            "first": [int(cc == 0) for cc in range(g.cols)]}
    rr = {k: Signal(kh if k == "ok" else 1, name=f"row_{k}", init=v[0]) for k, v in rows.items()}
    cr = {k: Signal(name=f"col_{k}", init=v[0]) for k, v in cols.items()}
    real, adv = Signal(), Signal()
    emit = rr["emit"] & cr["emit"]
    out_free = (~o.valid | o.ready) if room is None else room
    m.d.comb += [real.eq(rr["in"] & cr["real"]),
                 i.ready.eq(real & (~emit | out_free)),
                 adv.eq((~real | i.valid) & (~emit | out_free))]

    def advance(step_c, c_next, step_r, r_next):
        for regs, tables, step, nxt in ((cr, cols, step_c, c_next), (rr, rows, step_r, r_next)):
            for k, reg in regs.items():
                v = Signal(len(reg), name=f"{reg.name}_next")     # 0 where no case is
                _table(m, nxt, v, tables[k])
                with m.If(step):
                    m.d.sync += reg.eq(v)

    return rr["ok"], cr["real"], cr["first"], real, emit, adv, advance


def _counter(m, n: int, name: str):
    """A counter modulo ``n`` and its next value, both registers (the next value's increment
    and wrap are off the paths that use it: the scan flags' table lookups, the memories'
    read addresses). Returns ``(value, next, step)``; ``step(cond)`` advances both when
    ``cond``."""
    cur = Signal(range(max(n, 2)), name=name)
    nxt = Signal(range(max(n, 2)), name=f"{name}_next", init=1 % n)

    def step(cond):
        with m.If(cond):
            m.d.sync += [cur.eq(nxt), nxt.eq(Mux(nxt == n - 1, 0, nxt + 1))]

    return cur, nxt, step


def lb_mode(value, layer: str) -> int:
    """The fold key ``lb_reg`` of ``layer`` checked: 0 (the line buffer read as the scan
    advances), 1 (its write registered) or 2 (its read registered); see :func:`_line_buffer`."""
    if value not in (0, 1, 2):
        raise IRError(f"layer {layer!r}: lb_reg is {value!r} (0, 1 or 2)")
    return int(value)


def _line_buffer(m, elem, lanes: int, kh: int, depth: int, adv, addr, addr_next, payload,
                 mode: int = 0):
    """The last ``kh - 1`` rows of the scan: ``depth`` words of ``(kh - 1) * lanes`` elements,
    word ``addr`` rewritten with ``payload`` and the rows above it when the scan advances, the
    next word read one cycle ahead. Returns the read port (slot s: row ``s + 1`` up).

    ``mode`` 1 (``lb_reg = 1``; a depth of 2 or more): the write's enable, address and word are
    registers, so the scan's advance (a few gates behind the producer's ``valid``) reaches no
    memory write port but a flip-flop, and the write lands one cycle later; the read port
    reads the next word on the advance only (its enable, not an address multiplexer). Same
    words read: the late write's word is read again ``depth`` advances later at the earliest,
    by then written; only at depth 2 in the same cycle, and only there is the read port
    transparent for the write (a bypass multiplexer per bit behind an address comparison,
    whose fanout cost as much as the write it replaced). Measured on the CifarNet-split8
    branch folded for 10,000 cycles on an LFE5U-85F at 100 MHz with register slices (four
    nextpnr seeds each, ``results/synth_flow.json``): 97.8 / 85.4 / 86.9 / 90.0 MHz without,
    77.4 / 79.2 / 75.1 / 92.4 with; the scan's advance then enables the read register's
    bits instead of a few address bits. :func:`lcp.hw.build.pipelined` does not set it.

    ``mode`` 2 (``lb_reg = 2``; a depth of 2 or more): the read registered. Two asynchronous
    reads, of the next word and of the current one, each into a register every cycle, and the
    registered advance picks one: the words of mode 0 in the same cycles (the write goes to
    the current word, read only while the scan does not advance, when nothing is written), but
    no memory read on a path (a block RAM's 5.6 ns clock-to-output on ECP5, a LUT RAM's read
    and bank multiplexer) and the advance on no read address: LUT RAM twice, a 2:1
    multiplexer per bit. Set by :func:`lcp.hw.build.pipelined` where memory reads are
    registered (``ram_reg``)."""
    late = mode == 1 and depth >= 2
    layout = data.ArrayLayout(elem, (kh - 1) * lanes)
    m.submodules.linebuf = lb = Memory(shape=layout, depth=depth, init=[])
    wr = lb.write_port()
    word = Signal(layout)
    m.d.comb += [word[ch].eq(payload[ch]) for ch in range(lanes)]
    if mode == 2 and depth >= 2:
        nxt, cur = lb.read_port(domain="comb"), lb.read_port(domain="comb")
        q_nxt, q_cur, out = Signal(layout), Signal(layout), Signal(layout)
        adv_q = Signal()
        m.d.comb += [nxt.addr.eq(addr_next), cur.addr.eq(addr), out.eq(Mux(adv_q, q_nxt, q_cur))]
        m.d.sync += [q_nxt.eq(nxt.data), q_cur.eq(cur.data), adv_q.eq(adv)]
        m.d.comb += [word[s * lanes + ch].eq(out[(s - 1) * lanes + ch])
                     for s in range(1, kh - 1) for ch in range(lanes)]
        m.d.comb += [wr.addr.eq(addr), wr.en.eq(adv), wr.data.eq(word)]
        return SimpleNamespace(data=out)
    rd = lb.read_port(domain="sync", transparent_for=() if late and depth > 2 else (wr,))
    m.d.comb += [word[s * lanes + ch].eq(rd.data[(s - 1) * lanes + ch])
                 for s in range(1, kh - 1) for ch in range(lanes)]
    if late:
        m.d.comb += [rd.addr.eq(addr_next), rd.en.eq(adv)]
        m.d.sync += [wr.addr.eq(addr), wr.en.eq(adv), wr.data.eq(word)]
    else:
        m.d.comb += [rd.addr.eq(Mux(adv, addr_next, addr)), rd.en.eq(1),
                     wr.addr.eq(addr), wr.en.eq(adv), wr.data.eq(word)]
    return rd


def _table(m, index, target, values):
    """``target = values[index]`` as a case statement (default 0)."""
    with m.Switch(index):
        for k, v in enumerate(values):
            if v:
                with m.Case(k):
                    m.d.comb += target.eq(v)


def _tree_max(vals):
    vals = list(vals)
    while len(vals) > 1:
        nxt = [Mux(vals[k] > vals[k + 1], vals[k], vals[k + 1]) for k in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


def _avg(m, vals, shift, rounding, lo, hi):
    s = Signal(signed(max(v.shape().width for v in vals) + math.ceil(math.log2(len(vals))) + 2))
    m.d.comb += s.eq(tree_sum(vals))
    if shift < 0:           # a Trunc whose output scale is finer than the sum's: exact product
        q = Signal(signed(s.shape().width - shift))
        m.d.comb += q.eq(s << -shift)
        return Mux(q < lo, lo, Mux(q > hi, hi, q))
    q = Signal(signed(s.shape().width))
    m.d.comb += q.eq(s >> shift)
    if shift and rounding != "floor":
        rem = s[:shift]
        if rounding == "ceil":
            q2 = q + (rem != 0)
        else:       # half to even
            half = 1 << (shift - 1)
            q2 = q + ((rem > half) | ((rem == half) & q[0]))
        qr = Signal(signed(s.shape().width + 1))
        m.d.comb += qr.eq(q2)
    else:
        qr = q
    return Mux(qr < lo, lo, Mux(qr > hi, hi, qr))


class PoolPlan:
    """Max or average pool layer: the window unit with a per-channel reduction.

    In ``C`` lanes (a whole pixel per beat), out ``C`` lanes; one window per cycle.
    """

    kind = "pool"

    ops: tuple[str, ...] = ()
    mode = ""
    fold_keys = ("lb_reg",)
    parallel = narrowable = passthrough = False

    @staticmethod
    def demand(model, layer, fold):
        return model.tensors[layer.inputs[0]].shape[0]          # whole pixels

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        src = low.adapt(srcs[0], low.model.tensors[layer.inputs[0]].shape[0], layer.name)
        return cls(layer, src[2], out_spec, lb_reg=fold.get("lb_reg", 0)), [src]

    def __init__(self, layer: Layer, in_fmt: StreamFormat, out_spec, lb_reg: int = 0):
        self.layer = layer
        self.lb_reg = lb_mode(lb_reg, layer.name)
        self.geo = WindowGeometry(layer, in_fmt.shape)
        self.in_fmt = in_fmt
        self.out_fmt = StreamFormat.of(out_spec, in_fmt.shape[0])

    def timing(self, offers):
        frames = offers[0].size // self.geo.H // self.geo.W
        acc, out, _ = window_scan(self.geo, offers[0], frames)
        return [acc], out

    def resources(self) -> Resources:
        g, bits = self.geo, self.in_fmt.bits
        width, depth = g.line_buffer_bits(bits)
        lb = _line_buffer_cost(width, depth, self.lb_reg)
        n = g.kh * g.kw
        red = g.C * (n - 1) * (bits + (2 if self.mode == "max" else math.ceil(math.log2(n)) + 2))
        regs = g.kh * g.kw * g.C * bits + g.C * self.out_fmt.bits + 32
        mask = g.kh * g.kw * g.C * bits / 2
        return lb + Resources(lut=red + mask + 40, ff=regs)

    def build(self) -> WindowEngine:
        pad = self.in_fmt.lo if self.mode == "max" else 0
        a = self.layer.attrs
        return WindowEngine(self.geo, self.in_fmt, pad=pad, mode=self.mode, out_fmt=self.out_fmt,
                            shift=a.get("shift", 0), rounding=a.get("rounding", "floor"),
                            lb_reg=self.lb_reg)


class MaxPoolPlan(PoolPlan):
    """``maxpool``: per-channel maximum of the window (padding is the input minimum)."""

    ops = ("maxpool",)
    mode = "max"


class AvgPoolPlan(PoolPlan):
    """``avgpool``: per-channel ``clip(rnd(sum / 2**shift))`` of the window."""

    ops = ("avgpool",)
    mode = "avg"


def _line_buffer_cost(width: int, depth: int, mode: int = 0) -> Resources:
    """Line buffer: LUT RAM when small, block RAM otherwise; ``mode`` 1: its write registers;
    2: two LUT RAM copies (asynchronous reads), their registers and a 2:1 multiplexer."""
    if width == 0:
        return Resources()
    if mode == 1 and depth >= 2:
        return (_line_buffer_cost(width, depth)
                + Resources(ff=width + max(1, math.ceil(math.log2(depth))) + 1))
    if mode == 2 and depth >= 2:
        return Resources(lut=2 * width * math.ceil(depth / 64) + width, ff=2 * width + 1)
    if width * depth <= 8192:
        return Resources(lut=width * math.ceil(depth / 64), ff=width)
    return Resources(lut=10, ff=width, bram=bram36(width, depth))
