"""224x224 ImageNet models on one XC7Z020 through the real command line (``lcp hw-bench
--imagenet``; results in ``results/imagenet224.json``; section :func:`markdown`).

Each row exports a model to QONNX (random weights: Brevitas' ``quant_mobilenet_v1_4b`` from the
peer zoo, :func:`lcp.benchmarks.hw.peer_model`; our zoo's ``resnet50_imagenet``,
:func:`lcp.benchmarks.hw.zoo_model`, unsplit and the LCP split8 branch), runs ``lcp compile
MODEL.onnx -o BUILD --budget xc7z020`` on it and reads the build's ``report.json``: the engine
``--budget`` chose (the dataflow design, or, when none fits, one reused ``PE x SIMD`` engine
with weights, and where the feature maps do not fit the block RAM also activations, from DRAM,
:mod:`lcp.hw.reuse`), its cycle-model latency (first input word to last output word), the
milliseconds at 100 MHz and the resource estimate against the device.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from lcp.cache import cache_root
from lcp.hw.base import DEVICES
from lcp.hw.build import model_macs
from lcp.sw.cli import main as lcp_main
from lcp.usage import load_model

from .hw import zoo_model, zoo_name

__all__ = ["ROWS", "run_rows", "markdown", "RESULTS_FILE"]

RESULTS_FILE = "imagenet224.json"
BUDGET = "xc7z020"
MHZ = 100
#: (label, source, name, split, compile options beyond the budget; --branch 0 for a split).
ROWS = [
    ("MobileNet-v1-4b (Brevitas quant_mobilenet_v1_4b)", "peer", "quant_mobilenet_v1_4b", 1,
     ["--input-format", "uint8"]),
    ("ResNet-50 (zoo resnet50_imagenet)", "zoo", "resnet50_imagenet", 1, []),
    ("ResNet-50 LCP split8, one branch", "zoo", "resnet50_imagenet", 8, ["--branch", "0"]),
]


def _onnx(source: str, name: str, split: int) -> Path:
    """The model's QONNX file, exported once into the cache."""
    if source == "peer":
        # late: the peer zoo pulls in torch and Brevitas, which only this path needs
        from lcp.models.peers import export_peer
        return export_peer(name, cache_root() / "peers")
    zoo_model(name, split)
    stem = zoo_name(name, split)
    return cache_root() / "zoo" / stem / f"{stem}.onnx"


def row(label: str, source: str, name: str, split: int, opts: list, builds: Path) -> dict:
    """Export, ``lcp compile --budget``, and the report's figures."""
    t0 = time.time()
    onnx = _onnx(source, name, split)
    t1 = time.time()
    out = Path(builds) / f"{name}_split{split}"
    argv = ["compile", str(onnx), "-o", str(out), "--budget", BUDGET, *opts]
    code = lcp_main(argv)
    if code not in (0, None):
        raise RuntimeError(f"lcp {' '.join(argv)} exited with {code}")
    rep = json.loads((out / "report.json").read_text())
    scope = "branch" if "--branch" in opts else "core"
    fmt = opts[opts.index("--input-format") + 1] if "--input-format" in opts else None
    macs = model_macs(load_model(onnx, fmt), scope, 0)
    if rep.get("engine") == "reused":
        cyc, res = rep["latency"], rep["resources"]
        engine = {"engine": "reused", "pe": rep["pe"], "simd": rep["simd"],
                  "activations": rep["activations"], "generator": rep["generator"],
                  "dram_bytes_per_image": rep["dram_bytes_per_image"],
                  "dataflow": rep["dataflow"]}
    else:
        cyc, res = rep["timing"]["latency_cycles"], rep["resources"]
        engine = {"engine": "dataflow", "folding": rep.get("folding")}
    shown = ["lcp", "compile", f"{onnx.name}", "-o", out.name, *argv[4:]]
    return {"label": label, "source": source, "name": name, "split": split, "scope": scope,
            "command": shlex.join(shown), "macs": macs, "cycles": cyc,
            "ms": round(cyc / MHZ / 1000, 2), "macs_per_cycle": round(macs / cyc, 1),
            "resources": res, "budget": DEVICES[BUDGET].to_json(), **engine,
            "seconds": {"export": round(t1 - t0, 1), "compile": round(time.time() - t1, 1)}}


def run_rows(results: Path = Path("results"), builds: Path | None = None, out=print,
             rows=None) -> dict:
    """Fill ``results/imagenet224.json`` row by row (rows already there are kept: delete the
    file to redo them); return its content."""
    path = Path(results) / RESULTS_FILE
    data = json.loads(path.read_text()) if path.exists() else {"rows": {}}
    builds = Path(builds) if builds is not None else cache_root() / "imagenet224"
    for label, *spec in rows or ROWS:
        if label in data["rows"]:
            continue
        out(f"{label} ...")
        data["rows"][label] = r = row(label, *spec, builds)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
        out(f"{label}: {r['cycles']:,} cycles = {r['ms']} ms at {MHZ} MHz ({_engine(r)})")
    return data


def _engine(r: dict) -> str:
    if r["engine"] != "reused":
        return "dataflow"
    where = "weights and activations" if r["activations"] == "dram" else "weights"
    gen = "" if r["generator"] else ", cycle model only (no generator)"
    return f"reused {r['pe']}x{r['simd']}, {where} from DRAM{gen}"


def markdown(results_dir, runs=None) -> str:
    path = Path(results_dir) / RESULTS_FILE
    if not path.exists():
        return f"_Not run: `lcp hw-bench --imagenet` writes results/{RESULTS_FILE}._"
    rows = json.loads(path.read_text())["rows"]
    b = DEVICES[BUDGET]
    lines = [f"224x224 ImageNet models compiled with `lcp compile --budget {BUDGET}` (random "
             f"weights; the command on each model's QONNX export), latency from the cycle "
             f"model, milliseconds at {MHZ} MHz, resources as estimated against the XC7Z020 "
             f"({b.lut:,} LUT, {b.ff:,} FF, {int(b.dsp)} DSP48, {int(b.bram)} BRAM36).", "",
             "| model | command | engine | cycles / image | ms at 100 MHz | MACs / cycle | "
             "LUT | FF | DSP | BRAM36 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.values():
        res = r["resources"]
        lines.append(f"| {r['label']} | `{r['command']}` | {_engine(r)} | {r['cycles']:,} | "
                     f"{r['ms']:,} | {r['macs_per_cycle']} | {res['lut']:,} | {res['ff']:,} | "
                     f"{res['dsp']} | {res['bram36']} |")
    lines += ["", "No dataflow design fits: the smallest folding, with every weight matrix "
                  "read from DRAM, needs several times the device (the per-layer frame buffers "
                  "of 224x224 feature maps, the global average pool's window). The reused "
                  "engine's activations then go to DRAM as well: one 64x112x112 feature map "
                  "at 8 bits is more than the XC7Z020's block RAM. With activations in DRAM "
                  "the engine is modelled only (lcp.hw.reuse_actdram: per phase the larger of "
                  "its compute, its reads over the 64-bit HP port and its writes); its "
                  "generator (bit-exact in Verilator) keeps activations on chip, and depthwise "
                  "convolutions, residual adds, padded max pools and average pools are "
                  "modelled phases of it."]
    return "\n".join(lines)
