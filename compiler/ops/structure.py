"""Data movement: ``concat`` and ``flatten``.

``concat``
    Concatenation along channels (axis 0 of the per-image shape); every input has the same
    shape beyond the channel axis. The inputs may be at different scales: the IR holds
    integers, and whoever reads the result (a requantization, the output dequantization)
    carries one scale per channel.
``flatten``
    ``(C, ...) -> (C * ...,)`` in C order.
"""

from __future__ import annotations

import numpy as np

from ..tensor import IRError, TensorSpec
from .base import OpDef

__all__ = ["Concat", "Flatten"]


class Concat(OpDef):
    name = "concat"
    n_inputs = None
    narrow_output = True

    def infer(self, layer, ins):
        x = ins[0]
        if any(len(t.shape) != len(x.shape) or t.shape[1:] != x.shape[1:] for t in ins):
            raise IRError(f"inputs differ beyond the channel axis: {[t.shape for t in ins]}")
        scales = {t.scale for t in ins}
        bipolar = all(t.bipolar for t in ins)
        return TensorSpec((sum(t.shape[0] for t in ins),) + x.shape[1:],
                          min(t.lo for t in ins), max(t.hi for t in ins),
                          x.scale if len(scales) == 1 else None, bipolar)

    def run(self, layer, xs, specs):
        return np.concatenate(xs, axis=1)


class Flatten(OpDef):
    name = "flatten"
    narrow_output = True

    def infer(self, layer, ins):
        return ins[0].with_(shape=(ins[0].size,))

    def run(self, layer, xs, specs):
        return xs[0].reshape(xs[0].shape[0], -1)
