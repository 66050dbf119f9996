"""Benchmark of the PYNQ driver on the simulated board (``make bench``, ``lcp pynq-bench``).

For each batch size, the same held-out images (MNIST test split; random images for a model
without data) go through :meth:`lcp.sw.pynq.driver.LcpDriver.run_int` in calls of that size;
per row it records:

- images/s through the driver (wall clock of the simulation on this machine);
- the driver's own overhead per call: wall time of the call minus the time spent waiting for the
  simulator's answers (:attr:`lcp.sw.pynq.sim.SimDevice.wait_seconds`): packing, checks, PYNQ's
  MMIO/DMA/buffer code and Python, i.e. what the driver would cost on a board's CPU too
  (measured here on this machine's CPU, not an ARM Cortex-A9);
- hardware cycles per image from the engine's ``BUSY_CYCLES`` register and the images/s they
  give at the overlay's clock.

Every output is compared with the golden reference. Results go to ``RESULTS/pynq_sim.json``;
:func:`lcp.sw.pynq.driver.markdown` renders them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from lcp import compile_onnx
from lcp.benchmarks.hw import zoo_model
from lcp.datasets import load as load_dataset
from lcp.golden import Golden
from lcp.sw.pynq.executors import PynqSimExecutor

__all__ = ["run_bench", "bench_model", "find_demo_model", "BATCHES", "main"]

#: File the PYNQ benchmark writes into the results folder (:func:`run_bench`).
BENCH_FILE = "pynq_sim.json"

#: Batch sizes (images per driver call).
BATCHES = (1, 8, 64)


def find_demo_model(runs: str | Path = "runs") -> Path | None:
    """The trained demo model, LeNet-5 split4 w4a4: ``RUNS/lenet5_split4_w4a4/model.onnx``,
    else the newest ``RUNS/lenet5_split4_w4a4-*/model.onnx`` (a :mod:`lcp.models.train` run
    folder), else None."""
    runs = Path(runs)
    p = runs / "lenet5_split4_w4a4" / "model.onnx"
    if p.is_file():
        return p
    found = sorted(runs.glob("lenet5_split4_w4a4-*/model.onnx"), key=lambda q: q.stat().st_mtime)
    return found[-1] if found else None


def bench_model(runs: Path):
    """The demo model (trained LeNet-5 split4 w4a4 when ``runs`` has it, else random weights),
    ``"trained"``/``"random"``, and the held-out MNIST images."""
    p = find_demo_model(runs)
    if p is not None:
        model, weights = compile_onnx(p), "trained"
    else:
        model, weights = zoo_model("lenet5", 4), "random"
    x = load_dataset("mnist").x_test
    return model, weights, x


def run_bench(results_dir: str | Path = "results", runs: str | Path = "runs", *,
              batches=BATCHES, images: int = 64, out=print, executor_options=None) -> dict:
    """Run the benchmark; write and return ``RESULTS/pynq_sim.json`` (module docstring).

    Parameters
    ----------
    images : int
        Images per row (rounded up to whole calls).
    executor_options : dict, optional
        Extra options for :class:`~lcp.sw.pynq.driver.PynqSimExecutor` (e.g. ``folding``).
    """
    model, weights, x = bench_model(Path(runs))
    xq_all = model.input.quantize(x[:max(images, max(batches))])
    gold = Golden(model).run_int(xq_all)
    t0 = time.time()
    ex = PynqSimExecutor(model, batch=max(batches), **(executor_options or {}))
    ex.prepare()
    setup = time.time() - t0
    drv, dev = ex.driver, ex.board.device
    clock = drv.clock_mhz * 1e6
    rows, exact = [], True
    try:
        drv.run_int(xq_all[:1])                          # warm-up (buffers, first transfer)
        for b in batches:
            calls = max(1, -(-images // b))
            wall = wait = 0.0
            busy = 0
            n_img = 0
            for c in range(calls):
                k = (c * b) % (len(xq_all) - b + 1)
                xb = xq_all[k:k + b]
                w0, t1 = dev.wait_seconds, time.perf_counter()
                y = drv.run_int(xb)
                wall += time.perf_counter() - t1
                wait += dev.wait_seconds - w0
                busy += drv.last_call["busy_cycles"]
                n_img += len(xb)
                exact &= bool(np.array_equal(y, gold[k:k + b]))
            row = {"batch": b, "calls": calls, "images": n_img,
                   "images_per_second": n_img / wall,
                   "seconds_per_call": wall / calls,
                   "overhead_per_call": (wall - wait) / calls,
                   "overhead_per_image": (wall - wait) / n_img,
                   "sim_wait_per_call": wait / calls,
                   "hw_cycles_per_image": busy / n_img,
                   "hw_images_per_second": clock * n_img / busy if busy else 0.0}
            rows.append(row)
            out(f"batch {b:>3}: {row['images_per_second']:8.1f} images/s through the driver "
                f"(simulation), {1e3 * row['seconds_per_call']:8.1f} ms/call, driver overhead "
                f"{1e3 * row['overhead_per_call']:6.2f} ms/call "
                f"({1e6 * row['overhead_per_image']:7.1f} us/image); hardware "
                f"{row['hw_cycles_per_image']:7.0f} cycles/image = "
                f"{row['hw_images_per_second']:,.0f} images/s at {drv.clock_mhz:.0f} MHz")
    finally:
        ex.close()
    res = {"format": "lcp-pynq-bench", "command": "lcp pynq-bench", "model": model.name,
           "weights": weights, "digest": model.digest(), "in_width": ex.in_width,
           "out_width": ex.out_width, "clock_mhz": drv.clock_mhz,
           "folding": ex.build.folding.to_json()["layers"], "setup_seconds": round(setup, 1),
           "bit_exact": exact, "machine": f"{platform.machine()}, {platform.python_version()}",
           "rows": rows}
    out(f"all outputs equal golden: {exact}")
    d = Path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / BENCH_FILE).write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lcp.benchmarks.pynq",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--images", type=int, default=64)
    a = p.parse_args(argv)
    r = run_bench(a.results, a.runs, images=a.images)
    return 0 if r["bit_exact"] else 1


if __name__ == "__main__":
    import sys
    sys.exit(main())


def markdown(results_dir, runs=None) -> str:
    """The PYNQ driver benchmark (``results_dir/pynq_sim.json``) as markdown for
    REPRODUCTION.md; a note naming the command when it has not been run."""
    path = Path(results_dir) / BENCH_FILE
    if not path.exists():
        return ("_Not measured yet: run `make bench` (or `lcp pynq-bench`), which writes "
                f"`{BENCH_FILE}`._")
    r = json.loads(path.read_text())
    lines = [
        f"Produced by `{r.get('command', 'lcp pynq-bench')}`: the overlay driver "
        f"(`lcp.sw.pynq.driver.LcpDriver`, PYNQ's DMA and MMIO code) against the Verilated PYNQ "
        f"top (`lcp.sw.pynq.sim`), model `{r['model']}` ({r['weights']} weights) as one LCP "
        f"core, DMA streams {r['in_width']}/{r['out_width']} bits. Wall-clock figures are of "
        f"the simulation on this machine ({r.get('machine', 'unknown')}), not of a board; "
        f"hardware cycles are counted by the engine's own BUSY_CYCLES register "
        f"(at {r['clock_mhz']:.0f} MHz on a PYNQ-Z1/Z2 they would take the time shown).",
        "",
        "| batch | calls | images/s (sim, wall) | ms per call | driver overhead per call (ms, "
        "outside the simulator) | overhead per image (us) | hw cycles per image | "
        "hw images/s at clock |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['batch']} | {row['calls']} | {row['images_per_second']:.1f} | "
            f"{1e3 * row['seconds_per_call']:.1f} | {1e3 * row['overhead_per_call']:.2f} | "
            f"{1e6 * row['overhead_per_image']:.1f} | {row['hw_cycles_per_image']:.0f} | "
            f"{row['hw_images_per_second']:,.0f} |")
    lines += ["", f"All outputs equal the golden reference bit for bit: "
                  f"**{'yes' if r['bit_exact'] else 'NO'}**. Driver overhead = wall time of "
                  f"`run_int` minus the time spent waiting for the simulator's answers "
                  f"(packing, checks, PYNQ's MMIO/DMA/buffer code, Python)."]
    return "\n".join(lines)
