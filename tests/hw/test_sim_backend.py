"""``--backend sim``: the executor and ``lcp run`` equal the golden reference bit for bit, and a
hardware fault is reported with the first differing image and the first differing layer."""

import numpy as np
import pytest

from lcp import save
from lcp.golden import Golden
from lcp.hw import pointwise
from lcp.hw.sim import SimExecutor, SimMismatch
from tests.hw.irgen import Builder
from tests.hw.test_verilator import core_model


def test_lcp_run_backend_sim_equals_golden(tmp_path):
    from lcp.sw.cli import main
    m = core_model()
    save(m, tmp_path / "m")
    xq = np.random.default_rng(3).integers(0, 256, size=(6, *m.input.shape))
    np.save(tmp_path / "x.npy", xq)
    args = ["run", str(tmp_path / "m.json"), str(tmp_path / "x.npy"), "--int-input", "--int"]
    assert main(args + ["-o", str(tmp_path / "sim.npy"), "--backend", "sim"]) == 0
    assert main(args + ["-o", str(tmp_path / "gold.npy"), "--backend", "golden"]) == 0
    sim, gold = np.load(tmp_path / "sim.npy"), np.load(tmp_path / "gold.npy")
    np.testing.assert_array_equal(sim, gold)
    np.testing.assert_array_equal(sim, Golden(m).run_int(xq))


def _tiny():
    b = Builder((1, 5, 5), in_bits=8, seed=31)
    x = b.conv("input", 2, 3, pad=1)
    t0 = b.threshold(x, 3)
    x = b.dense(b.flatten(t0), 3)
    b.threshold(x, 3)
    return b.model(), t0


def test_mismatch_names_image_and_layer(tmp_path, monkeypatch):
    """A generator fault (wrong thresholds in one layer's ROM) is located by the taps."""
    m, bad_layer = _tiny()
    orig = pointwise.ThresholdPlan.__init__

    def faulty(self, layer, in_fmt, out_spec):
        orig(self, layer, in_fmt, out_spec)
        if layer.name == bad_layer:
            self.table = self.table + (in_fmt.hi - in_fmt.lo) // 3   # wrong thresholds in hardware

    monkeypatch.setattr(pointwise.ThresholdPlan, "__init__", faulty)
    ex = SimExecutor(m, cache=tmp_path / "cache")
    xq = np.random.default_rng(0).integers(0, 256, size=(8, *m.input.shape))
    with pytest.raises(SimMismatch) as e:
        ex.run_int(xq)
    d = e.value.details
    assert d["layer"] == bad_layer
    assert f"first layer {bad_layer!r}" in str(e.value)
    assert d["image"] == d["images"][0]


def test_sim_demo_flow(tmp_path):
    """`make sim` flow on a small random MNIST-shaped model: figures printed, RTL == golden."""
    from lcp.benchmarks.sim_demo import run_demo
    b = Builder((1, 28, 28), in_bits=8, seed=33)
    x = b.threshold(b.conv("input", 2, 4, stride=4), 2)
    b.dense(b.flatten(x), 10)
    save(b.model(), tmp_path / "mnist_tiny")
    lines = []
    figs = run_demo(tmp_path / "mnist_tiny.json", images=20, out=lines.append)
    assert figs["bit_exact"] and figs["images"] == 20
    assert figs["latency_cycles"] == figs["latency_cycles_model"]
    assert figs["interval_cycles"] == figs["interval_cycles_model"]
    assert any("RTL == golden bit for bit" in l for l in lines)
