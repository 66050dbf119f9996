"""``make demo`` / ``lcp demo``: the main job on the built-in default.

Trains LeNet-5 split4 with 4-bit weights and activations on the MNIST subset (or reuses the cached
run in ``RUNS/lenet5_split4_w4a4/``), exports it to QONNX, compiles it to the integer IR, runs the
bit-exact golden reference on the 1,000 held-out images and prints the accuracy (next to the
Brevitas model's own), the agreement of their predictions and the counters of the IR.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console

from lcp import compile_onnx, save
from lcp.datasets import load as load_dataset
from lcp.golden import Golden
from lcp.usage import counters_table

__all__ = ["DEMO_RUN", "demo_config", "run_demo"]

#: Run folder of the demo model under the runs root (the hardware, synthesis and PYNQ commands
#: look for ``RUNS/lenet5_split4_w4a4/model.onnx`` by default).
DEMO_RUN = "lenet5_split4_w4a4"


def demo_config() -> dict:
    """Training arguments of the demo model (the recipe's defaults otherwise)."""
    return dict(arch="lenet5", dataset="mnist", split=4, weight_bits=4, act_bits=4)


def run_demo(runs: str | Path = "runs", *, force: bool = False, seed: int = 0,
             progress: bool = True, out=print) -> dict:
    """Train or reuse the demo model, run golden on the held-out images; return the figures.

    Returns
    -------
    dict
        ``run_dir, cached, train_seconds, accuracy_golden, accuracy_brevitas, agreement,
        golden_seconds, counters`` (``lcp.counters.Counts.to_json()``).
    """
    import torch

    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    from lcp.models.train import load_run, train

    run_dir = Path(runs) / DEMO_RUN
    out(f"[1/4] training LeNet-5 split4 w4a4 on MNIST (Brevitas QAT, CPU) -> {run_dir}")
    t0 = time.perf_counter()
    r = train(**demo_config(), seed=seed, out_dir=run_dir, force=force, progress=progress)
    out(f"      {'reused the cached run' if r.cached else 'trained'}: "
        f"{r.metrics['epochs']} epochs in {r.train_seconds:.0f} s of training "
        f"({time.perf_counter() - t0:.0f} s now), Brevitas held-out accuracy "
        f"{100 * r.accuracy:.1f} %")

    onnx = run_dir / "model.onnx"
    out(f"[2/4] compiling the QONNX export {onnx} to the integer IR")
    model = compile_onnx(onnx, name=DEMO_RUN)
    save(model, run_dir / "ir")
    out(f"      {len(model.branches)} branches + merge, digest {model.digest()[:12]}, "
        f"saved as {run_dir / 'ir.json'} (+ .npz)")

    data = load_dataset("mnist")
    x, labels = data.x_test, data.y_test
    out(f"[3/4] golden reference (integer numpy) on the {len(x)} held-out images")
    gold = Golden(model)
    t0 = time.perf_counter()
    y = gold.run(x)
    dt = time.perf_counter() - t0
    pred = y.argmax(1)
    acc = float(np.mean(pred == labels))
    net, _ = load_run(run_dir)
    with torch.no_grad():
        tpred = net(torch.from_numpy(x)).argmax(1).numpy()
    agree = float(np.mean(tpred == pred))
    out(f"      accuracy {100 * acc:.1f} % ({int(np.sum(pred == labels))}/{len(x)}) in "
        f"{dt:.2f} s ({len(x) / dt:,.0f} images/s); Brevitas float model "
        f"{100 * np.mean(tpred == labels):.1f} %, same prediction on {100 * agree:.1f} % "
        f"of the images")

    out("[4/4] counters from the IR")

    c, table = counters_table(model, title=f"{DEMO_RUN}: per graph")
    Console().print(table)
    out(f"      network traffic per inference with one branch per device: "
        f"{c.traffic_bytes:,} bytes (input to {c.branches} branches + their outputs to "
        f"the merge)")
    out(f"next: `make sim` (the same images through the RTL), `lcp run {onnx} X.npy -o Y.npy "
        f"--backend golden|qonnx|sim|pynq-sim`, `lcp cluster run {onnx} X.npy -o Y.npy "
        f"--strategy lcp`")
    return {"run_dir": str(run_dir), "cached": r.cached, "train_seconds": r.train_seconds,
            "accuracy_golden": acc, "accuracy_brevitas": float(np.mean(tpred == labels)),
            "agreement": agree, "golden_seconds": dt, "counters": c.to_json()}
