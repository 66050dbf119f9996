"""Random integer IR models for the hardware tests (no Brevitas: weights, thresholds and ranges
drawn directly, shapes and ranges from :mod:`lcp.shapes`)."""

from __future__ import annotations

import numpy as np

from lcp.ir import Branch, Dequant, InputSpec, Layer, Model, TensorSpec, int_range
from lcp.shapes import infer_layer

__all__ = ["Builder", "random_thresholds"]


def random_thresholds(rng, spec: TensorSpec, channels: int, bits: int, shared: bool = False):
    """Sorted thresholds spread over the input range (some repeated, some outside)."""
    steps = (1 << bits) - 1
    rows = 1 if shared else channels
    lo, hi = spec.lo, spec.hi
    t = rng.integers(lo - 2, hi + 3, size=(rows, steps))
    return np.sort(t, axis=1)


class Builder:
    """Build a one-branch (or multi-branch) model layer by layer.

    ``b = Builder((C, H, W), in_bits=8, seed=0)``; ``x = b.conv(x, 4, 3, pad=1)``; ...;
    ``b.model()``.
    """

    def __init__(self, in_shape, in_bits=8, signed=False, seed=0, name="t"):
        """``in_bits="bipolar"``: a -1/+1 input."""
        self.rng = np.random.default_rng(seed)
        if in_bits == "bipolar":
            self.input = InputSpec("input", tuple(in_shape), 1.0, -1, 1, format="bipolar")
            self.tensors = {"input": TensorSpec(tuple(in_shape), -1, 1, bipolar=True)}
        else:
            lo, hi = int_range(in_bits, signed)
            self.input = InputSpec("input", tuple(in_shape), 1.0 / 255, lo, hi)
            self.tensors = {"input": TensorSpec(tuple(in_shape), lo, hi)}
        self.layers: dict[str, list[Layer]] = {}
        self.n = 0
        self.name = name

    def _add(self, br, op, inputs, attrs=None, params=None):
        self.n += 1
        name = f"{br}_{op}{self.n}"
        l = Layer(name, op, list(inputs), name, dict(attrs or {}), dict(params or {}))
        spec = infer_layer(l, [self.tensors[t] for t in inputs])
        self.tensors[name] = spec
        self.layers.setdefault(br, []).append(l)
        return name

    def _weights(self, shape, wbits):
        """Random weights: ``wbits``-bit integers, or -1/+1 for ``wbits="bipolar"``."""
        if wbits == "bipolar":
            return 2 * self.rng.integers(0, 2, size=shape) - 1, {"weight_bits": 2,
                                                                 "weight_format": "bipolar"}
        lo, hi = int_range(wbits, True, narrow=True)
        return self.rng.integers(lo, hi + 1, size=shape), {"weight_bits": wbits}

    def conv(self, x, out, k, stride=1, pad=0, wbits=4, br="b0", bias=True, pads=None,
             groups=1):
        """2-D convolution (``k`` an int) or, on a ``(C, L)`` input, 1-D."""
        spec = self.tensors[x]
        c = spec.shape[0]
        rank = len(spec.shape) - 1
        w, wa = self._weights((out, c // groups, *(k,) * rank), wbits)
        p = {"weight": w}
        if bias:
            p["bias"] = self.rng.integers(-50, 50, size=out)
        return self._add(br, "conv", [x], {"kernel": (k,) * rank, "stride": (stride,) * rank,
                                           "pads": tuple(pads) if pads else (pad,) * (2 * rank),
                                           "groups": groups, **wa}, p)

    def dense(self, x, out, wbits=4, br="b0", bias=True):
        f = self.tensors[x].shape[0]
        w, wa = self._weights((out, f), wbits)
        p = {"weight": w}
        if bias:
            p["bias"] = self.rng.integers(-50, 50, size=out)
        return self._add(br, "dense", [x], wa, p)

    def sign(self, x, br="b0"):
        """Bipolar activation: -1 below a per-channel threshold, +1 from it on."""
        spec = self.tensors[x]
        t = self.rng.integers(spec.lo, spec.hi + 1, size=(spec.shape[0], 1))
        return self._add(br, "threshold", [x], {"out_lo": -1, "out_hi": 1},
                         {"thresholds": np.repeat(t, 2, axis=1)})

    def threshold(self, x, bits=4, shared=False, br="b0", out_lo=0):
        spec = self.tensors[x]
        t = random_thresholds(self.rng, spec, spec.shape[0], bits, shared)
        return self._add(br, "threshold", [x], {"out_lo": out_lo,
                                                "out_hi": out_lo + (1 << bits) - 1},
                         {"thresholds": t})

    def maxpool(self, x, k=2, stride=None, pad=0, br="b0"):
        """2-D, or 1-D on a ``(C, L)`` input."""
        s = stride or k
        r = len(self.tensors[x].shape) - 1
        return self._add(br, "maxpool", [x], {"kernel": (k,) * r, "stride": (s,) * r,
                                              "pads": (pad,) * (2 * r)})

    def avgpool(self, x, k=2, stride=None, pad=0, shift=2, rounding="round", out_bits=4,
                br="b0"):
        s = stride or k
        return self._add(br, "avgpool", [x], {"kernel": (k, k), "stride": (s, s),
                                              "pads": (pad,) * 4, "shift": shift,
                                              "rounding": rounding, "out_lo": 0,
                                              "out_hi": (1 << out_bits) - 1})

    def relu(self, x, br="b0"):
        return self._add(br, "relu", [x])

    def add(self, a, b, br="b0", mul=(1, 1)):
        return self._add(br, "add", [a, b], {"mul": tuple(mul)})

    def flatten(self, x, br="b0"):
        return self._add(br, "flatten", [x])

    def concat(self, xs, br="merge"):
        return self._add(br, "concat", list(xs))

    def model(self, outputs: dict[str, str] | None = None, merge_out: str | None = None) -> Model:
        """Branches ``b0``, ``b1``, ... (outputs: last layer of each unless given) and the merge
        (``merge`` layers; without any, an identity-free merge is not possible, so a one-branch
        model gets ``merge`` = the branch's last layer moved there is NOT done: pass merge
        layers explicitly)."""
        names = sorted(k for k in self.layers if k != "merge")
        branches = []
        for k in names:
            ls = self.layers[k]
            out = (outputs or {}).get(k, ls[-1].output)
            branches.append(Branch(k, ["input"], ls, out))
        mls = self.layers.get("merge", [])
        merge = Branch("merge", [b.output for b in branches], mls,
                       merge_out or (mls[-1].output if mls else branches[0].output))
        n_out = self.tensors[merge.output].shape[0]
        m = Model(self.name, self.input, dict(self.tensors), branches, merge,
                  Dequant(np.ones(n_out), np.zeros(n_out)))
        return m.validate()
