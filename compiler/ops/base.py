"""The op definition every IR op implements, and the window geometry shared by the window ops.

An :class:`OpDef` is the compiler's one definition of an op: its attributes (with defaults and
checks), its parameters, its shape and range inference, its golden (bit-exact numpy)
execution and its counters (parameters, parameter bits, multiply-accumulates). The IR
(:mod:`lcp.ir`), the shape inference (:mod:`lcp.shapes`), the golden reference
(:mod:`lcp.golden`), the counters (:mod:`lcp.counters`) and the partitioners read ops only
through this interface: adding an op is adding one subclass to the table in :mod:`lcp.ops`.

Graph roles are class flags, so that passes never test op names:

``weighted``
    the op multiplies by a weight tensor (``weight`` parameter): MACs, parameter memory,
    folding.
``narrow_output``
    the output is an activation at its quantizer's width, not an accumulator: a pipeline may
    be cut after it and its output is what crosses a link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..tensor import IRError, TensorSpec, bits_for_range

if TYPE_CHECKING:   # the IR's Layer; ops read it duck-typed (name, op, attrs, params)
    from ..ir import Layer

__all__ = ["REQUIRED", "OpDef", "Window", "window_out", "exact_bits", "as_2d", "from_2d"]


class _Required:
    def __repr__(self):
        return "REQUIRED"


#: Marks an attribute without a default.
REQUIRED = _Required()


class OpDef:
    """Base class of the op table's entries (one instance per op)."""

    #: The IR op name (``Layer.op``).
    name: ClassVar[str] = ""
    #: Number of inputs (``None``: one or more).
    n_inputs: ClassVar[int | None] = 1
    #: Parameter arrays the op may carry, and those it must carry.
    params: ClassVar[tuple[str, ...]] = ()
    required_params: ClassVar[tuple[str, ...]] = ()
    #: Attribute name -> default (:data:`REQUIRED` if none).
    attrs: ClassVar[dict[str, object]] = {}
    weighted: ClassVar[bool] = False
    narrow_output: ClassVar[bool] = False

    # -- structure ------------------------------------------------------------------------
    def check(self, layer: "Layer") -> None:
        """Check inputs, parameters and attributes of ``layer``; fill attribute defaults.

        Raises :class:`IRError` naming the layer."""
        where = f"layer {layer.name!r} ({self.name})"
        if self.n_inputs is not None and len(layer.inputs) != self.n_inputs:
            raise IRError(f"{where} takes {self.n_inputs} input(s), not {len(layer.inputs)}")
        if self.n_inputs is None and not layer.inputs:
            raise IRError(f"{where} takes at least one input")
        for p in layer.params:
            if p not in self.params:
                raise IRError(f"{where}: unknown parameter {p!r}")
        for p in self.required_params:
            if p not in layer.params:
                raise IRError(f"{where}: missing parameter {p!r}")
        for a in layer.attrs:
            if a not in self.attrs:
                raise IRError(f"{where}: unknown attribute {a!r} "
                              f"(it takes {', '.join(self.attrs) or 'none'})")
        for a, default in self.attrs.items():
            if a not in layer.attrs:
                if default is REQUIRED:
                    raise IRError(f"{where}: missing attribute {a!r}")
                layer.attrs[a] = default
        try:
            self.check_attrs(layer)
        except (TypeError, ValueError) as e:
            if isinstance(e, IRError):
                raise IRError(f"{where}: {e}") from None
            raise IRError(f"{where}: bad attribute ({e})") from None

    def check_attrs(self, layer: "Layer") -> None:
        """Op-specific attribute checks (raise :class:`IRError` with the problem)."""

    # -- semantics ------------------------------------------------------------------------
    def infer(self, layer: "Layer", ins: list[TensorSpec]) -> TensorSpec:
        """Output spec for input specs ``ins``: exact shape, a range that holds every output."""
        raise NotImplementedError

    def run(self, layer: "Layer", xs: list[np.ndarray], specs: list[TensorSpec]) -> np.ndarray:
        """Golden execution on batch-first int64 arrays whose ranges are ``specs``."""
        raise NotImplementedError

    # -- counters -------------------------------------------------------------------------
    def macs(self, layer: "Layer", out: TensorSpec) -> int:
        """Multiply-accumulates per image."""
        return 0

    def param_count(self, layer: "Layer") -> int:
        """Model parameters (weights and biases, as a paper counts them; a requantization's
        thresholds are the hardware's business, not the model's)."""
        return 0

    def param_bits(self, layer: "Layer") -> int:
        """Bits to store the model parameters."""
        return 0


def exact_bits(a: np.ndarray) -> int:
    a = np.asarray(a)
    if not a.size:
        return 0
    return a.size * bits_for_range(int(a.min()), int(a.max()))[0]


def _ints(v, n: int | None, what: str) -> tuple[int, ...]:
    t = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in t):
        raise IRError(f"{what} must be integers, not {v!r}")
    if n is not None and len(t) != n:
        raise IRError(f"{what} must have {n} entries, not {len(t)}")
    return tuple(int(x) for x in t)


def window_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int) -> int:
    """Output length of a window op along one axis (floor mode)."""
    n = (size + pad_lo + pad_hi - kernel) // stride + 1
    if n <= 0:
        raise IRError(f"window {kernel} with stride {stride} does not fit input length {size}")
    return n


@dataclass(frozen=True)
class Window:
    """Geometry of a sliding window over ``rank`` spatial axes (1: ``(C, L)``, 2: ``(C, H, W)``).

    ``pads`` holds the begin pads of every axis, then the end pads (ONNX order: for 2-D
    top, left, bottom, right).
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[int, ...]

    @classmethod
    def of(cls, layer: "Layer") -> "Window":
        k = _ints(layer.attrs["kernel"], None, "kernel")
        if len(k) not in (1, 2):
            raise IRError(f"kernel {k} has {len(k)} axes; 1-D and 2-D windows are supported")
        s = _ints(layer.attrs["stride"], len(k), "stride")
        p = _ints(layer.attrs["pads"], 2 * len(k), "pads")
        if min(k) < 1 or min(s) < 1 or min(p) < 0:
            raise IRError(f"kernel {k}, stride {s} and pads {p} must be positive "
                          f"(pads non-negative)")
        return cls(k, s, p)

    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    def out_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        if len(spatial) != self.rank:
            raise IRError(f"a {self.rank}-D window expects {self.rank} spatial axes, the input "
                          f"has {len(spatial)}")
        r = self.rank
        return tuple(window_out(spatial[i], self.kernel[i], self.stride[i], self.pads[i],
                                self.pads[r + i]) for i in range(r))

    def as_2d(self) -> "Window":
        """The same window on ``(C, 1, L)`` when 1-D."""
        if self.rank == 2:
            return self
        return Window((1, self.kernel[0]), (1, self.stride[0]), (0, self.pads[0], 0, self.pads[1]))

    def pad(self, x: np.ndarray, value: int) -> np.ndarray:
        """Pad a batch-first ``(N, C, H, W)`` array (2-D window)."""
        pt, pl, pb, pr = self.pads
        if pt or pl or pb or pr:
            x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)
        return x


def as_2d(x: np.ndarray, rank: int) -> np.ndarray:
    """``(N, C, L)`` -> ``(N, C, 1, L)`` for a 1-D op; 2-D arrays unchanged."""
    return x[:, :, None, :] if rank == 1 else x


def from_2d(y: np.ndarray, rank: int) -> np.ndarray:
    return y[:, :, 0, :] if rank == 1 else y
