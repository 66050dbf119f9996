"""Data movement: ``concat`` and ``flatten``.

``concat``
    Concatenation along channels (axis 0 of the per-image shape); every input has the same
    shape beyond the channel axis. The inputs may be at different scales: the IR holds
    integers, and whoever reads the result (a requantization, the output dequantization)
    carries one scale per channel.
``flatten``
    ``(C, ...) -> (C * ...,)`` in C order.
``slice``
    Channels ``start .. stop - 1`` of the input (axis 0 of the per-image shape): the ``k``
    channels a branch sends to the others at an exchange point.
"""

from __future__ import annotations

import numpy as np

from ..tensor import IRError, TensorSpec
from .base import REQUIRED, OpDef

__all__ = ["Concat", "Flatten", "Slice"]


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


class Slice(OpDef):
    name = "slice"
    attrs = {"start": REQUIRED, "stop": REQUIRED}
    narrow_output = True

    def check_attrs(self, layer) -> None:
        a, b = layer.attrs["start"], layer.attrs["stop"]
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (a, b)) \
                or not 0 <= a < b:
            raise IRError(f"start={a!r}, stop={b!r} is not a channel range")

    def infer(self, layer, ins):
        x = ins[0]
        if layer.attrs["stop"] > x.shape[0]:
            raise IRError(f"channels {layer.attrs['start']}..{layer.attrs['stop'] - 1} of a "
                          f"{x.shape[0]}-channel input")
        return x.with_(shape=(layer.attrs["stop"] - layer.attrs["start"],) + x.shape[1:])

    def run(self, layer, xs, specs):
        return np.ascontiguousarray(xs[0][:, layer.attrs["start"]:layer.attrs["stop"]])
