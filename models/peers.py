"""Peer zoos as builders: the quantized networks of Brevitas' own example zoos.

These are the models FPGA users start from (FINN builds the ``bnn_pynq`` ones), built from the
installed ``brevitas_examples`` package with random weights (their pretrained weights download
from the internet), calibrated, and exported to QONNX, so that the compiler can be tried on
models it was not written for.

Networks (:data:`PEERS`)
------------------------
``tfc_*``, ``sfc_*``, ``lfc_*``
    ``brevitas_examples.bnn_pynq`` MNIST MLPs (``FC``: 784 -> 64/256/1024 x 3 -> 10, BatchNorm1d,
    sign or 2-bit activations, ``TensorNorm`` after the last layer; the input goes through
    ``2*x - 1`` before its first quantizer). ``tfc``/``sfc`` at 1w1a, 1w2a, 2w2a; ``lfc`` at
    1w1a and 1w2a as shipped, and ``lfc_2w2a``, which bnn_pynq does not ship a config for: built by
    the same ``FC`` constructor from ``lfc_1w2a.ini`` with 2-bit weights (:attr:`PeerSpec.shipped`
    is False).
``cnv_1w1a``, ``cnv_1w2a``, ``cnv_2w2a``
    ``bnn_pynq`` CIFAR-10 CNN (``CNV``: six 3x3 convs 64-64-128-128-256-256 with two max pools,
    FCs 512-512-10, TensorNorm; 8-bit input quantizer after ``2*x - 1``).
``resnet18_4w4a``
    ``bnn_pynq.models.resnet18_4w4a``: CIFAR ResNet-18 with 4-bit weights and activations; its
    first conv reads the float image (no input quantizer).
``quant_mobilenet_v1_4b``
    ``brevitas_examples.imagenet_classification.models.quant_mobilenet_v1_4b``: MobileNet-v1 on
    224x224 ImageNet images, 4 bits (first and last layer 8-bit weights), depthwise convolutions;
    its first conv reads the float image.

Inputs (:func:`peer_input`) are float images ``k/255`` of the network's input shape: real MNIST
images (:mod:`lcp.datasets`) for the MNIST peers, uniform random ones for the others.

Random weights (:func:`build_peer`): the constructors' own initialization, seeded, and random
normalization parameters (BatchNorm/TensorNorm scale ~ U(0.5, 1.5), shift ~ U(-0.5, 0.5)): the
constructors set 1 and 0, and with integer pre-activations (binary layers) and a calibrated mean
that is itself an average of integers, a shift of 0 puts sign thresholds exactly on values the
layer produces, where float32 rounding decides the sign; a trained network's are generic.

Calibration (:func:`calibrate_peer`), so that no quantizer or normalization keeps its
constructor default: (1) activation scales: training-mode forward passes with quantization on
over :data:`CALIBRATION_BATCHES` batches (dropout off), with Brevitas' calibration helpers
(``extend_collect_stats_steps``, ``set_collect_stats_to_average``, ``finalize_collect_stats``)
so that every statistics-based scale is the true average of its statistic over the batches;
(2) the normalization statistics are re-estimated over the same batches with those scales fixed,
as a cumulative average, so that they describe the quantized network that is exported.
Brevitas' ``calibration_mode`` context is not used: it turns activation quantization off and
``QuantTensor`` outputs into plain tensors, which ``bnn_pynq``'s ResNet rejects (its residual
add asserts ``QuantTensor`` operands); with quantization on, each quantizer also sees the
activations it will see in the exported network. The ``bnn_pynq`` activation quantizers have
constant scales by design (range [-1, 1]): for them only step (2) changes anything. Returns the
model in eval mode.

Export (:func:`export_peer`) goes through ``brevitas.export.export_qonnx`` (TorchScript,
``dynamo=False``, batch 1) into a cache folder, one file per (name, seed, Brevitas version).

Command::

    python -m lcp.models.peers NAME -o FILE [--seed S]
    python -m lcp.models.peers --list
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import brevitas
import numpy as np
import torch
import torch.nn as nn
from brevitas.export import export_qonnx as _brevitas_export_qonnx
from brevitas.graph.calibrate import (extend_collect_stats_steps, finalize_collect_stats,
                                      set_collect_stats_to_average)

from lcp.datasets import load_mnist

from .export import without_graph_lint

__all__ = ["PeerSpec", "PEER_SPECS", "PEERS", "CALIBRATION_BATCHES", "CALIBRATION_BATCH_SIZE",
           "peer_spec", "peer_input", "build_peer", "calibrate_peer", "export_peer",
           "cache_name", "main"]

#: Calibration: number of batches and images per batch.
CALIBRATION_BATCHES = 4
CALIBRATION_BATCH_SIZE = 16


@dataclass(frozen=True)
class PeerSpec:
    """One peer network.

    Members
    -------
    name : str
        Key in :data:`PEER_SPECS`.
    source : str
        Where it comes from: the ``brevitas_examples`` constructor (and config).
    in_shape : tuple of int
        ``(C, H, W)`` of one input image.
    dataset : str
        "mnist", "cifar10" or "imagenet": what it is sized for (the inputs here are MNIST images
        for "mnist", random images otherwise; never an accuracy: random weights).
    float_input : bool
        True when the first layer reads the float image (no quantizer on the model input): the
        compiler needs the input's integer domain declared (images ``k/255``: ``uint8``).
    shipped : bool
        False for a configuration ``brevitas_examples`` does not ship (built here from its
        constructor with another bit width).
    """
    name: str
    source: str
    in_shape: tuple[int, int, int]
    dataset: str
    float_input: bool = False
    shipped: bool = True


def _bnn_pynq_specs():
    specs = []
    for arch, widths in (("tfc", "64 x 3"), ("sfc", "256 x 3"), ("lfc", "1024 x 3")):
        for bits in ("1w1a", "1w2a", "2w2a"):
            shipped = not (arch == "lfc" and bits == "2w2a")
            src = (f"brevitas_examples.bnn_pynq.models.{arch}_{bits}" if shipped else
                   "brevitas_examples.bnn_pynq FC from lfc_1w2a.ini with WEIGHT_BIT_WIDTH 2")
            specs.append(PeerSpec(f"{arch}_{bits}", src, (1, 28, 28), "mnist", shipped=shipped))
    for bits in ("1w1a", "1w2a", "2w2a"):
        specs.append(PeerSpec(f"cnv_{bits}", f"brevitas_examples.bnn_pynq.models.cnv_{bits}",
                              (3, 32, 32), "cifar10"))
    specs.append(PeerSpec("resnet18_4w4a", "brevitas_examples.bnn_pynq.models.resnet18_4w4a",
                          (3, 32, 32), "cifar10", float_input=True))
    return specs


#: The peer networks, by name.
PEER_SPECS: dict[str, PeerSpec] = {s.name: s for s in [
    *_bnn_pynq_specs(),
    PeerSpec("quant_mobilenet_v1_4b",
             "brevitas_examples.imagenet_classification.models.quant_mobilenet_v1_4b",
             (3, 224, 224), "imagenet", float_input=True),
]}

#: Names of the peer networks.
PEERS: tuple[str, ...] = tuple(PEER_SPECS)


def peer_spec(name: str) -> PeerSpec:
    """The :class:`PeerSpec` of ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in PEER_SPECS:
        raise ValueError(f"unknown peer network {name!r}; known: {', '.join(PEERS)}")
    return PEER_SPECS[name]


def _construct(spec: PeerSpec) -> nn.Module:
    """The untrained ``brevitas_examples`` module (``pretrained=False``: nothing downloaded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.dataset == "imagenet":
            from brevitas_examples.imagenet_classification import models as imagenet_models
            return getattr(imagenet_models, spec.name)(pretrained=False)
        from brevitas_examples.bnn_pynq import models as bnn_models
        if spec.shipped:
            return getattr(bnn_models, spec.name)(pretrained=False)
        arch, bits = spec.name.split("_")
        cfg = bnn_models.get_model_cfg(f"{arch}_1w2a")
        cfg.set("QUANT", "WEIGHT_BIT_WIDTH", bits[0])
        cfg.set("QUANT", "ACT_BIT_WIDTH", bits[2])
        return bnn_models.model_impl[cfg.get("MODEL", "ARCH")](cfg)


def peer_input(name: str, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Float images ``(batch, *in_shape)`` on the grid ``k/255`` for peer ``name``: MNIST
    images (training part, a seeded random choice) for the MNIST peers, uniform random images
    otherwise."""
    spec = peer_spec(name)
    g = np.random.default_rng(seed)
    if spec.dataset == "mnist":
        x = load_mnist().x_train
        return torch.from_numpy(np.ascontiguousarray(x[g.choice(len(x), batch, replace=False)]))
    k = g.integers(0, 256, size=(batch, *spec.in_shape))
    return torch.from_numpy((k / 255.0).astype(np.float32))


_NORMS = (nn.modules.batchnorm._BatchNorm,)


def _is_norm(mod: nn.Module) -> bool:
    """BatchNorm or bnn_pynq's TensorNorm (anything with running statistics and a momentum)."""
    return isinstance(mod, _NORMS) or (hasattr(mod, "running_mean") and hasattr(mod, "momentum")
                                       and hasattr(mod, "running_var"))


def calibrate_peer(model: nn.Module, batches) -> nn.Module:
    """Calibrate ``model`` on ``batches`` (a list of input tensors) as the module docstring says;
    return it in eval mode."""
    batches = list(batches)
    norms = [m for m in model.modules() if _is_norm(m)]
    with torch.no_grad():
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        model.apply(extend_collect_stats_steps)
        model.apply(set_collect_stats_to_average)
        for x in batches:
            model(x)
        model.apply(finalize_collect_stats)
        # normalization statistics of the quantized network: cumulative average (an exponential
        # average with momentum 1/(k+1) after k batches)
        model.eval()
        saved = [m.momentum for m in norms]
        for m in norms:
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
            m.train()
        for k, x in enumerate(batches):
            for m in norms:
                m.momentum = 1.0 / (k + 1)
            model(x)
        for m, mom in zip(norms, saved):
            m.momentum = mom
    return model.eval()


def build_peer(name: str, seed: int = 0) -> nn.Module:
    """Peer network ``name`` with random weights (``torch.manual_seed(seed)``; normalization
    parameters drawn as the module docstring says), calibrated on :data:`CALIBRATION_BATCHES`
    batches of :func:`peer_input` (seeds ``seed * 1000 + i``), in eval mode."""
    spec = peer_spec(name)
    torch.manual_seed(seed)
    model = _construct(spec)
    with torch.no_grad():
        for m in model.modules():
            if _is_norm(m) and getattr(m, "weight", None) is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    batches = [peer_input(name, CALIBRATION_BATCH_SIZE, seed * 1000 + i)
               for i in range(CALIBRATION_BATCHES)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calibrate_peer(model, batches)


def cache_name(name: str, seed: int = 0) -> str:
    """File stem of a cached export: name, seed and the Brevitas version."""
    return f"{name}_seed{seed}_brevitas-{brevitas.__version__}"


def _export(model: nn.Module, spec: PeerSpec, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(), without_graph_lint():
            warnings.simplefilter("ignore")
            _brevitas_export_qonnx(model.eval(), torch.zeros(1, *spec.in_shape),
                                   export_path=os.fspath(tmp), dynamo=False)
        os.replace(tmp, path)       # a half-written file never looks like a cached export
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_peer(name: str, path, seed: int = 0, *, force: bool = False) -> Path:
    """Build, calibrate and export peer ``name`` to QONNX in the cache folder ``path``.

    The file is ``path / (cache_name(name, seed) + ".onnx")``, with a JSON sidecar (same stem)
    holding the :class:`PeerSpec`, the seed and the versions; an existing file is reused unless
    ``force``. Returns the ``.onnx`` path.
    """
    spec = peer_spec(name)
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (export_peer caches into a folder)")
    out = folder / f"{cache_name(name, seed)}.onnx"
    if out.is_file() and not force:
        return out
    _export(build_peer(name, seed), spec, out)
    meta = {**asdict(spec), "seed": seed, "brevitas": brevitas.__version__,
            "torch": torch.__version__, "input": "float images k/255, batch 1"}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lcp.models.peers",
                                 description="Build a Brevitas example-zoo network with random "
                                             "weights, calibrate it and export it to QONNX.")
    ap.add_argument("name", nargs="?", help="peer network (--list shows them)")
    ap.add_argument("-o", "--output", help="QONNX file to write")
    ap.add_argument("--seed", type=int, default=0, help="weights and calibration seed")
    ap.add_argument("--list", action="store_true", help="list the peer networks and exit")
    a = ap.parse_args(argv)
    if a.list:
        for s in PEER_SPECS.values():
            note = "" if s.shipped else "  (not shipped by brevitas_examples: derived)"
            inp = "  float input" if s.float_input else ""
            print(f"{s.name:24s} {s.dataset:9s} {'x'.join(map(str, s.in_shape)):10s}"
                  f"{s.source}{inp}{note}")
        return 0
    if not a.name or not a.output:
        print("error: NAME and -o FILE are required (or --list)", file=sys.stderr)
        return 2
    try:
        spec = peer_spec(a.name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.output)
    if out.is_dir():
        print(f"error: {out}: is a folder, expected an .onnx file path", file=sys.stderr)
        return 2
    try:
        _export(build_peer(spec.name, a.seed), spec, out)
    except OSError as e:
        print(f"error: {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    note = " (first layer reads the float image: declare the input format)" \
        if spec.float_input else ""
    print(f"wrote {out}: {spec.name}, seed {a.seed}, brevitas {brevitas.__version__}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
