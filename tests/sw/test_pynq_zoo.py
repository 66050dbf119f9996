"""Slow: `lcp run MODEL X --backend pynq-sim` equals `--backend golden` bit for bit on zoo models
(whole models as one LCP core, default folding for the XC7Z020 budget), and one CifarNet-split8
branch through the driver; random weights calibrated on random images (lcp.benchmarks.hw.zoo_model),
the trained demo model when `runs/` has it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.ir import save
from lcp.sw.cli import main as lcp_main
from lcp.sw.pynq.executors import PynqSimExecutor

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _zoo(arch, split):
    from lcp.benchmarks.hw import zoo_model
    return zoo_model(arch, split)


@pytest.mark.parametrize("arch,split", [("lenet5", 1), ("lenet5", 4), ("lenet5", 8),
                                        ("lenet_fc", 4)])
def test_lcp_run_pynq_sim_equals_golden(arch, split, tmp_path, capsys):
    m = _zoo(arch, split)
    save(m, tmp_path / "m")
    rng = np.random.default_rng(split)
    x = rng.random((6, *m.input.shape)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    outs = {}
    for be in ("golden", "pynq-sim"):
        code = lcp_main(["run", str(tmp_path / "m.json"), str(tmp_path / "x.npy"), "--int", "-o",
                         str(tmp_path / f"{be}.npy"), "--backend", be])
        assert code == 0, capsys.readouterr().err
        outs[be] = np.load(tmp_path / f"{be}.npy")
    assert np.array_equal(outs["golden"], outs["pynq-sim"])


def test_trained_demo_model_on_mnist(tmp_path, capsys):
    from lcp.benchmarks.pynq import find_demo_model
    from lcp.datasets import load as load_dataset

    p = find_demo_model(ROOT / "runs")
    if p is None:
        pytest.skip("no trained demo model (make demo)")
    np.save(tmp_path / "x.npy", load_dataset("mnist").x_test[::50])
    outs = {}
    for be in ("golden", "pynq-sim"):
        code = lcp_main(["run", str(p), str(tmp_path / "x.npy"), "-o", str(tmp_path / f"{be}.npy"),
                         "--backend", be])
        assert code == 0, capsys.readouterr().err
        outs[be] = np.load(tmp_path / f"{be}.npy")
    assert np.array_equal(outs["golden"], outs["pynq-sim"])


def test_cifarnet_split8_branch_through_the_driver():
    m = _zoo("cifarnet", 8)
    xq = np.random.default_rng(0).integers(m.input.lo, m.input.hi + 1, size=(3, *m.input.shape))
    with PynqSimExecutor(m, scope="branch", index=0, batch=2) as ex:
        y = ex.run_int(xq)
        assert ex.driver.hw["scope"] == "branch"
    assert np.array_equal(y, Golden(m).run_branch(0, xq))
