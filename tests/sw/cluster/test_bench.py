"""Benchmark pieces that need no cluster: byte attribution to links, kernel counters,
accuracy with missing branches, the run table."""

import socket
import time

import numpy as np

from lcp.golden import Golden
from lcp.sw.cluster import bench as B
from lcp.sw.cluster.netcount import diff_connections, tcp_connections

from .conftest import int_inputs


def test_tcp_counters_see_this_process_bytes():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    before = tcp_connections()
    c.sendall(b"x" * 50_000)
    got = 0
    while got < 50_000:
        got += len(s.recv(65536))
    time.sleep(0.05)
    d, lost = diff_connections(before, tcp_connections())
    key = f"{c.getsockname()[0]}:{c.getsockname()[1]}|{s.getsockname()[0]}:{s.getsockname()[1]}"
    assert d[key][0] == 50_000 and lost == 0
    for x in (c, s, srv):
        x.close()


def test_links_are_attributed_once_and_scheduler_traffic_is_control():
    D, N0, N1, S = "10.0.0.1", "10.0.0.10", "10.0.0.11", "10.0.0.1:8786"
    d0 = {f"{D}:5000|{N0}:7000": [0, 0], f"{D}:5001|{S}": [0, 0]}
    d1 = {f"{D}:5000|{N0}:7000": [3000, 20], f"{D}:5001|{S}": [100, 900]}
    n0 = {"node00": {"address": f"tcp://{N0}:7000", "tcp": {
              f"{N0}:7000|{D}:5000": [0, 0], f"{N0}:6001|{N1}:7100": [0, 0]}},
          "node01": {"address": f"tcp://{N1}:7100", "tcp": {
              f"{N1}:7100|{N0}:6001": [0, 0], f"{N1}:6002|{S}": [0, 0]}}}
    n1 = {"node00": {"address": f"tcp://{N0}:7000", "tcp": {
              f"{N0}:7000|{D}:5000": [20, 3000], f"{N0}:6001|{N1}:7100": [8000, 40]}},
          "node01": {"address": f"tcp://{N1}:7100", "tcp": {
              f"{N1}:7100|{N0}:6001": [40, 8000], f"{N1}:6002|{S}": [500, 50]}}}
    out = B.links_from_tcp(d0, d1, n0, n1)
    assert out["links"] == {"dispatcher<->node00": [3000, 20], "node00<->node01": [8000, 40]}
    assert out["control"] == 1000 + 550


def test_degraded_accuracy_zero_missing_is_plain_accuracy(zoo):
    m = zoo["lenet5_s4"]
    x = (int_inputs(m, 50) / 255.0).astype(np.float32)
    labels = Golden(m).run(x).argmax(1)                 # the model's own answers: 100 %
    acc = B.degraded_accuracy(m, x, labels)
    assert list(acc) == [0, 1, 2, 3]
    assert acc[0] == 1.0 and all(0.0 <= v <= 1.0 for v in acc.values())


def test_default_runs_cover_every_strategy_with_every_encoding():
    from lcp.sw.cluster.wire import ENCODINGS
    runs = B.default_runs(8)
    from lcp.sw.cluster.dispatcher import STRATEGIES
    assert {r.strategy for r in runs} == set(STRATEGIES)
    assert len({r.label for r in runs}) == len(runs)
    groups = {}
    for r in runs:
        groups.setdefault(r.group, set()).add(r.encoding)
    for g, encs in groups.items():
        assert encs == (set(ENCODINGS) if not g.endswith("@1") else {"packed"}), g
    assert {"pipeline", "data", "lcp-split8", "lcp-split4"} <= set(groups)
    assert all(r.stages == 8 for r in runs if r.strategy == "pipeline")
    assert {r.nodes for r in runs if r.strategy == "model-parallel"} == {4, 8}


def test_compiled_models_are_built_once_and_reloaded_equal(zoo, tmp_path):
    m = zoo["lenet_fc_s2"]
    calls = []

    def make():
        calls.append(1)
        return m

    first = B.compile_cached(tmp_path, "lenet_fc_s2", make)
    again = B.compile_cached(tmp_path, "lenet_fc_s2", make)
    assert calls == [1]                                  # the second call loads the entry
    assert again.digest() == first.digest() == m.digest()
    xq = int_inputs(m, 4)
    assert np.array_equal(Golden(again).run_int(xq), Golden(m).run_int(xq))
