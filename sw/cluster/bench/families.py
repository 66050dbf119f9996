"""The cluster benchmark's models: each family's original network and its LCP split4 / split8
(and exchange) versions, built or trained, compiled to the IR and cached
(:func:`lcp.cache.build_once` under the benchmark's cache folder, keyed by the model and the
compiler's and zoo's sources); the accuracy of a split model with branches missing."""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import lcp
from lcp import load, save
from lcp.cache import build_once, source_digest
from lcp.golden import Golden
from lcp.ir import IRError, Model

__all__ = ["FAMILIES", "EXCHANGE", "Family", "compile_cached", "prepare_family",
           "degraded_accuracy"]

#: Model families the benchmark knows.
FAMILIES = ("cifarnet", "lenet5")
#: Exchange points of each family's ``split4-x`` variant (:mod:`lcp.models.exchange`): one
#: point after the second pool, each branch sending 1 channel at 2 bits (the cheap end of the
#: family; ``lcp search`` finds the trade-off, results/search/lenet5-split4).
EXCHANGE = {"lenet5": "3:k1:b2", "cifarnet": "3:k1:b2"}


@dataclass
class Family:
    """Compiled models of one family and the inputs to run them on.

    Members
    -------
    name : str
    models : dict
        ``"original" | "split4" | "split8" -> Model``.
    x : ndarray
        Float inputs ``(N, C, H, W)``.
    labels : ndarray or None
        Class labels of ``x`` (only for real data).
    notes : list of str
        Conditions to print with the figures (random weights, data set, accuracy).
    extra : dict
        More models by name (e.g. ``"split4-dropout"``).
    """

    name: str
    models: dict
    x: np.ndarray
    labels: np.ndarray | None = None
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


_VARIANTS = {"original": 1, "split4": 4, "split8": 8}


def _code_digest() -> str:
    """Digest of the compiler's (every module, its op table included) and the model zoo's
    sources: part of every cache key, so that a change to either recompiles."""
    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    import lcp.models
    files = sorted(Path(lcp.__file__).parent.rglob("*.py"))
    files += [Path(lcp.models.__file__).parent / f
              for f in ("common.py", "net.py", "zoo.py", "export.py")]
    return source_digest(*[f for f in files if f.is_file()])[:12]


def _save(model: Model, folder: Path) -> Model:
    save(model, folder / "model")
    return model


def compile_cached(cache: Path, key: str, make: Callable[[], Model]) -> Model:
    """The model ``make()`` compiles, built once per ``key`` and code version: the entry
    ``key-<code digest>`` of :func:`lcp.cache.build_once` under ``cache`` (concurrent
    benchmarks wait for one compile)."""
    return build_once(Path(cache), f"{key}-{_code_digest()}",
                      lambda folder: _save(make(), folder), lambda folder: load(folder / "model"))


def prepare_family(name: str, cache: Path, *, train: bool = True, epochs: int = 30,
                   seed: int = 0, log=print) -> Family:
    """Build, (train,) compile and cache the models of family ``name``.

    ``cifarnet``: :func:`lcp.models.build` with random weights (seeded), activation scales
    calibrated on random images; inputs are random images (there is no CIFAR data here).
    Both families also get ``split4-x``, split4 with the exchange points of :data:`EXCHANGE`.
    ``lenet5``: trained with :func:`lcp.models.train.train` on the MNIST subset (cached run
    folders), plus split4 trained with branch dropout 0.25 (``extra["split4-dropout"]``); inputs
    are the 1,000 held-out MNIST images. With ``train=False`` LeNet-5 gets random weights too.
    """
    import torch

    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    import lcp.models as M
    from lcp.models.exchange import build_exchange  # late: torch and Brevitas, as above
    from lcp.models.export import calibrate, example_input, export_qonnx  # late: as above

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    if name not in FAMILIES:
        raise IRError(f"unknown benchmark family {name!r} (known: {', '.join(FAMILIES)})")
    arch = name
    if name == "lenet5" and train:
        # late: lcp.models pulls in torch and Brevitas, which only this path needs
        from lcp.models.train import train as train_fn
        data = M.load_dataset("mnist")
        models, notes, extra = {}, [], {}
        jobs = [(v, s, 0.0, None) for v, s in _VARIANTS.items()] + \
            [("split4-dropout", 4, 0.25, None), ("split4-x", 4, 0.0, EXCHANGE[name])]
        for variant, split, drop, exchange in jobs:
            log(f"[{name}] training/loading {variant} (split {split}, branch dropout {drop}"
                f"{', exchange ' + exchange if exchange else ''})")
            res = train_fn(arch, "mnist", split=split, epochs=epochs, seed=seed,
                           branch_dropout=drop, exchange=exchange, progress=False)
            key = f"{res.out_dir.name}"
            model = compile_cached(cache, key, lambda: lcp.compile_onnx(
                res.out_dir / "model.onnx", name=f"{arch}_{variant}"))
            (models if variant in _VARIANTS or exchange else extra)[variant] = model
            notes.append(f"{arch} {variant}: MNIST held-out accuracy {res.accuracy:.4f} "
                         f"(torch, {epochs} epochs)")
        return Family(name, models, data.x_test, data.y_test, notes, extra)

    models = {}
    for variant, split in [*_VARIANTS.items(), ("split4-x", 4)]:
        exchange = EXCHANGE[name] if variant == "split4-x" else ""
        key = f"{arch}_split{split}{'_x' + exchange.replace(':', '') if exchange else ''}" \
              f"_random_seed{seed}"

        def make(split=split, variant=variant, exchange=exchange):
            log(f"[{name}] building {variant} (random weights, seed {seed}) and compiling")
            torch.manual_seed(seed)
            net = build_exchange(arch, exchange, split=split) if exchange else \
                M.build(arch, split=split)
            calibrate(net, [example_input(net.in_shape, batch=16, seed=seed + k)
                            for k in range(4)])
            if not exchange:
                return lcp.compile_torch(net, example_input(net.in_shape, batch=2, seed=seed),
                                         name=f"{arch}_{variant}")
            with tempfile.TemporaryDirectory() as d:     # the partition rides in the QONNX
                path = export_qonnx(net, Path(d) / "m.onnx",
                                    example=example_input(net.in_shape, batch=1, seed=seed))
                return lcp.compile_onnx(path, name=f"{arch}_{variant}")

        models[variant] = compile_cached(cache, key, make)
    shape = models["original"].input.shape
    x = np.random.default_rng(seed).integers(0, 256, (256, *shape)).astype(np.float32) / 255
    note = (f"{arch}: random weights (seed {seed}) and random images: no accuracy is reported"
            if name == "cifarnet" else f"{arch}: random weights (training off)")
    return Family(name, models, x, None, [note])


def degraded_accuracy(model: Model, x: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Accuracy with ``k`` branches missing (their outputs zeroed, as the dispatcher's degraded
    mode does), averaged over every subset of ``k`` branches, for ``k = 0 .. B-1``."""
    g = Golden(model)
    xq = model.input.quantize(x)
    outs = [g.run_branch(i, xq) for i in range(len(model.branches))]
    acc = {}
    b = len(outs)
    for k in range(b):
        vals = []
        for missing in itertools.combinations(range(b), k):
            cur = [np.zeros_like(o) if i in missing else o for i, o in enumerate(outs)]
            pred = model.dequant(g.run_merge(cur)).argmax(axis=1)
            vals.append(float((pred == labels).mean()))
        acc[k] = float(np.mean(vals))
    return acc
