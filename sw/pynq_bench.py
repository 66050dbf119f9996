"""Benchmark of the PYNQ driver on the simulated board (``make bench``, ``lcp pynq-bench``).

For each batch size, the same held-out images (MNIST test split; random images for a model
without data) go through :meth:`lcp.sw.pynq_driver.LcpDriver.run_int` in calls of that size;
per row it records:

- images/s through the driver (wall clock of the simulation on this machine);
- the driver's own overhead per call: wall time of the call minus the time spent waiting for the
  simulator's answers (:attr:`lcp.sw.pynq_sim.SimDevice.wait_seconds`): packing, checks, PYNQ's
  MMIO/DMA/buffer code and Python, i.e. what the driver would cost on a board's CPU too
  (measured here on this machine's CPU, not an ARM Cortex-A9);
- hardware cycles per image from the engine's ``BUSY_CYCLES`` register and the images/s they
  give at the overlay's clock.

Every output is compared with the golden reference. Results go to ``RESULTS/pynq_sim.json``;
:func:`lcp.sw.pynq_driver.markdown` renders them.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

__all__ = ["run_bench", "bench_model", "find_demo_model", "BATCHES", "main"]

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
    from lcp.hw.bench import zoo_model

    p = find_demo_model(runs)
    if p is not None:
        from lcp import compile_onnx
        model, weights = compile_onnx(p), "trained"
    else:
        model, weights = zoo_model("lenet5", 4), "random"
    from lcp.models.data import load as load_dataset
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
        Extra options for :class:`~lcp.sw.pynq_driver.PynqSimExecutor` (e.g. ``folding``).
    """
    from lcp.golden import Golden

    from .pynq_driver import BENCH_FILE, PynqSimExecutor

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
    import argparse
    p = argparse.ArgumentParser(prog="python -m lcp.sw.pynq_bench",
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
