"""A tiny two-branch integer IR model on the sklearn digits' 8x8 input, for the synthesis tests
that go through the real hardware generator (lcp.hw) and ``lcp synth``."""

import numpy as np

from lcp.ir import Branch, Dequant, InputSpec, Layer, Model, TensorSpec
from lcp.shapes import infer_layer

__all__ = ["tiny_model", "make_build"]


def tiny_model(seed: int = 0, channels: int = 2) -> Model:
    rng = np.random.default_rng(seed)
    tensors = {"input": TensorSpec((1, 8, 8), 0, 255)}
    layers: dict[str, list[Layer]] = {}

    def add(br, name, op, inputs, attrs=None, params=None):
        lay = Layer(name, op, list(inputs), name, dict(attrs or {}), dict(params or {}))
        tensors[name] = infer_layer(lay, [tensors[t] for t in inputs])
        layers.setdefault(br, []).append(lay)
        return name

    def thr(br, name, x):
        s = tensors[x]
        t = np.sort(rng.integers(s.lo // 4, s.hi // 4 + 1, size=(s.shape[0], 15)), axis=1)
        return add(br, name, "threshold", [x], {"out_lo": 0, "out_hi": 15}, {"thresholds": t})

    outs = []
    for b in range(2):
        p = f"b{b}_"
        x = add(f"b{b}", p + "conv0", "conv", ["input"],
                {"kernel": (3, 3), "stride": (1, 1), "pads": (1, 1, 1, 1), "weight_bits": 4},
                {"weight": rng.integers(-7, 8, size=(channels, 1, 3, 3)),
                 "bias": rng.integers(-20, 20, size=channels)})
        x = thr(f"b{b}", p + "threshold0", x)
        x = add(f"b{b}", p + "maxpool0", "maxpool", [x],
                {"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 0, 0)})
        x = add(f"b{b}", p + "flatten0", "flatten", [x])
        x = add(f"b{b}", p + "dense0", "dense", [x], {"weight_bits": 4},
                {"weight": rng.integers(-7, 8, size=(4, channels * 16)),
                 "bias": rng.integers(-20, 20, size=4)})
        x = thr(f"b{b}", p + "threshold1", x)
        outs.append(x)
    c = add("merge", "concat", "concat", outs)
    y = add("merge", "dense_out", "dense", [c], {"weight_bits": 4},
            {"weight": rng.integers(-7, 8, size=(10, 8))})
    branches = [Branch(f"b{b}", ["input"], layers[f"b{b}"], outs[b]) for b in range(2)]
    merge = Branch("merge", outs, layers["merge"], y)
    m = Model("tiny", InputSpec("input", (1, 8, 8), 1.0 / 255, 0, 255), tensors, branches, merge,
              Dequant(np.ones(10), np.zeros(10)))
    return m.validate()


def make_build(out, scope: str = "core", target: int | None = None, seed: int = 0, **kw):
    """``lcp compile``'s build folder for :func:`tiny_model` (folding for ``target`` cycles,
    else the smallest folding)."""
    from lcp.hw.build import generate
    from lcp.hw.folding import Folding

    m = tiny_model(seed, **kw)
    if target is None:
        return generate(m, out, folding=Folding({}), scope=scope)
    return generate(m, out, target=target, scope=scope)
