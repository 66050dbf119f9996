"""Shape and integer-range inference for IR layers.

:func:`infer_layer` gives the output :class:`~lcp.ir.TensorSpec` of a layer from its input
specs: the exact per-image shape and a value range that every input in range stays inside.
Each op's rule lives with its definition in the op table (:mod:`lcp.ops`); for ``conv`` and
``dense`` the range is exact for the given weights (the accumulator width that hardware must
provide), in the spirit of FINN's minimal accumulator width.
"""

from __future__ import annotations

from .ir import infer as infer_layer
from .ops import acc_range, window_out as pool_out

__all__ = ["infer_layer", "pool_out", "acc_range"]
