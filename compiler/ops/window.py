"""Window reductions over 1-D ``(C, L)`` or 2-D ``(C, H, W)`` inputs.

``maxpool``
    Window maximum per channel; padding never wins (ONNX ``-inf`` padding).
``avgpool``
    Brevitas' truncating average pool:
    ``y = clip(rnd(sum_window(x) / 2**shift), out_lo, out_hi)``, zero padding counted in the
    sum; ``shift`` may be negative (an exact product) and ``rounding`` is ``floor``,
    ``round`` (half to even) or ``ceil``.

Attributes ``kernel``, ``stride`` and ``pads`` (begin pads, then end pads) as for ``conv``.
"""

from __future__ import annotations

import numpy as np

from ..tensor import IRError, TensorSpec
from .base import REQUIRED, OpDef, Window, as_2d, from_2d

__all__ = ["MaxPool", "AvgPool", "round_shift"]

ROUNDINGS = ("floor", "round", "ceil")


def round_shift(s: np.ndarray, shift: int, rounding: str) -> np.ndarray:
    """Exact ``rnd(s / 2**shift)`` on int64 (``round`` is half to even); a negative ``shift``
    multiplies exactly."""
    if shift <= 0:
        return s << -shift
    q = s >> shift                                  # floor
    if rounding == "floor":
        return q
    r = s - (q << shift)
    if rounding == "ceil":
        return q + (r != 0)
    if rounding == "round":
        half = 1 << (shift - 1)
        return q + ((r > half) | ((r == half) & ((q & 1) == 1)))
    raise IRError(f"unknown avgpool rounding {rounding!r}")


def _reduce(x: np.ndarray, win: Window, pad_value: int, combine) -> np.ndarray:
    """Window reduction by ``combine`` (``np.maximum`` or ``np.add``) over the kernel offsets:
    one strided slice per offset, no window copy."""
    w2 = win.as_2d()
    x = w2.pad(as_2d(x, win.rank), pad_value)
    kh, kw = w2.kernel
    sh, sw = w2.stride
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    y = None
    for i in range(kh):
        for j in range(kw):
            v = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            y = v.copy() if y is None else combine(y, v, out=y)
    return from_2d(y, win.rank)


class _WindowOp(OpDef):
    narrow_output = True

    def check_attrs(self, layer) -> None:
        win = Window.of(layer)
        layer.attrs.update(kernel=win.kernel, stride=win.stride, pads=win.pads)

    def out_shape(self, layer, x: TensorSpec) -> tuple[int, ...]:
        win = Window.of(layer)
        if len(x.shape) != 1 + win.rank:
            raise IRError(f"a {win.rank}-D window expects a "
                          f"{'(C,L)' if win.rank == 1 else '(C,H,W)'} input, got {x.shape}")
        return (x.shape[0], *win.out_shape(x.shape[1:]))


class MaxPool(_WindowOp):
    name = "maxpool"
    attrs = {"kernel": REQUIRED, "stride": REQUIRED, "pads": REQUIRED}

    def infer(self, layer, ins):
        x = ins[0]
        return x.with_(shape=self.out_shape(layer, x))

    def run(self, layer, xs, specs):
        return _reduce(xs[0], Window.of(layer), specs[0].lo, np.maximum)


class AvgPool(_WindowOp):
    name = "avgpool"
    attrs = {"kernel": REQUIRED, "stride": REQUIRED, "pads": REQUIRED, "shift": REQUIRED,
             "rounding": REQUIRED, "out_lo": REQUIRED, "out_hi": REQUIRED}

    def check_attrs(self, layer) -> None:
        super().check_attrs(layer)
        if layer.attrs["rounding"] not in ROUNDINGS:
            raise IRError(f"rounding={layer.attrs['rounding']!r} is not one of "
                          f"{', '.join(ROUNDINGS)}")
        for a in ("shift", "out_lo", "out_hi"):
            if not isinstance(layer.attrs[a], (int, np.integer)):
                raise IRError(f"{a}={layer.attrs[a]!r} is not an integer")

    def infer(self, layer, ins):
        return TensorSpec(self.out_shape(layer, ins[0]), layer.attrs["out_lo"],
                          layer.attrs["out_hi"])

    def run(self, layer, xs, specs):
        s = _reduce(xs[0], Window.of(layer), 0, np.add)
        s = round_shift(s, layer.attrs["shift"], layer.attrs["rounding"])
        return np.clip(s, layer.attrs["out_lo"], layer.attrs["out_hi"])
