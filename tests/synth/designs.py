"""Small streaming engines for the synthesis tests (independent of lcp.hw).

:class:`MacChain` is two layers: ``mac`` (``lanes`` signed 4-bit inputs per beat, multiplied by
4-bit weights from a ROM and accumulated over ``depth`` beats) feeding ``post`` (ReLU and a
shift to 4 bits, one output beat per accumulation). More lanes mean more multipliers, so the
area grows with ``lanes``.
"""


import random

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MacEngine", "PostEngine", "MacChain", "reference", "weights"]


def weights(lanes: int, depth: int, seed: int = 1) -> list[list[int]]:
    rnd = random.Random(seed)
    return [[rnd.randrange(-7, 8) for _ in range(lanes)] for _ in range(depth)]


class MacEngine(wiring.Component):
    def __init__(self, lanes: int, depth: int):
        self.lanes, self.depth = lanes, depth
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(signed(4), lanes))),
            "o_stream": Out(stream.Signature(signed(16))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = memory.Memory(
            shape=data.ArrayLayout(signed(4), self.lanes), depth=self.depth,
            init=weights(self.lanes, self.depth))
        rp = rom.read_port(domain="comb")
        addr = Signal(range(self.depth))
        acc = Signal(signed(16))
        m.d.comb += rp.addr.eq(addr)
        total = sum(self.i_stream.payload[k] * rp.data[k] for k in range(self.lanes))
        m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready)
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            with m.If(addr == self.depth - 1):
                m.d.sync += [self.o_stream.payload.eq(acc + total), self.o_stream.valid.eq(1),
                             acc.eq(0), addr.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(acc + total), addr.eq(addr + 1)]
        return m


class PostEngine(wiring.Component):
    i_stream: In(stream.Signature(signed(16)))
    o_stream: Out(stream.Signature(unsigned(4)))

    def elaborate(self, platform):
        m = Module()
        x = self.i_stream.payload
        y = Signal(unsigned(4))
        with m.If(x[15]):
            m.d.comb += y.eq(0)
        with m.Elif(x[7:15] != 0):
            m.d.comb += y.eq(15)
        with m.Else():
            m.d.comb += y.eq(x[3:7])
        m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready)
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [self.o_stream.payload.eq(y), self.o_stream.valid.eq(1)]
        return m


class MacChain(wiring.Component):
    def __init__(self, lanes: int = 4, depth: int = 8):
        self.lanes, self.depth = lanes, depth
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(signed(4), lanes))),
            "o_stream": Out(stream.Signature(unsigned(4))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = MacEngine(self.lanes, self.depth)
        m.submodules.post = post = PostEngine()
        wiring.connect(m, wiring.flipped(self.i_stream), mac.i_stream)
        wiring.connect(m, mac.o_stream, post.i_stream)
        wiring.connect(m, post.o_stream, wiring.flipped(self.o_stream))
        return m


def _s4(v: int) -> int:
    return v - 16 if v & 8 else v


def reference(beats: list[int], lanes: int, depth: int) -> list[int]:
    """Expected outputs of :class:`MacChain` for packed input beats."""
    w = weights(lanes, depth)
    out, acc = [], 0
    for k, b in enumerate(beats):
        xs = [_s4((b >> (4 * i)) & 15) for i in range(lanes)]
        acc += sum(x * y for x, y in zip(xs, w[k % depth]))
        if k % depth == depth - 1:
            a = ((acc + (1 << 15)) % (1 << 16)) - (1 << 15)
            out.append(0 if a < 0 else 15 if (a >> 7) & 0xFF else (a >> 3) & 15)
            acc = 0
    return out
