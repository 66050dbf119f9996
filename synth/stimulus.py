"""Input beats for the gate-level simulation of a ``BUILD/`` folder, and the outputs to expect.

The images are real where the data set is here: a model with MNIST's input shape ``(1, 28, 28)``
gets held-out MNIST test images (:func:`lcp.datasets.load_mnist`, one per class in turn), one
with the sklearn digits' ``(1, 8, 8)`` held-out digits. Other image shapes with 1 or 3 channels
(CIFAR or ImageNet sized models, whose data sets are not here) get natural photographs: crops of
the two photographs scikit-learn ships (``load_sample_images``: a temple and a flower, 427 x 640
RGB), each a seeded square crop about a third of the photograph wide, box-averaged down to the
input size (as CIFAR-10's 32 x 32 images are downsampled photographs), grey for 1 channel. Any
other input (no image layout, other channel counts, larger than the photographs) gets uniformly
random integers over the quantized input range, which switch far more than natural images do:
its power is pessimistic.

Frames are packed exactly as the hardware expects (:func:`lcp.hw.plumbing.pack_frames`) and the
expected output words come from the golden reference, so the gate-level simulation is also a
bit-exactness check of the synthesized netlist.
"""

from __future__ import annotations

import numpy as np

from sklearn.datasets import load_sample_images

from lcp.datasets import load_digits, load_mnist
from lcp.golden import Golden
from lcp.hw.build import lower
from lcp.hw.folding import Folding
from lcp.hw.plumbing import pack_frames
from lcp.ir import load

from .design import Design
from .gatesim import Stimulus
from .tools import SynthError

__all__ = ["build_stimulus", "images_for", "natural_images"]


def images_for(model, n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` integer input images for ``model`` and a description of where they come from."""
    spec = model.input
    shape = tuple(spec.shape)
    if shape in ((1, 28, 28), (1, 8, 8)):
        ds = load_mnist() if shape == (1, 28, 28) else load_digits()
        idx = [int(np.flatnonzero(ds.y_test == k % ds.num_classes)[k // ds.num_classes])
               for k in range(n)]
        x = ds.x_test[idx]
        return spec.quantize(x), (f"held-out {ds.name} test images {list(map(int, idx))} "
                                  f"(labels {list(map(int, ds.y_test[idx]))})")
    photos = natural_images(shape, n, seed)
    if photos is not None:
        return spec.quantize(photos), (
            f"natural photographs: {n} crop(s) of scikit-learn's sample images (china.jpg, "
            f"flower.jpg) box-averaged to {shape[1]} x {shape[2]} (seed {seed}; no data set for "
            f"input shape {shape} here)")
    rng = np.random.default_rng(seed)
    xq = rng.integers(spec.lo, spec.hi + 1, size=(n, *shape))
    return xq, (f"uniform random integers in [{spec.lo}, {spec.hi}] (seed {seed}; no data set "
                f"for input shape {shape} here: pessimistic activity)")


def natural_images(shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray | None:
    """``n`` images of ``shape`` ``(C, H, W)``, ``C`` 1 or 3, cut from scikit-learn's two sample
    photographs, as floats ``k / 255`` (``k`` an 8-bit pixel value); ``None`` for any other
    shape or one larger than the photographs."""
    if len(shape) != 3 or shape[0] not in (1, 3):
        return None
    c, h, w = shape
    photos = load_sample_images().images                      # two 427 x 640 x 3 uint8
    ph, pw = photos[0].shape[:2]
    if h > ph or w > pw:
        return None
    f = max(1, min(ph // h, pw // w) // 3)                    # crop ~ a third of the photograph
    rng = np.random.default_rng(seed)
    out = np.empty((n, c, h, w))
    for k in range(n):
        img = photos[k % len(photos)].astype(np.float64)
        y0 = int(rng.integers(0, ph - h * f + 1))
        x0 = int(rng.integers(0, pw - w * f + 1))
        crop = img[y0:y0 + h * f, x0:x0 + w * f].reshape(h, f, w, f, 3).mean(axis=(1, 3))
        if c == 1:
            crop = crop @ np.array([0.299, 0.587, 0.114])[:, None]
        out[k] = np.clip(np.round(crop), 0, 255).transpose(2, 0, 1) / 255.0
    return out


def build_stimulus(design: Design, images: int = 2, seed: int = 0) -> Stimulus:
    """Beats of ``images`` inputs for the design of a ``BUILD/`` folder, with expected outputs.

    Raises
    ------
    SynthError
        The design is not a ``lcp compile`` build (no ``model.json``/``folding.json``).
    """
    d = design.build_dir
    if d is None or not (d / "model.json").is_file() or not (d / "folding.json").is_file():
        raise SynthError(f"{design.name}: not a `lcp compile` build folder (needs model.json and "
                         f"folding.json to make the input frames)")

    model = load(d / "model")
    rep = design.hw_report or {}
    scope, index = rep.get("scope", "core"), int(rep.get("branch", 0))
    g = lower(model, Folding.load(d / "folding.json"), scope, index)
    xq, source = images_for(model, images, seed)
    gold = Golden(model).run_int(xq) if scope == "core" else Golden(model).run_branch(index, xq)
    beats, lasts = _words(pack_frames(xq, g.in_fmt, g.in_width), g.in_width)
    out_words, _ = _words(pack_frames(gold, g.out_fmt, g.out_width), g.out_width)
    return Stimulus(beats=beats, lasts=lasts, images=images, out_beats=None, source=source,
                    expected=out_words)


def _words(frames: list[bytes], width: int) -> tuple[list[int], list[bool]]:
    nb = width // 8
    words, lasts = [], []
    for fr in frames:
        n = len(fr) // nb
        for k in range(n):
            words.append(int.from_bytes(fr[k * nb:(k + 1) * nb], "little"))
            lasts.append(k == n - 1)
    return words, lasts
