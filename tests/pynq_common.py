"""Small models and cached PYNQ builds shared by the PYNQ tests (hw, sw, synth)."""

from __future__ import annotations

from lcp.hw.folding import Folding
from lcp.hw.pynq_top import cached_pynq_build

from tests.hw.irgen import Builder

__all__ = ["tiny_model", "tiny_folding", "tiny_build", "other_model"]


def tiny_model(seed: int = 0, name: str = "tiny2", in_shape=(1, 6, 6)):
    """Two branches (conv, threshold, flatten, dense, threshold) and a dense merge."""
    b = Builder(in_shape, in_bits=8, seed=seed, name=name)
    outs = []
    for br in ("b0", "b1"):
        x = b.conv("input", 2, 3, br=br)
        x = b.threshold(x, bits=4, br=br)
        x = b.flatten(x, br=br)
        x = b.dense(x, 4, br=br)
        x = b.threshold(x, bits=4, br=br)
        outs.append(x)
    c = b.concat(outs)
    b.dense(c, 3, br="merge")
    return b.model()


def other_model():
    """Same shapes as :func:`tiny_model`, other weights (another hash)."""
    return tiny_model(seed=1)


def tiny_folding(width: int = 32) -> Folding:
    return Folding({}, width, width)


def tiny_build(width: int = 32, scope: str = "core", index: int = 0):
    """The cached PYNQ build of :func:`tiny_model` (default cache)."""
    return cached_pynq_build(tiny_model(), tiny_folding(width), scope=scope, index=index)
