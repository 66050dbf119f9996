"""The LCP paper's Raspberry Pi cluster, predicted by the simulator (``lcp cluster paper``).

The setting (Hadidi et al., ../shared/ANCHORS.md in the project notes): Raspberry Pi 3B+ devices
on a 62 Mbit/s WiFi network, about 9 ms per small message; latency per image of AlexNet
(ImageNet) 2,801 ms on one device, 640 / 420 ms model-parallel on 4 / 8 devices, 170 / 115 ms
LCP split4 / split8; VGG16 9,381 ms on one device, 887 / 399 ms LCP split4 / split8.

What the model takes from the paper: a device's speed, from its one-device latency and the
original model's MACs (IR counters; seconds per MAC, the same for every op that has MACs,
nothing for the others), so the compute of one device is the paper's one-device figure by
construction (the predicted one-device latency adds sending the input and the output, as our
dispatcher does) and every other figure is a prediction; the WiFi as one shared medium (one message at a time) at 62 Mbit/s
with 9 ms per message. What it takes from the IR: each layer's MACs and every tensor's bytes,
of our AlexNet / VGG16 at 224x224 (``alexnet_imagenet``, ``vgg16_imagenet`` of the zoo, random
weights) and of their split4 / split8 LCP versions. Tensors travel as float32 (what a float
framework on the Pi sends), or in our packed wire format (8-bit input, 4-bit activations), each
message to one device (unicast), or, last variant, packed with a tensor that goes to several
devices sent once (``broadcast``: the input of every branch, each node's slice in an
all-gather). The merge runs on one more device of the same speed (the paper's final node);
HiDP's placement of the split8 model is chosen by the same model.
"""

from __future__ import annotations

from pathlib import Path

import lcp
from lcp.counters import count, count_layer
from lcp.ir import Model

from .bench import compile_cached
from .simplan import DISPATCHER, ClusterSpec, LinkSpec, NodeSpec, OpCost, build_plan
from .simulator import plot_timeline, summarize

__all__ = ["PAPER_RPI", "RPI_LINK", "rpi_cluster", "predict", "load_models"]

#: The paper's Raspberry Pi figures, ms per image.
PAPER_RPI = {
    "alexnet": {"single": 2801, "model-parallel4": 640, "model-parallel8": 420,
                "lcp-split4": 170, "lcp-split8": 115},
    "vgg16": {"single": 9381, "lcp-split4": 887, "lcp-split8": 399},
}
#: WiFi 62 Mbit/s, about 9 ms per small message, one shared medium.
RPI_LINK = {"bandwidth_bps": 62e6, "latency_s": 0.009}
_ARCH = {"alexnet": "alexnet_imagenet", "vgg16": "vgg16_imagenet"}
#: Wire variants: name -> (encoding, broadcast).
WIRES = {"float32": ("float32", False), "packed": ("packed", False),
         "packed+broadcast": ("packed", True)}
#: (label, model variant, strategy, nodes)
CONFIGS = [("single", "original", "single", 1),
           ("model-parallel4", "original", "model-parallel", 4),
           ("model-parallel8", "original", "model-parallel", 8),
           ("lcp-split4", "split4", "lcp", 4),
           ("lcp-split8", "split8", "lcp", 8),
           ("hidp-split8", "split8", "hidp", 8),
           ("pipeline8", "original", "pipeline", 8)]


def rpi_cluster(original: Model, single_ms: float, nodes: int = 8,
                broadcast: bool = False) -> ClusterSpec:
    """Devices whose seconds per MAC make ``original`` take ``single_ms`` on one of them."""
    per_mac = single_ms / 1e3 / count(original).macs
    ops = {}
    for layer in original.layers():
        has_macs = count_layer(original, layer).macs > 0
        ops[layer.op] = OpCost(0.0, per_mac if has_macs else 0.0)
    ops["*"] = OpCost(0.0, 0.0)

    def dev(name):
        return NodeSpec(name, 1, 1 << 30, dict(ops))
    return ClusterSpec(dev(DISPATCHER), [dev(f"pi{i}") for i in range(nodes)],
                       {"*": LinkSpec(RPI_LINK["bandwidth_bps"], RPI_LINK["latency_s"], 0)},
                       "shared", broadcast=broadcast)


def load_models(cache: Path, log=print) -> dict[str, dict[str, Model]]:
    """``{"alexnet"|"vgg16": {"original"|"split4"|"split8": Model}}``: the zoo's 224x224
    networks with random weights, compiled once and cached (several minutes for VGG16)."""
    import torch  # building models needs torch (optional)

    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    import lcp.models as M
    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    from lcp.models.export import calibrate, example_input

    out = {}
    for fam, arch in _ARCH.items():
        out[fam] = {}
        for variant, split in (("original", 1), ("split4", 4), ("split8", 8)):
            def make(arch=arch, split=split, variant=variant):
                log(f"[paper] building {arch} split{split} (random weights) and compiling")
                torch.manual_seed(0)
                net = M.build(arch, split=split)
                calibrate(net, [example_input(net.in_shape, batch=2, seed=0)])
                return lcp.compile_torch(net, example_input(net.in_shape, batch=1, seed=0),
                                         name=f"{arch}_{variant}")
            out[fam][variant] = compile_cached(Path(cache), f"{arch}_split{split}_paper", make)
    return out


def predict(models: dict[str, dict[str, Model]], *, plots: Path | None = None) -> dict:
    """Predicted latency (and ratios to one device) of every configuration, beside the
    paper's figures where it has them."""
    result = {"setting": {"link": "62 Mbit/s WiFi, one shared medium, 9 ms per message",
                          "device": "seconds per MAC from the paper's one-device latency",
                          "wires": {k: {"encoding": e, "broadcast": b}
                                    for k, (e, b) in WIRES.items()}}, "models": {}}
    for fam, ms in models.items():
        paper = PAPER_RPI[fam]
        rows = {}
        for label, variant, strategy, n in CONFIGS:
            row = {"model": ms[variant].name, "strategy": strategy, "nodes": n,
                   "macs": count(ms[variant]).macs}
            for enc, (encoding, bcast) in WIRES.items():
                cl = rpi_cluster(ms["original"], paper["single"], broadcast=bcast)
                plan = build_plan(ms[variant], strategy, cl, encoding=encoding, nodes=n)
                s = summarize(plan, cl, requests=3, concurrency=1)
                row[enc] = {"latency_ms": s["latency_ms"]["p50"],
                            "bytes_per_inference": s["bytes_per_inference"],
                            "placement": s["placement"], "notes": s["notes"]}
                if plots is not None and enc == "float32" and label in ("lcp-split8",
                                                                        "model-parallel8"):
                    plots.mkdir(parents=True, exist_ok=True)
                    plot_timeline(plan, cl, plots / f"paper_{fam}_{label}.png", requests=1,
                                  title=f"{fam} {label}, Raspberry Pi model (float32 wire)")
            if label in paper:
                row["paper_ms"] = paper[label]
            rows[label] = row
        for label, row in rows.items():
            for enc in WIRES:
                row[enc]["speedup_vs_single"] = (rows["single"][enc]["latency_ms"]
                                                 / row[enc]["latency_ms"])
            if "paper_ms" in row:
                row["paper_speedup_vs_single"] = paper["single"] / row["paper_ms"]
        result["models"][fam] = rows
    return result
