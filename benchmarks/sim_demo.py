"""``make sim``: the demo model's held-out MNIST images through the RTL simulation.

Builds the model as one LCP core (folding from the XC7Z020 budget unless given), simulates the
held-out images in Verilator (cocotb), checks every output against the golden reference, and
prints accuracy, the simulated latency and initiation interval in cycles (with the cycle model's
estimate next to them) and the simulator's speed.
``python -m lcp.benchmarks.sim_demo MODEL.onnx`` or ``lcp sim-demo MODEL.onnx``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from lcp import compile_onnx, load
from lcp.datasets import load as load_dataset
from lcp.golden import Golden
from lcp.hw.build import cached_build
from lcp.hw.chooser import choose
from lcp.hw.sim import SimMismatch, VerilatorSim, first_difference
from lcp.ir import IRError

__all__ = ["run_demo", "find_model", "main", "DEFAULT_MODEL"]

#: Where ``make demo`` leaves the trained LeNet-5 split4 w4a4.
DEFAULT_MODEL = "runs/lenet5_split4_w4a4/model.onnx"


def find_model(path: str | Path = DEFAULT_MODEL) -> Path:
    """``path`` if it exists, else the newest ``RUNS/NAME*/model.onnx`` next to it (training run
    folders carry a config hash: ``runs/lenet5_split4_w4a4-mnist-<hash>/``).

    Raises
    ------
    IRError
        when neither exists.
    """
    p = Path(path)
    if p.exists():
        return p
    found = sorted(p.parent.parent.glob(f"{p.parent.name}*/{p.name}"),
                   key=lambda q: q.stat().st_mtime)
    if found:
        return found[-1]
    raise IRError(f"{p}: no such model (train it with `make demo`, or pass a path)")


def run_demo(model_path: str | Path = DEFAULT_MODEL, *, images: int = 200,
             dataset: str = "mnist", budget: str = "xc7z020", waves: bool = False,
             batch: int = 100, out=print) -> dict:
    """Simulate ``images`` held-out images; return the figures printed.

    Parameters
    ----------
    model_path : path
        QONNX model (``.onnx``) or IR (``.json``).
    images : int
        Number of held-out images (the first ``images`` of the test split; 0 = all).
    waves : bool
        Also write a VCD of the first batch (path printed).

    Raises
    ------
    IRError
        on a missing model, a model the hardware cannot build, or a simulation that differs
        from the golden reference (:class:`~lcp.hw.sim.SimMismatch`).
    """
    path = find_model(model_path)
    model = compile_onnx(path) if path.suffix == ".onnx" else load(path)
    data = load_dataset(dataset)
    x, y = data.x_test, data.y_test
    if images:
        # a class-balanced prefix: the test split is sorted by class
        order = np.argsort(np.tile(np.arange(len(x) // data.num_classes + 1),
                                   data.num_classes)[:len(x)], kind="stable")
        pick = np.sort(order[:images])
        x, y = x[pick], y[pick]
    xq = model.input.quantize(x)

    t0 = time.time()
    choice = choose(model, budget=budget, scope="core")
    build = cached_build(model, choice.folding, scope="core")
    sim = VerilatorSim(build, waves=waves)
    compile_s = sim.compile()
    out(f"model {model.name}: {len(model.branches)} branches, one LCP core; folding for "
        f"{budget}: {choice.folding.to_json()['layers']}")
    out(f"build + Verilator compile: {time.time() - t0:.1f} s (cache {build.dir})")

    gold = Golden(model).run_int(xq)
    outs, lat, ivl, wall, wave_dir = [], None, None, 0.0, None
    for k in range(0, len(xq), batch):
        xb = xq[k:k + batch]
        res = sim.run(xb, expected=gold[k:k + batch],
                      run_dir=(build.dir / "demo_waves") if (waves and k == 0) else None)
        if k == 0:
            lat, ivl = res.latency, res.interval
            wave_dir = res.run_dir
        wall += res.wall_seconds
        outs.append(res.outputs)
    yhat = np.concatenate(outs)
    bad = [k for k in range(len(xq)) if not np.array_equal(yhat[k], gold[k])]
    if bad:
        where = first_difference(model, build, xq[bad[0]:bad[0] + 1])
        raise SimMismatch(f"simulation differs from golden on {len(bad)} image(s); first image "
                          f"{bad[0]}, first layer {where.get('layer')!r}", {"image": bad[0],
                                                                            **where})
    acc_sim = float(np.mean(yhat.argmax(axis=1) == y))
    acc_gold = float(np.mean(gold.argmax(axis=1) == y))
    r = build.resources.to_json()
    figs = {
        "model": model.name, "images": int(len(xq)), "bit_exact": True,
        "accuracy_sim": acc_sim, "accuracy_golden": acc_gold,
        "latency_cycles": lat, "interval_cycles": ivl,
        "latency_cycles_model": build.timing.latency,
        "interval_cycles_model": build.timing.interval,
        "sim_images_per_second": len(xq) / wall if wall else 0.0,
        "resources_estimate": r,
    }
    out(f"{len(xq)} held-out {dataset} images: RTL == golden bit for bit; accuracy "
        f"{100 * acc_sim:.2f} % (golden {100 * acc_gold:.2f} %)")
    out(f"latency {lat} cycles (model {build.timing.latency}), initiation interval {ivl} cycles "
        f"(model {build.timing.interval}); at 100 MHz: {lat / 100:.2f} us, "
        f"{100e6 / ivl:,.0f} images/s")
    out(f"estimated resources: {r['lut']} LUT, {r['ff']} FF, {r['dsp']} DSP, "
        f"{r['bram36']} BRAM36; Verilator+cocotb simulates {figs['sim_images_per_second']:.1f} "
        f"images/s")
    if wave_dir is not None:
        out(f"waves: {wave_dir / 'dump.vcd'}")
        figs["waves"] = str(wave_dir / "dump.vcd")
    return figs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lcp.benchmarks.sim_demo",
                                description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--images", type=int, default=200, help="held-out images (0 = all 1000)")
    p.add_argument("--budget", default="xc7z020")
    p.add_argument("--waves", action="store_true", help="write a VCD of the first batch")
    a = p.parse_args(argv)
    try:
        run_demo(a.model, images=a.images, budget=a.budget, waves=a.waves)
    except IRError as e:
        print(f"lcp: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
