"""The reused engine with its activations in DRAM: the program of
:class:`~lcp.hw.reuse_program.ReusedProgram` when even one activation tensor does not fit the
device's block RAM (a 224x224 MobileNet-v1's 64x111x111 feature map at 8 bits is 6.3 Mbit, the
XC7Z020 has 5.2); modelled (cycles, resources, DRAM traffic), no generator.

Every tensor of the branch has its own region in DRAM (HWC, ``CG = ceil(C / SIMD)`` words of
``SIMD`` elements of ``xbits`` bits per pixel, as in the on-chip layout); the input image is
written there as it arrives, the result read from there as it leaves. On chip, a line buffer of
``KH + SH`` input rows (the rows the next windows need plus the ones being read; one word per
channel group for a global pool) feeds the ``PE x SIMD`` array, and the output words go to
DRAM through the AXI write channel as they are produced. The weights and thresholds are fetched per block of ``PE`` output channels as in the
on-chip program.

Cycle model of a phase (``T``: its start). The HP port's read channel carries the phase's
weights and its input activations; its write channel (independent in AXI) the output. With
``in_b``/``out_b`` the input/output tensor's beats (64 bits), ``wt`` the phase's weight and
threshold beats (all ``fo`` blocks) and ``blk`` one block's:

- ``mac``: two loop orders, the one with fewer read beats is taken: output-channel blocks
  outside (weights read once, the input ``fo`` times: ``wt + fo * in_b``) or output rows
  outside (the input read once, the weights once per output row: ``in_b + OH * wt``). The
  phase ends at ``T + max(fetch(blk) + fo * P * fi, fetch(reads), out_b) + DRAIN``: the
  compute after the first block's fetch, bound by the port where it reads more than one beat
  per step (the first layers' large feature maps), and by the write channel;
- ``pool``: ``T + max(P * CG * KH * KW, fetch(in_b), out_b) + DRAIN``;
- a modelled phase (:meth:`~lcp.hw.reuse_program.ReusedProgram._modelled`): its on-chip
  cycles, or the fetch of its parameters and all its inputs if longer (a residual add reads
  both operands), or its output's write.

``fetch`` is :meth:`~lcp.hw.weightstream.HpPort.fetch_cycles`; the output's beats are
written one per cycle. This is a roofline-style bound per phase (compute, read channel, write
channel), not a cycle-exact schedule: there is no RTL to be exact against.
"""

from __future__ import annotations

from lcp.ir import IRError

from .base import Resources, bram36
from .reuse_program import DRAIN, Phase, ReusedProgram
from .weightstream import AXI_MASTER_COST

__all__ = ["ActDramProgram"]


class ActDramProgram(ReusedProgram):
    """:class:`~lcp.hw.reuse_program.ReusedProgram` with every activation tensor in DRAM (see
    the module docstring). Same phases, DRAM weight image and ``PE x SIMD`` array."""

    activations = "dram"

    @classmethod
    def of(cls, prog: ReusedProgram) -> "ActDramProgram":
        """The same program (phases shared) with its activations in DRAM."""
        other = cls.__new__(cls)
        other.__dict__.update(prog.__dict__)
        return other

    # -- traffic -------------------------------------------------------------------------
    def act_beats(self, shape) -> int:
        """64-bit beats of a tensor of ``shape`` in the DRAM layout."""
        return -(-self.words(shape) * self.simd * self.xbits // 64)

    def _io(self, ph: Phase) -> tuple[int, int]:
        """``(input beats, output beats)`` of a phase's activations."""
        t = self.model.tensors
        l = ph.layers[0]
        ins = sum(self.act_beats(t[i].shape) for i in l.inputs if i in t)
        return ins, self.act_beats(t[ph.layers[-1].output].shape)

    def _reads(self, ph: Phase) -> int:
        """Beats the phase reads (weights, thresholds, parameters and input activations)."""
        in_b, _ = self._io(ph)
        if ph.kind == "mac":
            wt = self.fo(ph) * self.block_beats(ph)
            return min(wt + self.fo(ph) * in_b, in_b + ph.OH * wt)
        if ph.kind == "pool":
            return in_b
        return self._modelled(ph)[1] // 8 + in_b

    # -- cycle model ---------------------------------------------------------------------
    def phase_end(self, ph: Phase, T: int) -> int:
        _, out_b = self._io(ph)
        reads = self.port.fetch_cycles(self._reads(ph))
        if ph.kind == "mac":
            comp = self.port.fetch_cycles(self.block_beats(ph)) + \
                self.fo(ph) * ph.OH * ph.OW * self.fi(ph)
        elif ph.kind == "pool":
            comp = ph.OH * ph.OW * self.cg(ph.C) * ph.KH * ph.KW
        else:
            comp = self._modelled(ph)[0] - DRAIN
        return T + max(comp, reads, out_b) + DRAIN

    def cycles(self) -> tuple[int, dict, int]:
        """``(latency, per-phase cycles, DRAM bytes per image)``: the bytes count every read
        and write of the port (weights, activations, the input written, the result read)."""
        lat, per, _ = super().cycles()
        dram = 8 * (self.act_beats(self.in_spec.shape) + self.act_beats(self.out_spec.shape))
        for ph in self.phases:
            dram += 8 * (self._reads(ph) + self._io(ph)[1])
        return lat, per, dram

    # -- resources -----------------------------------------------------------------------
    def resources(self, dsp_budget: int) -> Resources:
        """The on-chip program's estimate with its two activation buffers replaced by the
        ``KH + SH``-row line buffer and an output row buffer, plus the AXI write master."""
        chip = super().resources(dsp_budget)
        act = self.act_buffers()
        t = self.model.tensors
        rows = [self._window_words(p) for p in self.phases]
        outs = [self._geo(t[p.layers[-1].output].shape) for p in self.phases]
        width = self.simd * self.xbits
        mine = bram36(width, max(rows)) + bram36(width, max(W * self.cg(C) for C, _, W in outs))
        return chip + Resources(bram=mine - act) + AXI_MASTER_COST

    def _window_words(self, ph: Phase) -> int:
        """Words of the on-chip line buffer a phase needs: ``min(KH + SH, H)`` input rows for
        a window (conv, pool, grouped conv), one accumulator word per channel group for a
        global pool (the kernel is the whole map), one word otherwise (a dense layer re-reads
        its input per block)."""
        l = ph.layers[0]
        shape = self.model.tensors[l.inputs[0]].shape
        if "kernel" not in l.attrs or len(shape) != 3:
            return 1
        C, H, W = shape
        (kh, kw), (sh, _) = l.attrs["kernel"], l.attrs["stride"]
        if (kh, kw) == (H, W):
            return self.cg(C)
        return min(kh + sh, H) * W * self.cg(C)

    def check_buildable(self) -> None:
        raise IRError("reused engine with activations in DRAM: modelled (cycles, resources, "
                      "DRAM traffic), the generator keeps activations on chip")
