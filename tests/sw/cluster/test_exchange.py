"""The ``exchange`` and ``model-parallel`` strategies: branches that meet before the merge,
node to node through Dask's comms, every answer equal to golden; the model-parallel transform
is golden-exact and divides every layer's channels."""

import numpy as np
import pytest

from lcp.counters import count
from lcp.golden import Golden
from lcp.ir import IRError
from lcp.sw.cluster import Dispatcher, connect
from lcp.sw.cluster.exchange import exchange_parts, segments
from lcp.sw.cluster.modelpar import model_parallel

from .conftest import arun, int_inputs


@pytest.fixture(scope="module")
def xmodel():
    """LeNet-5 split4 with two exchange points (random weights, calibrated), compiled."""
    import torch

    import lcp
    from lcp.models.exchange import build_exchange
    from lcp.models.export import calibrate, example_input, export_qonnx
    import tempfile
    from pathlib import Path

    torch.manual_seed(1)
    net = build_exchange("lenet5", "1:k1:b2+4:all:b3", split=4)
    calibrate(net, [example_input(net.in_shape, batch=8, seed=k) for k in range(2)])
    with tempfile.TemporaryDirectory() as d:
        path = export_qonnx(net, Path(d) / "x.onnx")
        return lcp.compile_onnx(path, name="lenet5_x")


@pytest.mark.parametrize("name,nodes", [("lenet5_s1", 4), ("lenet5_s1", 8), ("residual", 3),
                                        ("cifarnet_s1", 4)])
def test_model_parallel_transform_is_exact(zoo, name, nodes):
    m = zoo[name]
    mp = model_parallel(m, nodes)
    assert len(mp.branches) == nodes and mp.exchanges
    x = int_inputs(m, 6, seed=nodes)
    np.testing.assert_array_equal(Golden(mp).run_int(x), Golden(m).run_int(x))
    # every conv/dense with >= nodes outputs is divided: no branch holds all its rows
    for l in m.branches[0].layers:
        if l.opdef.weighted and l.params["weight"].shape[0] >= nodes:
            rows = [mp.layer(f"{l.name}@{k}").params["weight"].shape[0] for k in range(nodes)]
            assert sum(rows) == l.params["weight"].shape[0] and max(rows) < sum(rows)
    assert count(mp).traffic_bytes > count(m).traffic_bytes


def test_model_parallel_needs_one_branch(zoo):
    with pytest.raises(IRError, match="single-branch"):
        model_parallel(zoo["lenet5_s4"], 4)


def test_exchange_parts_and_segments(xmodel):
    parts = exchange_parts(xmodel)
    assert [p.index for p in parts] == [0, 1, 2, 3]
    for p in parts:
        own = {l.name for l in xmodel.branches[p.index].layers}
        for l in p.model.layers():          # only the branch's own parameters are shipped
            if l.name not in own:
                assert all(not v.any() for v in l.params.values())
        segs = segments(xmodel, p.index)
        got = [t for w, _, _ in segs for t in w]
        assert sorted(got) == sorted(xmodel.branches[p.index].inputs[1:])
        assert sum(len(ls) for _, ls, _ in segs) == len(xmodel.branches[p.index].layers)


async def _serve(address, model, strategy, x, nodes=None, encoding="packed"):
    async with connect(address) as client:
        async with Dispatcher(client, model, strategy, nodes=nodes, encoding=encoding,
                              timeout=60) as d:
            whole = await d.infer(x)
            singles = await d.stream([x[i:i + 1] for i in range(len(x))])
            return whole, singles, d.placement


@pytest.mark.parametrize("strategy,name,nodes,encoding", [
    ("exchange", "x", None, "packed"), ("exchange", "x", 2, "packed-lz4"),
    ("model-parallel", "lenet5_s1", None, "packed"), ("model-parallel", "residual", 3,
                                                      "float32")])
def test_exchange_strategies_equal_golden(cluster, zoo, xmodel, strategy, name, nodes,
                                          encoding):
    m = xmodel if name == "x" else zoo[name]
    x = int_inputs(m, 5, seed=3)
    ref = Golden(m).run_int(x)
    whole, singles, placement = arun(_serve(cluster, m, strategy, x, nodes, encoding))
    assert whole.status == "exact"
    np.testing.assert_array_equal(whole.y, ref)
    for i, r in enumerate(singles):
        assert r.status == "exact"
        np.testing.assert_array_equal(r.y, ref[i:i + 1])
    assert len(set(placement.values())) == (nodes or 4)
