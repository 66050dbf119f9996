"""The golden reference: bit-exact, vectorized integer execution of the IR in numpy.

Every layer computes on integer tensors (batch first, channels first). Convolution and fully
connected layers use BLAS on integer-valued float arrays only when that is provably exact: the
largest possible partial sum of a dot product (``sum |w| * max |x|``, from the IR's ranges) is
below 2**24 for float32 or 2**53 for float64, so every intermediate sum is an exactly
representable integer whatever the summation order. Beyond 2**53 the dot products run in int64.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .executor import Executor
from .ir import IRError, Layer, Model, TensorSpec

__all__ = ["run_layer", "run_graph", "Golden", "GoldenExecutor"]


def _exact_dtype(weight: np.ndarray, x: TensorSpec):
    """Narrowest float dtype in which every partial dot-product sum is exact, else int64."""
    w = np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1).max(initial=0)
    bound = int(w) * max(abs(x.lo), abs(x.hi), 1)
    if bound < 2**24:
        return np.float32
    if bound < 2**53:
        return np.float64
    return np.int64


def _windows(x: np.ndarray, layer: Layer, pad_value: int) -> np.ndarray:
    """(N, C, OH, OW, KH, KW) view of the padded input's windows."""
    kh, kw = layer.attrs["kernel"]
    sh, sw = layer.attrs["stride"]
    pt, pl, pb, pr = layer.attrs["pads"]
    if any((pt, pl, pb, pr)):
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    v = sliding_window_view(x, (kh, kw), axis=(2, 3))
    return v[:, :, ::sh, ::sw]


def _round_shift(s: np.ndarray, shift: int, rounding: str) -> np.ndarray:
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


def _pool(x: np.ndarray, layer: Layer, pad_value: int, combine) -> np.ndarray:
    """Window reduction by ``combine`` (``np.maximum`` or ``np.add``) over the kernel offsets:
    one strided slice per offset, no window copy."""
    kh, kw = layer.attrs["kernel"]
    sh, sw = layer.attrs["stride"]
    pt, pl, pb, pr = layer.attrs["pads"]
    if any((pt, pl, pb, pr)):
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    y = None
    for i in range(kh):
        for j in range(kw):
            v = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            y = v.copy() if y is None else combine(y, v, out=y)
    return y


def run_layer(layer: Layer, xs: list[np.ndarray], specs: list[TensorSpec]) -> np.ndarray:
    """Run one layer on batch-first int64 arrays ``xs`` whose ranges are ``specs``."""
    op, x = layer.op, xs[0]
    if op == "conv":
        w = layer.weight
        dt = _exact_dtype(w, specs[0])
        win = _windows(x.astype(dt, copy=False), layer, 0)          # N C OH OW KH KW
        y = np.tensordot(win, w.astype(dt), axes=([1, 4, 5], [1, 2, 3]))  # N OH OW O
        y = np.ascontiguousarray(y.transpose(0, 3, 1, 2)).astype(np.int64)
        if layer.bias is not None:
            y += layer.bias.reshape(1, -1, 1, 1)
        return y
    if op == "dense":
        w = layer.weight
        dt = _exact_dtype(w, specs[0])
        y = (x.astype(dt, copy=False) @ w.T.astype(dt)).astype(np.int64)
        if layer.bias is not None:
            y += layer.bias
        return y
    if op == "threshold":
        t = layer.params["thresholds"]
        lo = layer.attrs["out_lo"]
        if t.shape[0] == 1:
            return lo + np.searchsorted(t[0], x, side="right")
        y = np.empty_like(x)
        for c in range(x.shape[1]):
            y[:, c] = np.searchsorted(t[c], x[:, c], side="right")
        return y + lo
    if op == "maxpool":
        return _pool(x, layer, specs[0].lo, np.maximum)
    if op == "avgpool":
        s = _pool(x, layer, 0, np.add)
        s = _round_shift(s, layer.attrs["shift"], layer.attrs["rounding"])
        return np.clip(s, layer.attrs["out_lo"], layer.attrs["out_hi"])
    if op == "add":
        return xs[0] + xs[1]
    if op == "concat":
        return np.concatenate(xs, axis=1)
    if op == "flatten":
        return x.reshape(x.shape[0], -1)
    if op == "relu":
        return np.maximum(x, 0)
    raise IRError(f"layer {layer.name!r}: the golden reference has no op {op!r}")


def run_graph(model: Model, graph, inputs: list[np.ndarray],
              trace: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Run one branch (or the merge) of ``model``; record every tensor in ``trace`` if given."""
    env = dict(zip(graph.inputs, inputs))
    for layer in graph.layers:
        ins = [env[t] for t in layer.inputs]
        env[layer.output] = run_layer(layer, ins, [model.tensors[t] for t in layer.inputs])
        if trace is not None:
            trace[layer.output] = env[layer.output]
    return env[graph.output]


class Golden:
    """Bit-exact integer execution of an IR :class:`~lcp.ir.Model`.

    ``run_int`` maps integer inputs ``(N, *model.input.shape)`` to the integer output;
    ``run`` quantizes float inputs with the model's input quantizer and dequantizes the output.
    """

    def __init__(self, model: Model):
        self.model = model

    def check_int_input(self, xq: np.ndarray) -> np.ndarray:
        spec = self.model.input
        xq = np.asarray(xq)
        if xq.dtype.kind not in "iu":
            raise IRError(f"integer input expected, got dtype {xq.dtype}")
        if tuple(xq.shape[1:]) != tuple(spec.shape):
            raise IRError(f"input shape {tuple(xq.shape)} does not match the model's "
                          f"(N, {', '.join(map(str, spec.shape))})")
        if xq.size and (xq.min() < spec.lo or xq.max() > spec.hi):
            raise IRError(f"input values outside the input range [{spec.lo}, {spec.hi}]")
        return xq.astype(np.int64, copy=False)

    def run_branch(self, index: int, xq: np.ndarray, trace=None) -> np.ndarray:
        return run_graph(self.model, self.model.branches[index], [xq], trace)

    def run_merge(self, branch_outputs: list[np.ndarray], trace=None) -> np.ndarray:
        return run_graph(self.model, self.model.merge, list(branch_outputs), trace)

    def run_int(self, xq: np.ndarray, trace: dict | None = None) -> np.ndarray:
        xq = self.check_int_input(xq)
        outs = [self.run_branch(i, xq, trace) for i in range(len(self.model.branches))]
        return self.run_merge(outs, trace)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.model.dequant(self.run_int(self.model.input.quantize(x)))


class GoldenExecutor(Executor):
    """``--backend golden``: the bit-exact numpy reference."""

    name = "golden"

    def __init__(self, model: Model, **kwargs):
        super().__init__(model, **kwargs)
        self.golden = Golden(model)

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        return self.golden.run_int(xq)
