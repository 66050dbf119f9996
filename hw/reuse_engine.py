"""The reused engine's generator: one ``PE x SIMD`` multiply-accumulate array runs a branch's
phases one after the other, weights and thresholds from DRAM over an AXI4 read master, the
activations in two on-chip buffers.

The program, the memory layout, the DRAM image and the cycle model are
:class:`lcp.hw.reuse_program.ReusedProgram`'s; this component follows that schedule cycle for
cycle. Per cycle one step is issued (a ``mac`` step: one activation word times one step word
of ``PE x SIMD`` weights; a ``pool`` step: one activation word); the pipeline is: read
(activation buffer and weight tile), multiply and sum per output lane, accumulate (or take the
lane-wise maximum), requantize against the block's thresholds and write ``PE`` lanes (or the
word) into the other buffer: :data:`~lcp.hw.reuse_program.DRAIN` cycles after the last issue.

Members
-------
i_stream : In(stream.Signature(unsigned(SIMD * xbits)))
    the input image, one buffer word per beat (:meth:`ReusedProgram.pack_input`).
o_stream : Out(stream.Signature(unsigned(SIMD * xbits)))
    the result, one word per beat (:meth:`ReusedProgram.unpack_output`).
w_base : In(32)
    byte address of :meth:`ReusedProgram.dram_image` in DRAM.
m_axi_* : the AXI4 read channels (:func:`lcp.hw.axiread.axi_read_signature`).
"""

from __future__ import annotations

from types import SimpleNamespace

from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axiread import AxiReadMaster, axi_read_signature
from .reuse_program import DRAIN, ReusedProgram

__all__ = ["ReusedEngine", "write_build", "TOP"]

#: Module name of the generated Verilog.
TOP = "lcp_reused"


def _odometer(m, ctrs, on_wrap) -> None:
    """Step the counters ``[(signal, bound), ...]`` (innermost first); ``on_wrap()`` when all
    wrap."""
    sig, bound = ctrs[0]
    with m.If(sig == bound - 1):
        m.d.sync += sig.eq(0)
        if len(ctrs) > 1:
            _odometer(m, ctrs[1:], on_wrap)
        else:
            on_wrap()
    with m.Else():
        m.d.sync += sig.eq(sig + 1)


class ReusedEngine(wiring.Component):
    """See the module docstring; ``prog`` must pass :meth:`ReusedProgram.check_buildable`."""

    def __init__(self, prog: ReusedProgram):
        prog.check_buildable()
        self.prog = prog
        word = prog.simd * prog.xbits
        super().__init__({"i_stream": In(stream.Signature(unsigned(word))),
                          "o_stream": Out(stream.Signature(unsigned(word))),
                          "w_base": In(32), **axi_read_signature()})

    def elaborate(self, platform):
        m = Module()
        P = self.prog
        PE, S, XB, WB, AB, TB, L = P.pe, P.simd, P.xbits, P.wbits, P.abits, P.tbits, P.levels
        phases = P.phases
        n = len(phases)
        LOAD, PRESEND, SEND = n, n + 1, n + 2
        macs = [p for p in phases if p.kind == "mac"]
        FIMAX = max([P.fi(p) for p in macs] + [1])
        FOMAX = max([P.fo(p) for p in macs] + [1])
        BBMAX = max([P.block_beats(p) for p in macs] + [1])
        R, NT = P.step_beats, P.thr_beats
        shapes = [P.in_spec.shape] + [P.model.tensors[p.layers[-1].output].shape
                                      for p in phases]
        depth = max(P.words(s) for s in shapes)

        m.submodules.axi = axi = AxiReadMaster(P.port.outstanding)
        for name, mem in axi_read_signature().items():
            if mem.flow == wiring.Out:
                m.d.comb += getattr(self, name).eq(getattr(axi, name))
            else:
                m.d.comb += getattr(axi, name).eq(getattr(self, name))

        ph = Signal(range(n + 3), init=LOAD)
        bufs = [Memory(shape=S * XB, depth=depth, init=[]) for _ in range(2)]
        m.submodules.buf0, m.submodules.buf1 = bufs
        wps = [b.write_port(granularity=XB) for b in bufs]
        rps = [b.read_port(domain="sync") for b in bufs]
        m.submodules.tile = tile = Memory(shape=R * 64, depth=2 * FIMAX, init=[])
        twp = tile.write_port(granularity=64)
        trp = tile.read_port(domain="sync")
        thr = [Signal(NT * 64, name=f"thr{h}") for h in range(2)]

        rd_addr = Signal(range(depth))
        wr_addr, wr_data, wr_en, wr_sel = (Signal(range(depth)), Signal(S * XB), Signal(S),
                                           Signal())
        for k in range(2):
            m.d.comb += [rps[k].addr.eq(rd_addr), wps[k].addr.eq(wr_addr),
                         wps[k].data.eq(wr_data), wps[k].en.eq(Mux(wr_sel == k, wr_en, 0))]

        # -- issue counters and per-phase constants ---------------------------------------
        og, oh, ow, kh, kw, g = (Signal(16, name=x) for x in ("og", "oh", "ow", "kh", "kw", "g"))
        idone, dcnt = Signal(), Signal(range(DRAIN + 1))
        fk, fetched, written = (Signal(range(FOMAX + 2), name=x)
                                for x in ("fk", "fetched", "written"))
        wbeat, twd, tln = Signal(range(BBMAX + 1)), Signal(range(FIMAX + 1)), Signal(range(R + 1))
        issue, inb, first, last, blklast = (Signal(name=x) for x in
                                            ("issue", "inb", "first", "last", "blklast"))
        oaddr, slot = Signal(range(depth)), Signal(range(max(S // PE, 2)))
        c_xs, c_pool = Signal(), Signal()
        c_lo = Signal(signed(XB + 2))

        new_phase = Signal()          # the counters restart (applied last: it wins)

        def reset_phase():
            m.d.comb += new_phase.eq(1)

        # -- the sequencer --------------------------------------------------------------
        i = self.i_stream
        icnt = Signal(range(P.in_words + 1))
        scnt = Signal(range(P.out_words + 1))
        o = self.o_stream
        with m.Switch(ph):
            for k, p in enumerate(phases):
                with m.Case(k):
                    self._phase(m, P, p, k, n, SimpleNamespace(**locals()))
            with m.Case(LOAD):
                m.d.comb += [i.ready.eq(1), wr_addr.eq(icnt), wr_data.eq(i.payload),
                             wr_sel.eq(0)]
                with m.If(i.valid):
                    m.d.comb += wr_en.eq((1 << S) - 1)
                    m.d.sync += icnt.eq(icnt + 1)
                    with m.If(icnt == P.in_words - 1):
                        m.d.sync += [icnt.eq(0), ph.eq(0)]
                        reset_phase()
            with m.Case(PRESEND):
                m.d.comb += rd_addr.eq(0)
                m.d.sync += [ph.eq(SEND), scnt.eq(0)]
            with m.Case(SEND):
                m.d.comb += [o.valid.eq(1), o.payload.eq(rps[n % 2].data),
                             rd_addr.eq(Mux(o.ready, scnt + 1, scnt))]
                with m.If(o.ready):
                    m.d.sync += scnt.eq(scnt + 1)
                    with m.If(scnt == P.out_words - 1):
                        m.d.sync += [scnt.eq(0), ph.eq(LOAD)]

        # -- weight fetch: beats into the tile (steps) and the threshold registers ---------
        m.d.comb += [axi.o_stream.ready.eq(1), twp.data.eq(Cat(*[axi.o_stream.payload] * R)),
                     twp.addr.eq(Mux(fetched[0], FIMAX, 0) + twd)]

        # -- pipeline: read -> multiply/sum -> accumulate/max -> requantize/write -----------
        v1, first1, last1, inb1, blk1, bl1 = (Signal(name=f"{x}1") for x in
                                              ("v", "first", "last", "inb", "blk", "bl"))
        oaddr1, slot1 = Signal.like(oaddr), Signal.like(slot)
        m.d.sync += [v1.eq(issue), first1.eq(first), last1.eq(last), inb1.eq(inb),
                     blk1.eq(og[0]), bl1.eq(blklast), oaddr1.eq(oaddr), slot1.eq(slot)]
        word = Mux(ph[0], rps[1].data, rps[0].data)
        xw = Mux(inb1, word, 0)
        xs = []
        for s in range(S):
            e = xw[s * XB:(s + 1) * XB]
            xe = Signal(signed(XB + 1), name=f"x{s}")
            m.d.comb += xe.eq(Mux(c_xs, e.as_signed(), e))
            xs.append(xe)
        v2, first2, last2, blk2, bl2 = (Signal(name=f"{x}2") for x in
                                        ("v", "first", "last", "blk", "bl"))
        oaddr2, slot2 = Signal.like(oaddr), Signal.like(slot)
        psum = [Signal(signed(AB), name=f"psum{q}") for q in range(PE)]
        xw2 = Signal(S * XB)
        m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1), blk2.eq(blk1),
                     bl2.eq(bl1), oaddr2.eq(oaddr1), slot2.eq(slot1), xw2.eq(xw)]
        for q in range(PE):
            terms = [trp.data[(q * S + s) * WB:(q * S + s + 1) * WB].as_signed() * xs[s]
                     for s in range(S)]
            m.d.sync += psum[q].eq(sum(terms[1:], terms[0]))
        acc = [Signal(signed(AB), name=f"acc{q}") for q in range(PE)]
        run = Signal(S * XB)
        v3, blk3, bl3 = Signal(name="v3"), Signal(), Signal()
        oaddr3, slot3 = Signal.like(oaddr), Signal.like(slot)
        m.d.sync += [v3.eq(v2 & last2), blk3.eq(blk2), bl3.eq(bl2), oaddr3.eq(oaddr2),
                     slot3.eq(slot2)]
        with m.If(v2):
            for q in range(PE):
                m.d.sync += acc[q].eq(Mux(first2, 0, acc[q]) + psum[q])
            for s in range(S):
                a, b = run[s * XB:(s + 1) * XB], xw2[s * XB:(s + 1) * XB]
                gt = Mux(c_xs, b.as_signed() > a.as_signed(), b > a)
                m.d.sync += run[s * XB:(s + 1) * XB].eq(Mux(first2 | gt, b, a))
        th = Mux(blk3, thr[1], thr[0])
        outs = []
        for q in range(PE):
            cnt = sum(((th[(q * L + k) * TB:(q * L + k + 1) * TB].as_signed() <= acc[q])
                       .as_unsigned() for k in range(L)), Const(0, 8))
            oq = Signal(XB, name=f"out{q}")
            m.d.comb += oq.eq(c_lo + cnt)
            outs.append(oq)
        with m.If(v3 & (ph < LOAD)):
            m.d.comb += [wr_addr.eq(oaddr3), wr_sel.eq(~ph[0]),
                         wr_data.eq(Mux(c_pool, run, Cat(*outs * (S // PE)))),
                         wr_en.eq(Mux(c_pool, (1 << S) - 1,
                                      Const((1 << PE) - 1, S) << (slot3 * PE)))]
            with m.If(bl3):
                m.d.sync += written.eq(written + 1)
        with m.If(new_phase):
            m.d.sync += [x.eq(0) for x in (og, oh, ow, kh, kw, g, idone, dcnt, fk, fetched,
                                           written, wbeat, twd, tln)]
        return m

    def _phase(self, m, P: ReusedProgram, p, k: int, n: int, e: SimpleNamespace) -> None:
        """The issue logic, fetch and end of phase ``k`` (inside its ``Case``); ``e``: the
        shared signals of :meth:`elaborate`."""
        og, oh, ow, kh, kw, g = e.og, e.oh, e.ow, e.kh, e.kw, e.g
        S, PE = P.simd, P.pe
        CG, CGo = P.cg(p.C), P.cg(p.O)
        def done():
            m.d.sync += e.idone.eq(1)

        m.d.comb += [e.c_xs.eq(int(p.x_signed)), e.c_pool.eq(int(p.kind == "pool")),
                     e.c_lo.eq(p.out_lo)]
        ih, iw = Signal(signed(24), name=f"ih{k}"), Signal(signed(24), name=f"iw{k}")
        m.d.comb += [ih.eq(oh * p.SH + kh - p.PT), iw.eq(ow * p.SW + kw - p.PL),
                     e.rd_addr.eq(ih * (p.W * CG) + iw * CG + g),
                     e.inb.eq((ih >= 0) & (ih < p.H) & (iw >= 0) & (iw < p.W))]
        last_pos = (oh == p.OH - 1) & (ow == p.OW - 1)
        if p.kind == "mac":
            fi, fo, BB, WBT = P.fi(p), P.fo(p), P.block_beats(p), P.fi(p) * P.step_beats
            si = (kh * p.KW + kw) * CG + g
            m.d.comb += [
                e.issue.eq(~e.idone & (e.fetched > og)),
                e.trp.addr.eq(Mux(og[0], e.FIMAX, 0) + si),
                e.first.eq(si == 0), e.last.eq(si == fi - 1),
                e.blklast.eq((si == fi - 1) & last_pos),
                e.oaddr.eq((oh * p.OW + ow) * CGo + og // (S // PE)),
                e.slot.eq(og % (S // PE)),
            ]
            with m.If(e.issue):
                _odometer(m, [(g, CG), (kw, p.KW), (kh, p.KH), (ow, p.OW), (oh, p.OH),
                              (og, fo)], done)
            # fetch: block fk once block fk-1 is in and block fk-2 is written
            axi, fk, fetched = e.axi, e.fk, e.fetched
            m.d.comb += [
                axi.cmd.valid.eq((fk < fo) & (fetched == fk)
                                 & ((fk < 2) | (e.written + 1 >= fk))),
                axi.cmd.payload.addr.eq(self.w_base + P.offset(p) + fk * (BB * 8)),
                axi.cmd.payload.beats.eq(BB),
            ]
            with m.If(axi.cmd.valid & axi.cmd.ready):
                m.d.sync += fk.eq(fk + 1)
            beat = axi.o_stream.payload
            with m.If(axi.o_stream.valid):
                with m.If(e.wbeat < WBT):
                    m.d.comb += e.twp.en.eq(Const(1, P.step_beats) << e.tln)
                    with m.If(e.tln == P.step_beats - 1):
                        m.d.sync += [e.tln.eq(0), e.twd.eq(e.twd + 1)]
                    with m.Else():
                        m.d.sync += e.tln.eq(e.tln + 1)
                with m.Elif(e.wbeat < WBT + P.thr_beats):
                    for h in range(2):
                        t = e.thr[h]
                        with m.If(fetched[0] == h):
                            m.d.sync += t.eq(Cat(t[64:], beat) if P.thr_beats > 1 else beat)
                m.d.sync += e.wbeat.eq(e.wbeat + 1)
                with m.If(e.wbeat == BB - 1):
                    m.d.sync += [e.wbeat.eq(0), e.twd.eq(0), e.tln.eq(0),
                                 fetched.eq(fetched + 1)]
        else:
            m.d.comb += [
                e.issue.eq(~e.idone),
                e.first.eq((kh == 0) & (kw == 0)),
                e.last.eq((kh == p.KH - 1) & (kw == p.KW - 1)),
                e.oaddr.eq((oh * p.OW + ow) * CG + g),
            ]
            with m.If(e.issue):
                _odometer(m, [(kw, p.KW), (kh, p.KH), (g, CG), (ow, p.OW), (oh, p.OH)],
                          done)
        with m.If(e.idone):
            m.d.sync += e.dcnt.eq(e.dcnt + 1)
            with m.If(e.dcnt == DRAIN - 1):
                m.d.sync += e.ph.eq(k + 1 if k + 1 < n else e.PRESEND)
                e.reset_phase()


def write_build(prog: ReusedProgram, folder: str | Path) -> dict:
    """Write the engine's Verilog (``lcp_reused.v``, module :data:`TOP`) and its DRAM image
    (``weights.bin``, to be placed at the address ``w_base`` receives) into ``folder``;
    return their paths and sizes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    v = folder / f"{TOP}.v"
    v.write_text(verilog.convert(ReusedEngine(prog), name=TOP, emit_src=False))
    img = prog.dram_image()
    w = folder / "weights.bin"
    w.write_bytes(img.tobytes())
    return {"verilog": str(v), "top": TOP, "weights": str(w), "weights_bytes": int(img.size),
            "in_words": prog.in_words, "out_words": prog.out_words,
            "word_bits": prog.simd * prog.xbits}
