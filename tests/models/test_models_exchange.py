"""The exchange-point family and its search: candidate points, model parallelism's policy,
export with the partition, compiled bytes == the family's byte formula, golden == torch,
training and reloading, the supernet and the Pareto front."""

import json

import numpy as np
import onnx
import pytest
import torch

import lcp
from lcp.counters import count
from lcp.golden import Golden
from lcp.models.exchange import (PARTITION_KEY, ExchangePolicy, all_points, build_exchange,
                                 candidate_points, exchange_bytes)
from lcp.models.export import calibrate, example_input, export_qonnx
from lcp.models.search import SearchConfig, build_supernet, pareto_front, search
from lcp.models.train import TrainConfig, load_run, train


def test_points_and_policies():
    assert candidate_points("lenet5") == [0, 1, 2, 3, 4]
    assert candidate_points("lenet_fc") == [0]
    assert all_points("lenet5").text() == "1:all:b4+3:all:b4+4:all:b4"
    p = ExchangePolicy.parse("4:k5:b3+0:k1:b2")
    assert p.text() == "0:k1:b2+4:k5:b3" and ExchangePolicy.parse("").points == ()
    with pytest.raises(ValueError, match="no exchange point after layer 5"):
        build_exchange("lenet5", "5:all:b4")
    with pytest.raises(ValueError, match="split >= 2"):
        build_exchange("lenet5", "3:all:b4", split=1)
    with pytest.raises(ValueError, match="not AFTER"):
        ExchangePolicy.parse("3:x:b4")
    # bytes: 4 senders x 3 receivers x one 4x5x5 tensor (1 channel of 2 bits: 25 values)
    assert exchange_bytes("lenet5", "3:k1:b2") == 12 * 7
    assert exchange_bytes("lenet5", "") == 0


@pytest.mark.parametrize("arch,policy", [("lenet5", "1:k1:b2+4:all:b3"),
                                         ("lenet_fc", "0:k7:b2"),
                                         ("lenet5", "1:all:b4+3:all:b4+4:all:b4")])
def test_exchange_net_compiles_exactly(tmp_path, arch, policy):
    torch.manual_seed(0)
    net = build_exchange(arch, policy, split=4)
    calibrate(net, [example_input(net.in_shape, batch=16, seed=k) for k in range(3)])
    path = export_qonnx(net, tmp_path / "x.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert set(json.loads(meta[PARTITION_KEY])["weights"].values()) == {0, 1, 2, 3}
    m = lcp.compile_onnx(path)
    assert len(m.branches) == 4 and len(m.exchanges) == 12 * len(ExchangePolicy.parse(policy)
                                                                  .points)
    plain = m.tensors["input"].nbytes * 4 + sum(m.tensors[b.output].nbytes for b in m.branches)
    assert count(m).traffic_bytes - plain == exchange_bytes(arch, policy, split=4)
    x = example_input(net.in_shape, batch=16, seed=7)
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(Golden(m).run(x.numpy()), ref, rtol=0, atol=1e-5)


def test_plain_lcp_export_has_no_partition(tmp_path):
    net = build_exchange("lenet_fc", "", split=2)
    calibrate(net, [example_input(net.in_shape, batch=8)])
    path = export_qonnx(net, tmp_path / "p.onnx")
    assert PARTITION_KEY not in {p.key for p in onnx.load(str(path)).metadata_props}


def test_train_and_reload_an_exchange_net(tmp_path):
    r = train("lenet_fc", "mnist", split=2, epochs=1, train_subset=128, exchange="0:k3:b2",
              out_dir=tmp_path / "run", progress=False)
    assert r.metrics["model"]["exchange"] == "0:k3:b2"
    model, _ = load_run(r.out_dir)
    x = example_input((1, 28, 28), batch=8, seed=3)
    with torch.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), r.model(x).numpy())
    m = lcp.compile_onnx(r.out_dir / "model.onnx")
    assert len(m.exchanges) == 2
    # plain runs keep their cache keys: no exchange field in their config
    assert "exchange" not in TrainConfig().to_dict()
    assert "exchange" in TrainConfig(exchange="0:k3:b2").to_dict()


def test_supernet_policies_and_pareto_front():
    cfg = SearchConfig(split=4)
    net = build_supernet(cfg, 10, (1, 28, 28)).eval()
    x = example_input((1, 28, 28), batch=4)
    outs = {}
    for t in ["", "3:k1:b2", all_points("lenet5").text()]:
        net.set_policy(ExchangePolicy.parse(t))
        with torch.no_grad():
            outs[t] = net(x)
        assert outs[t].shape == (4, 10)
    rows = [{"bytes": 0, "val_accuracy": 0.9}, {"bytes": 10, "val_accuracy": 0.85},
            {"bytes": 20, "val_accuracy": 0.95}, {"bytes": 30, "val_accuracy": 0.95}]
    assert [r["bytes"] for r in pareto_front(rows)] == [0, 20]


def test_search_end_to_end_small(tmp_path):
    cfg = SearchConfig(arch="lenet_fc", split=2, supernet_epochs=1, samples=2, val=64,
                       train_subset=128, retrain=1, retrain_epochs=1)
    res = search(cfg, tmp_path / "s", log=lambda m: None, runs=tmp_path / "runs")
    assert (tmp_path / "s" / "pareto.png").is_file()
    saved = json.loads((tmp_path / "s" / "pareto.json").read_text())
    assert saved["chosen"] == res["chosen"] and len(res["chosen"]) <= 1
    front = {r["policy"] for r in res["candidates"] if r["pareto"]}
    assert set(res["chosen"]) <= front and "" in {r["policy"] for r in res["candidates"]}
    assert set(res["retrained"]) == {"", res["model_parallel"], *res["chosen"]}
    for t, v in res["retrained"].items():
        assert (tmp_path / "runs" / v["run"] / "model.onnx").is_file()
        assert v["bytes"] == exchange_bytes("lenet_fc", t, split=2)
    assert any(r["pareto"] for r in res["candidates"])
