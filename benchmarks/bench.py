"""``make bench`` / ``lcp bench``: every benchmark of the project, each with its baseline measured
in the same run, results as JSON under ``RESULTS/`` (rendered into REPRODUCTION.md by
``lcp reproduce``).

Parts (``--only``, in this order):

``golden``
    The golden reference's images/s on LeNet-5 split4 w4a4 (the demo model), batch 256 of the
    held-out MNIST images, against the Brevitas model's float forward on the same batch in the
    same process (target: golden at least half as fast). Median of ``repeats`` timed runs after
    one warm-up each. Writes ``golden_bench.json``.
``hw``
    :mod:`lcp.benchmarks.hw`: simulated vs modelled cycles, Verilator images/s, resource estimates.
``synth``
    :mod:`lcp.benchmarks.synth`: FPGA and ASIC figures of the anchor branch and the demo core.
``pynq``
    :mod:`lcp.benchmarks.pynq`: images/s through the overlay driver on the simulated board and
    the driver's own overhead per call.
``cluster``
    :mod:`lcp.sw.cluster.bench`: every distribution strategy; on emulated 62 Mbit/s links
    (``lcp cluster emulate``) when running as root with ``ip netns``, else on local processes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lcp import compile_onnx
from lcp.benchmarks.demo import DEMO_RUN, demo_config
from lcp.benchmarks.hw import main as hw_main
from lcp.benchmarks.pynq import main as pynq_main
from lcp.benchmarks.synth import bench as synth_bench
from lcp.datasets import load as load_dataset
from lcp.golden import Golden

__all__ = ["PARTS", "golden_bench", "run_bench", "markdown", "GOLDEN_FILE"]

PARTS = ("golden", "hw", "synth", "pynq", "cluster")
GOLDEN_FILE = "golden_bench.json"


def _demo_model(runs: Path, out):
    """The demo model's run folder, training it (cached) when missing."""
    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    from lcp.models.train import train

    run_dir = Path(runs) / DEMO_RUN
    r = train(**demo_config(), out_dir=run_dir, progress=False)
    if not r.cached:
        out(f"trained the demo model in {r.train_seconds:.0f} s")
    return run_dir


def golden_bench(runs: str | Path = "runs", results: str | Path = "results", *,
                 batch: int = 256, repeats: int = 7, run_dir: str | Path | None = None,
                 out=print) -> dict:
    """Golden reference vs Brevitas forward, images/s on one batch; writes ``GOLDEN_FILE``.

    ``run_dir``: a training run folder to measure instead of the demo model."""
    import torch

    # late: lcp.models pulls in torch and Brevitas, which only this path needs
    from lcp.models.train import load_run

    run_dir = Path(run_dir) if run_dir is not None else _demo_model(Path(runs), out)
    model = compile_onnx(run_dir / "model.onnx")
    net, _ = load_run(run_dir)
    x = load_dataset("mnist").x_test[:batch]
    gold = Golden(model)

    def timed(f):
        f()                                          # warm-up
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    t_gold = timed(lambda: gold.run(x))
    t_int = timed(lambda: gold.run_int(model.input.quantize(x)))
    xt = torch.from_numpy(x)

    def brevitas():
        with torch.no_grad():
            net(xt)
    t_torch = timed(brevitas)
    same = bool(np.array_equal(gold.run(x).argmax(1), net(xt).detach().numpy().argmax(1)))
    res = {"format": "lcp-golden-bench", "command": "lcp bench --only golden",
           "model": run_dir.name, "batch": batch, "repeats": repeats,
           "golden_images_per_second": batch / t_gold,
           "golden_int_images_per_second": batch / t_int,
           "brevitas_images_per_second": batch / t_torch,
           "ratio": t_torch / t_gold, "target_ratio": 0.5,
           "torch_threads": torch.get_num_threads(), "same_predictions": same,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                      f"{platform.python_version()}, torch {torch.__version__}, numpy "
                      f"{np.__version__}"}
    out(f"golden reference: {res['golden_images_per_second']:,.0f} images/s "
        f"(integer in/out {res['golden_int_images_per_second']:,.0f}); Brevitas float model "
        f"{res['brevitas_images_per_second']:,.0f} images/s ({res['torch_threads']} torch "
        f"threads); golden / Brevitas = {res['ratio']:.2f} (target >= 0.5: "
        f"{'MET' if res['ratio'] >= 0.5 else 'NOT MET'}); LeNet-5 split4 w4a4, batch {batch}, "
        f"median of {repeats}")
    d = Path(results)
    d.mkdir(parents=True, exist_ok=True)
    (d / GOLDEN_FILE).write_text(json.dumps(res, indent=1) + "\n")
    return res


def markdown(results_dir, runs=None) -> str:
    """``GOLDEN_FILE`` as a REPRODUCTION.md section."""
    p = Path(results_dir) / GOLDEN_FILE
    if not p.exists():
        return f"_Not measured yet: run `make bench`, which writes `{GOLDEN_FILE}`._"
    r = json.loads(p.read_text())
    return (f"Produced by `{r['command']}` on {r['machine']}: {r['model']}, batch {r['batch']} "
            f"of held-out MNIST images, median of {r['repeats']} runs.\n\n"
            "| executor | images/s |\n|---|---|\n"
            f"| golden reference (float in, float out) | {r['golden_images_per_second']:,.0f} |\n"
            f"| golden reference (integers in and out) | "
            f"{r['golden_int_images_per_second']:,.0f} |\n"
            f"| Brevitas float model ({r['torch_threads']} torch threads) | "
            f"{r['brevitas_images_per_second']:,.0f} |\n\n"
            f"golden / Brevitas = **{r['ratio']:.2f}** (target >= {r['target_ratio']}).")


def _cluster(runs: Path, results: Path, quick: bool, out) -> int:
    dest = results / "cluster"
    emulate = (os.geteuid() == 0 and shutil.which("ip") is not None
               and subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0)
    cmd = [sys.executable, "-m", "lcp.sw.cli", "cluster", "emulate" if emulate else "bench",
           "-o", str(dest), "--cache", str(runs / "cluster-cache")]
    if quick:
        cmd.append("--quick")
    out(("emulated 62 Mbit/s links: " if emulate else
          "no root or no `ip netns`: local processes without link limits: ") + " ".join(cmd[2:]))
    return subprocess.run(cmd).returncode


def run_bench(runs: str | Path = "runs", results: str | Path = "results", *,
              only=PARTS, quick: bool = False, out=print) -> dict[str, int]:
    """Run the parts in ``only``; return each part's exit status (0 = ran and all exact)."""
    runs, results = Path(runs), Path(results)
    bad = set(only) - set(PARTS)
    if bad:
        raise ValueError(f"unknown benchmark part(s) {sorted(bad)}; known: {', '.join(PARTS)}")
    status = {}
    for part in PARTS:
        if part not in only:
            continue
        out(f"== bench: {part} ==")
        t0 = time.perf_counter()
        if part == "golden":
            golden_bench(runs, results, out=out)
            status[part] = 0
        elif part == "hw":
            _demo_model(runs, out)
            status[part] = hw_main(["--runs", str(runs), "--results", str(results)]
                                   + (["--quick"] if quick else []))
        elif part == "synth":
            _demo_model(runs, out)
            rows = synth_bench(runs, out=out, quick=quick, results=results)
            status[part] = 0 if rows else 1
        elif part == "pynq":
            _demo_model(runs, out)
            status[part] = pynq_main(["--runs", str(runs), "--results", str(results)])
        elif part == "cluster":
            status[part] = _cluster(runs, results, quick, out)
        out(f"== {part}: {'ok' if status[part] == 0 else f'exit {status[part]}'} in "
            f"{time.perf_counter() - t0:.0f} s ==")
    return status
