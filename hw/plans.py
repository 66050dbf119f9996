"""The hardware op table: one plan class per IR op, found by op name.

Everything in ``hw/`` that depends on what an op is asks this table (the compiler's op table,
:mod:`lcp.ops`, defines the op's semantics and counters; this one defines its engine). A plan
class answers, for the graph builder (:mod:`lcp.hw.graph`) and the folding chooser
(:mod:`lcp.hw.chooser`):

``fold_keys``
    the per-layer entries a :class:`~lcp.hw.folding.Folding` may hold for the op
    (``pe``/``simd``/``dsp`` for a matrix-vector engine, ``lanes`` for a pointwise one).
``parallel``
    the op is a ``PE x SIMD`` engine: ``mvu_shape(layer)`` gives its ``(O, F)`` (outputs, inputs
    per output), the chooser walks :func:`~lcp.hw.chooser.candidates` of it, ``prefer_pe`` breaks
    ties towards more PEs.
``narrowable``
    a requantizer whose output lanes the chooser may narrow.
``passthrough``
    no engine: the op relabels its input stream (``flatten``).
``demand(model, layer, fold)``
    lanes the op takes of its first input (``None``: any).
``dram``
    (conv, dense) the plan class whose weights stream from DRAM (:mod:`lcp.hw.weightstream`),
    chosen by the folding key ``dram: 1``; its ``valid(layer, in_shape, pe, simd)`` says which
    foldings it builds.
``lower(low, layer, srcs, fold, out_spec)``
    the plan (its ``timing`` is the cycle model, ``resources`` the estimate, ``build`` the
    generator) and the input stream endpoints, adapted through ``low.adapt`` where the engine
    needs other lanes.

To add an engine: write its plan class with these members and list it in :data:`_PLANS`.
"""

from __future__ import annotations

from lcp.ir import IRError, Layer

from .depthwise import GroupedConvPlan
from .mvu import ConvPlan, DensePlan
from .weightstream import DramConvPlan, DramDensePlan
from .pointwise import AddPlan, ConcatPlan, ReluPlan, ThresholdPlan
from .window import AvgPoolPlan, MaxPoolPlan

__all__ = ["PLANS", "plan_for", "FlattenPlan"]


class FlattenPlan:
    """``flatten``: no engine; the stream keeps its order (a flattened ``(C, H, W)`` tensor
    arrives in HWC order, its consumer absorbs the permutation)."""

    ops = ("flatten",)
    fold_keys = ()
    parallel = narrowable = False
    passthrough = True

    @staticmethod
    def demand(model, layer, fold):
        return None


class _MvuOp:
    """A conv or dense layer: the on-chip ROM engine (:mod:`lcp.hw.mvu`), or with ``dram: 1`` in
    its folding the weights-from-DRAM one (:mod:`lcp.hw.weightstream`)."""

    onchip: type
    dram: type
    parallel, narrowable, passthrough = True, False, False

    @classmethod
    def mvu_shape(cls, layer):
        return cls.onchip.mvu_shape(layer)

    @classmethod
    def onchip_for(cls, layer):
        """The on-chip plan class of ``layer``."""
        return cls.onchip

    @classmethod
    def demand(cls, model, layer, fold):
        onchip = cls.onchip if fold.get("dram") else cls.onchip_for(layer)
        return onchip.demand(model, layer, fold)

    @classmethod
    def lower(cls, low, layer, srcs, fold, out_spec):
        if not fold.get("dram"):
            return cls.onchip_for(layer).lower(low, layer, srcs, fold, out_spec)
        lanes = cls.onchip.demand(low.model, layer, fold)
        src = low.adapt(srcs[0], lanes, layer.name)
        return cls.dram(layer, src[2], out_spec, pe=fold.get("pe", 1), simd=fold.get("simd", 1),
                        dsp=fold.get("dsp")), [src]


class ConvOp(_MvuOp):
    ops, onchip, dram, prefer_pe = ("conv",), ConvPlan, DramConvPlan, False
    fold_keys = ConvPlan.fold_keys + ("dram",)

    @classmethod
    def onchip_for(cls, layer):
        """Grouped and depthwise convs stream their window in channel groups."""
        return GroupedConvPlan if int(layer.attrs.get("groups", 1)) > 1 else ConvPlan


class DenseOp(_MvuOp):
    ops, onchip, dram, prefer_pe = ("dense",), DensePlan, DramDensePlan, True
    fold_keys = DensePlan.fold_keys + ("dram",)


_PLANS = (ConvOp, DenseOp, MaxPoolPlan, AvgPoolPlan, ThresholdPlan, ReluPlan, AddPlan,
          ConcatPlan, FlattenPlan)

#: IR op name -> plan class.
PLANS: dict[str, type] = {op: cls for cls in _PLANS for op in cls.ops}


def plan_for(layer: Layer) -> type:
    """The plan class of ``layer``; :class:`IRError` naming the layer when no engine exists."""
    try:
        return PLANS[layer.op]
    except KeyError:
        raise IRError(f"layer {layer.name!r}: the hardware generator has no engine for op "
                      f"{layer.op!r} (it builds {', '.join(sorted(PLANS))})") from None
