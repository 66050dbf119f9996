"""Every strategy through the cluster equals the golden reference bit for bit (zoo models)."""

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.ir import IRError
from lcp.sw.cluster import Dispatcher, connect

from .conftest import arun, int_inputs

#: (model, strategy, encoding) combinations: every strategy on every zoo model it applies to.
CASES = [
    *[(m, s, "packed") for m in ("lenet5_s1", "lenet5_s4", "lenet_fc_s2", "cifarnet_s1",
                                 "cifarnet_s8") for s in ("single", "lcp", "data", "hidp")],
    *[(m, "pipeline", e) for m in ("lenet5_s1", "cifarnet_s1", "residual")
      for e in ("packed", "zfp-lz4")],
    ("lenet5_s1", "pipeline", "float32"), ("lenet5_s4", "lcp", "packed-lz4"),
    ("residual", "lcp", "packed"), ("residual", "hidp", "packed"),
]


async def _serve_all(address, model, strategy, encoding, x):
    async with connect(address) as client:
        async with Dispatcher(client, model, strategy, encoding=encoding, timeout=60) as d:
            whole = await d.infer(x)
            singles = await d.stream([x[i:i + 1] for i in range(len(x))])
            return whole, singles, d.placement, d.plan


@pytest.mark.parametrize("name,strategy,encoding", CASES)
def test_cluster_equals_golden(cluster, zoo, name, strategy, encoding):
    m = zoo[name]
    x = int_inputs(m, 5, seed=len(name))
    ref = Golden(m).run_int(x)
    whole, singles, placement, plan = arun(_serve_all(cluster, m, strategy, encoding, x))
    assert whole.status == "exact" and whole.missing == ()
    np.testing.assert_array_equal(whole.y, ref)
    for i, r in enumerate(singles):
        assert r.status == "exact"
        np.testing.assert_array_equal(r.y, ref[i:i + 1])
    assert len({r.request for r in [whole, *singles]}) == 1 + len(x)
    if strategy == "lcp":
        assert len(placement) == len(m.branches)
        assert len(set(placement.values())) == min(4, len(m.branches))
    if strategy == "pipeline":
        assert len(placement) > 1 and all(k.startswith("stage") for k in placement)
    if strategy == "hidp":
        assert plan["hidp"]["estimate_s"] > 0 and plan["hidp"]["profile"]


def test_hidp_gives_slow_nodes_less_work(cluster, zoo):
    """With one node emulated 20x slower, the global assignment avoids it."""
    m = zoo["cifarnet_s8"]

    async def main():
        async with connect(cluster) as client:
            pids = await client.run(lambda dask_worker: dask_worker.name)
            slow = sorted(pids.values())[0]

            def set_slow(dask_worker, slow=slow):
                if dask_worker.name == slow:
                    dask_worker._lcp_node.slowdown = 20.0
            await client.run(set_slow)
            try:
                async with Dispatcher(client, m, "hidp") as d:
                    r = await d.infer(int_inputs(m, 1))
                    return r, d.plan["hidp"], str(slow)
            finally:
                def reset(dask_worker):
                    dask_worker._lcp_node.slowdown = 1.0
                await client.run(reset)

    r, plan, slow = arun(main())
    assert r.status == "exact"
    loads = {n: len(v) for n, v in plan["assignment"].items()}
    assert loads.get(slow, 0) <= min(loads.values())
    assert plan["profile"][slow]["t_ref"] > 5 * min(p["t_ref"] for p in plan["profile"].values())


def test_data_strategy_splits_a_batch_over_nodes(cluster, zoo):
    m = zoo["lenet5_s1"]
    x = int_inputs(m, 9)

    async def main():
        async with connect(cluster) as client:
            async with Dispatcher(client, m, "data") as d:
                r = await d.infer(x)
                stats = await d.node_stats(tcp=False)
                return r, stats
    r, stats = arun(main())
    np.testing.assert_array_equal(r.y, Golden(m).run_int(x))
    assert sum(s["requests"] > 0 for s in stats.values()) == 4


def test_bad_requests_are_user_errors(cluster, zoo):
    m = zoo["lenet5_s4"]

    async def main():
        async with connect(cluster) as client:
            with pytest.raises(IRError, match="unknown strategy"):
                Dispatcher(client, m, "magic")
            with pytest.raises(IRError, match="unknown encoding"):
                Dispatcher(client, m, "lcp", encoding="jpeg")
            with pytest.raises(IRError, match="single-branch"):
                await Dispatcher(client, m, "pipeline").start()
            with pytest.raises(IRError, match="not all found"):
                await Dispatcher(client, m, "lcp", nodes=["no-such-node"]).start()
            async with Dispatcher(client, m, "lcp") as d:
                with pytest.raises(IRError, match="shape"):
                    await d.infer(np.zeros((1, 3, 3), dtype=np.int64))
                with pytest.raises(IRError, match="outside"):
                    await d.infer(np.full((1, *m.input.shape), 999, dtype=np.int64))
    arun(main())


def test_parts_stay_loaded_between_sessions(cluster, zoo):
    m = zoo["lenet5_s4"]

    async def session():
        async with connect(cluster) as client:
            async with Dispatcher(client, m, "lcp") as d:
                await d.infer(int_inputs(m, 1))
                return d.loads
    arun(session())
    loads = arun(session())
    assert len(loads) == len(m.branches) and all(cached for _, _, cached in loads)


@pytest.mark.slow
def test_fpga_nodes_run_branches_on_the_accelerator_backend(zoo):
    """Nodes with an ``fpga`` resource load their branches with the accelerator backend (here
    ``sim``: the generated hardware in Verilator, checked against golden); results exact."""
    import torch

    import lcp
    from distributed import LocalCluster
    from tests.compiler.nets import Branches, randomize

    m = lcp.compile_torch(randomize(Branches(2), 5), torch.rand(2, 1, 8, 8), name="branches2")
    x = int_inputs(m, 3)

    async def main(address):
        async with connect(address) as client:
            async with Dispatcher(client, m, "lcp", accel_backend="sim", timeout=900,
                                  call_timeout=900) as d:
                r = await d.infer(x)
                return r, await d.node_stats(tcp=False)

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=0, resources={"fpga": 1}) as c:
        r, stats = arun(main(c.scheduler_address), timeout=1800)
    assert r.status == "exact"
    np.testing.assert_array_equal(r.y, Golden(m).run_int(x))
    backends = {p["backend"] for s in stats.values() for p in s["parts"].values()}
    assert backends == {"sim"}
