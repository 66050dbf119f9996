"""The op table: one :class:`~lcp.ops.base.OpDef` per IR op, found by name.

Everything in the compiler that depends on what an op is (IR validation, shape and range
inference, golden execution, counters, partitioning) asks this table. To add an op, write an
:class:`OpDef` subclass (attributes, ``infer``, ``run``, counters) and list it in
:data:`_DEFS`; its semantics go in the module docstring of the file that defines it.
"""

from __future__ import annotations

from ..tensor import IRError
from .base import REQUIRED, OpDef, Window, window_out
from .linear import Conv, Dense, acc_range
from .pointwise import Add, Relu, Threshold
from .structure import Concat, Flatten, Slice
from .window import AvgPool, MaxPool, round_shift

__all__ = ["OPS", "get", "OpDef", "REQUIRED", "Window", "window_out", "acc_range",
           "round_shift"]

_DEFS = (Conv(), Dense(), Threshold(), MaxPool(), AvgPool(), Add(), Concat(), Flatten(),
         Relu(), Slice())

#: Op name -> its definition.
OPS: dict[str, OpDef] = {d.name: d for d in _DEFS}


def get(name: str) -> OpDef:
    """The definition of op ``name``; :class:`IRError` lists the known ops."""
    try:
        return OPS[name]
    except KeyError:
        raise IRError(f"unknown op {name!r} (the IR has {', '.join(sorted(OPS))})") from None
