"""Fixtures of the cluster tests: zoo models compiled on demand, embedded Dask clusters.

Each test drives the asynchronous dispatcher with :func:`arun` (a fresh event loop per test,
bounded by a timeout so that nothing can hang); the clusters run in the background of the test
process (:class:`distributed.LocalCluster` with worker processes under nannies).
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

#: name -> (arch, split) of the zoo models used here (random weights, calibrated scales).
ZOO = {
    "lenet5_s1": ("lenet5", 1), "lenet5_s4": ("lenet5", 4), "lenet_fc_s2": ("lenet_fc", 2),
    "lenet_fc_s1": ("lenet_fc", 1),
    "cifarnet_s1": ("cifarnet", 1), "cifarnet_s8": ("cifarnet", 8),
}


def arun(coro, timeout: float = 180.0):
    """Run ``coro`` on a new event loop; fail (never hang) after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _source_digest() -> str:
    """Digest of the model zoo's and the compiler's sources: the disk cache key."""
    import hashlib
    from pathlib import Path

    import lcp
    import lcp.models
    h = hashlib.sha256()
    files = sorted(Path(lcp.__file__).parent.glob("*.py"))
    files += [Path(lcp.models.__file__).parent / f
              for f in ("common.py", "net.py", "zoo.py", "export.py")]
    for f in files:
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


class _Zoo:
    """Compiled IR models by name, built at first use (seeded random weights).

    Compiling CifarNet split8 takes 10-50 s on the 2-core machine, so compiled models are
    kept on disk in ``$LCP_TEST_CACHE`` (default ``.cache/lcp-tests`` in the repository,
    git-ignored), keyed by a digest of the zoo's and the compiler's sources: any change to
    either recompiles.
    """

    def __init__(self):
        from pathlib import Path
        self._cache = {}
        root = Path(os.environ.get("LCP_TEST_CACHE",
                                   Path(__file__).resolve().parents[3] / ".cache" / "lcp-tests"))
        self._dir = root / f"cluster-zoo-{_source_digest()}"

    def __getitem__(self, name):
        if name not in self._cache:
            from lcp.ir import IRError, load, save
            stem = self._dir / name
            model = None
            if stem.with_suffix(".json").is_file():
                try:
                    model = load(stem)
                except IRError:
                    model = None
            if model is None:
                import shutil
                for old in self._dir.parent.glob("cluster-zoo-*"):
                    if old != self._dir:
                        shutil.rmtree(old, ignore_errors=True)
                model = self._build(name)
                save(model, stem)
            self._cache[name] = model
        return self._cache[name]

    @staticmethod
    def _build(name):
        import torch

        import lcp
        if name == "residual":
            from tests.compiler.nets import Residual, randomize
            net = randomize(Residual(), 3)
            return lcp.compile_torch(net, torch.rand(2, 1, 8, 8), name="residual")
        import lcp.models as M
        from lcp.models.export import calibrate, example_input
        arch, split = ZOO[name]
        torch.manual_seed(0)
        net = M.build(arch, split=split)
        calibrate(net, [example_input(net.in_shape, batch=8, seed=k) for k in range(2)])
        return lcp.compile_torch(net, example_input(net.in_shape, batch=2), name=name)


@pytest.fixture(scope="session")
def zoo():
    return _Zoo()


def int_inputs(model, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random integer inputs of ``model``."""
    rng = np.random.default_rng(seed)
    s = model.input
    return rng.integers(s.lo, s.hi + 1, (n, *s.shape)).astype(np.int64)


def _local_cluster(n):
    from distributed import LocalCluster
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                        dashboard_address=None, memory_limit=0,
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


@pytest.fixture(scope="module")
def cluster():
    """Address of a 4-worker embedded cluster shared by a test module."""
    with _local_cluster(4) as c:
        yield c.scheduler_address


@pytest.fixture
def fresh_cluster():
    """A 4-worker cluster for one test (tests that kill or stop workers)."""
    with _local_cluster(4) as c:
        yield c.scheduler_address


def kill(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
