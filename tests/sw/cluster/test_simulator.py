"""The cluster simulator: task graphs from the IR, event timing checked against hand-computed
timelines, every strategy's traffic against the IR's tensor sizes, HiDP's choice, the CLI."""

import json

import numpy as np
import pytest

from lcp.counters import count, count_layer
from lcp.ir import IRError

from lcp.sw.cluster import wire
from lcp.sw.cluster.calibrate import fit_costs, time_layers
from lcp.sw.cluster.paper import rpi_cluster
from lcp.sw.cluster.parts import chain
from lcp.sw.cluster.simplan import (DISPATCHER, ClusterSpec, LinkSpec, NodeSpec, OpCost,
                                    build_plan, layer_work, wire_bytes)
from lcp.sw.cluster.simulator import plot_timeline, simulate, summarize

PER_MAC = 1e-8            # 100 MMAC/s
FIXED = 1e-4              # per layer


def make_cluster(n=4, bps=8e6, lat=1e-3, ovh=50, medium="switched", host_cores=None,
                 loss=0.0):
    costs = {"*": OpCost(FIXED, PER_MAC)}
    return ClusterSpec(NodeSpec(DISPATCHER, 1, None, costs),
                       [NodeSpec(f"n{i}", 1, None, costs) for i in range(n)],
                       {"*": LinkSpec(bps, lat, ovh, loss)}, medium, host_cores)


def cpu_s(model, layers, share=1.0):
    return sum(FIXED + PER_MAC * layer_work(model, l) * share for l in layers)


def msg_s(model, tensor, bps=8e6, lat=1e-3, ovh=50, share=1.0):
    return (wire_bytes(model.tensors[tensor], "packed", 1, share) + ovh) * 8 / bps + lat


def test_single_latency_is_the_sum_of_its_steps(zoo):
    m = zoo["lenet5_s1"]
    cl = make_cluster()
    r = simulate(build_plan(m, "single", cl), cl, requests=3)
    want = (msg_s(m, m.input.name) + cpu_s(m, list(m.layers())) + msg_s(m, m.output))
    assert r.latency_s == pytest.approx([want] * 3, rel=1e-9)
    # wire bytes are the wire format's: the IR's bit-packed size below 8 bits, whole words
    # above (the wide integer output)
    assert wire_bytes(m.tensors[m.input.name], "packed") == m.tensors[m.input.name].nbytes
    out = m.tensors[m.output]
    y = np.full((1, *out.shape), out.lo, dtype=np.int64)
    assert r.link_bytes == {f"{DISPATCHER}->n0": 3 * (m.tensors[m.input.name].nbytes + 50),
                            f"n0->{DISPATCHER}": 3 * (len(wire.encode(y, out)["d"]) + 50)}


def test_throughput_is_set_by_the_bottleneck(zoo):
    m = zoo["lenet5_s1"]
    cl = make_cluster(bps=1e9, lat=0.0)
    single = simulate(build_plan(m, "single", cl), cl, requests=40, concurrency=8)
    assert single.throughput == pytest.approx(1 / cpu_s(m, list(m.layers())), rel=0.02)
    # a pipeline over 2 nodes: its slowest stage sets the rate, above one node's
    pipe = simulate(build_plan(m, "pipeline", cl, nodes=2), cl, requests=40, concurrency=8)
    assert single.throughput < pipe.throughput
    busiest = max(pipe.busy_s.values()) / 40
    assert pipe.throughput == pytest.approx(1 / busiest, rel=0.05)
    # all devices on one shared core: no parallelism left
    shared = make_cluster(bps=1e9, lat=0.0, host_cores=1)
    p1 = simulate(build_plan(m, "pipeline", shared, nodes=2), shared, requests=40,
                  concurrency=8)
    assert p1.throughput == pytest.approx(single.throughput, rel=0.02)


def test_lcp_sends_the_input_once_per_node_and_merges_on_the_dispatcher(zoo):
    m = zoo["cifarnet_s8"]
    cl = make_cluster(n=4)
    plan = build_plan(m, "lcp", cl)
    assert plan.placement == {f"n{i}": [f"branch{i}", f"branch{i + 4}"] for i in range(4)}
    r = simulate(plan, cl, requests=1)
    inp = m.tensors[m.input.name].nbytes
    for i in range(4):
        assert r.link_bytes[f"{DISPATCHER}->n{i}"] == inp + 50
        outs = sum(wire_bytes(m.tensors[m.branches[b].output], "packed") for b in (i, i + 4))
        assert r.link_bytes[f"n{i}->{DISPATCHER}"] == outs + 50          # one reply
        assert r.busy_s[f"n{i}"] == pytest.approx(
            cpu_s(m, m.branches[i].layers) + cpu_s(m, m.branches[i + 4].layers))
    assert r.busy_s[DISPATCHER] == pytest.approx(cpu_s(m, m.merge.layers))
    # on fast links 8 nodes are faster than 4; on these 8 Mbit/s links the dispatcher's
    # uplink sends the input 8 times one after another, and 8 nodes are slower
    fast4, fast8 = make_cluster(n=4, bps=1e9), make_cluster(n=8, bps=1e9)
    assert (simulate(build_plan(m, "lcp", fast8), fast8).latency_s[0]
            < simulate(build_plan(m, "lcp", fast4), fast4).latency_s[0])
    cl8 = make_cluster(n=8)
    r8 = simulate(build_plan(m, "lcp", cl8), cl8, requests=1)
    assert r8.latency_s[0] > r.latency_s[0]


def test_model_parallel_all_gathers_every_weighted_layer(zoo):
    m = zoo["cifarnet_s1"]
    n = 4
    cl = make_cluster(n=n)
    plan = build_plan(m, "model-parallel", cl)
    r = simulate(plan, cl, requests=1)
    layers = chain(m)
    groups = []
    for l in layers:
        if count_layer(m, l).params or not groups:
            groups.append([l])
        else:
            groups[-1].append(l)
    gathered = sum(n * (n - 1) * (wire_bytes(m.tensors[g[-1].output], "packed", 1, 1 / n) + 50)
                   for g in groups[:-1])
    node_to_node = sum(v for k, v in r.link_bytes.items() if DISPATCHER not in k)
    assert node_to_node == gathered
    assert f"{len(groups) - 1} all-gathers" in plan.notes[0]
    for i in range(n):                       # every node does 1/n of every layer's work
        assert r.busy_s[f"n{i}"] == pytest.approx(cpu_s(m, layers, 1 / n))
    # on one shared medium the gathers queue: slower than on switched links
    sh = make_cluster(n=n, medium="shared")
    assert simulate(build_plan(m, "model-parallel", sh), sh).latency_s[0] > r.latency_s[0]
    with pytest.raises(IRError, match="single-branch"):
        build_plan(zoo["cifarnet_s8"], "model-parallel", cl)
    # broadcast on the shared medium: the input once, each slice once per gather
    bc = make_cluster(n=n, medium="shared")
    bc.broadcast = True
    rb = simulate(build_plan(m, "model-parallel", bc), bc, requests=1)
    assert rb.link_bytes[f"{DISPATCHER}->*"] == m.tensors[m.input.name].nbytes + 50
    assert sum(v for k, v in rb.link_bytes.items() if not k.startswith(DISPATCHER)) == \
        gathered // (n - 1) + sum(v for k, v in r.link_bytes.items()
                                  if k.endswith(f"->{DISPATCHER}"))
    assert rb.latency_s[0] < simulate(build_plan(m, "model-parallel", sh), sh).latency_s[0]
    with pytest.raises(IRError, match="broadcast needs the shared medium"):
        make_cluster(n=2).__class__(bc.dispatcher, bc.nodes, bc.links, "switched", None, True)


def test_data_splits_the_batch_and_hidp_picks_the_fastest_candidate(zoo):
    m = zoo["lenet5_s1"]
    cl = make_cluster(n=4, bps=1e9, lat=0.0)
    d = simulate(build_plan(m, "data", cl, batch=8), cl, requests=1)
    assert {k: v for k, v in d.busy_s.items() if v} == pytest.approx(
        {f"n{i}": sum(FIXED + PER_MAC * layer_work(m, l) * 2 for l in m.layers())
         for i in range(4)})
    slow = make_cluster(n=4, bps=1e5, lat=0.05)
    plan = build_plan(m, "hidp", slow)
    assert plan.placement["kind"] == "whole"            # slow links: do not cut the model
    ests = {k: float(v) for k, v in
            (kv.rsplit(" ", 1) for kv in plan.notes[0].split("(estimates, ms: ")[1]
             .rstrip(")").split(", "))}
    assert min(ests, key=ests.get) == "whole"
    s8 = zoo["cifarnet_s8"]
    p8 = build_plan(s8, "hidp", cl)
    lat = simulate(p8, cl, requests=1).latency_s[0]
    assert lat <= simulate(build_plan(s8, "lcp", cl), cl, requests=1).latency_s[0] + 1e-12


def test_exchange_plans_send_branch_tensors_between_nodes(tmp_path):
    from lcp import compile_onnx
    from tests.compiler.nets import randomize
    from tests.compiler.test_exchange import ExchangeNet, export_exchange

    m = compile_onnx(export_exchange(randomize(ExchangeNet(S=2, k=2), 0), tmp_path / "x.onnx"))
    assert m.exchanges
    cl = make_cluster(n=2)
    r = simulate(build_plan(m, "exchange", cl), cl, requests=1)
    for t, src, dst in m.exchanges:
        key = f"n{src}->n{dst}"
        assert r.link_bytes[key] >= m.tensors[t].nbytes + 50
    # on one node nothing crosses between nodes, and the result is the lcp plan's
    one = make_cluster(n=1)
    r1 = simulate(build_plan(m, "exchange", one), one, requests=1)
    assert not [k for k in r1.link_bytes if DISPATCHER not in k]


def test_exchange_is_refused_without_exchange_points_and_bad_input(zoo):
    cl = make_cluster()
    with pytest.raises(IRError, match="exchange points"):
        build_plan(zoo["lenet5_s4"], "exchange", cl)
    with pytest.raises(IRError, match="unknown strategy"):
        build_plan(zoo["lenet5_s4"], "nope", cl)
    with pytest.raises(IRError, match="sizes only"):
        build_plan(zoo["lenet5_s4"], "lcp", cl, encoding="zfp-lz4")


def test_loss_costs_a_timeout_per_lost_message(zoo):
    m = zoo["lenet5_s1"]
    clean = simulate(build_plan(m, "single", make_cluster()), make_cluster(), requests=50)
    lossy_cl = make_cluster(loss=0.3)
    lossy = simulate(build_plan(m, "single", lossy_cl), lossy_cl, requests=50, seed=1)
    extra = np.array(lossy.latency_s) - np.array(clean.latency_s)
    assert extra.min() >= -1e-12 and extra.max() >= 0.2
    assert np.allclose(np.round(extra / 0.2) * 0.2, extra, atol=0.01)   # whole timeouts


def test_paper_device_reproduces_its_single_latency_by_construction(zoo):
    m = zoo["cifarnet_s1"]
    cl = rpi_cluster(m, 1000.0)
    plan = build_plan(m, "single", cl, encoding="float32")
    r = simulate(plan, cl, requests=1)
    inp = wire_bytes(m.tensors[m.input.name], "float32")
    assert inp == 4 * int(np.prod(m.input.shape))
    comm = (inp + wire_bytes(m.tensors[m.output], "float32")) * 8 / 62e6 + 2 * 0.009
    assert r.latency_s[0] == pytest.approx(1.0 + comm, rel=1e-9)
    assert r.busy_s["pi0"] == pytest.approx(1.0, rel=1e-9)
    assert count(m).macs > 0


def test_fit_costs_recovers_a_linear_cost_and_time_layers_covers_every_layer(zoo):
    rows = [{"op": "conv", "work": w, "s": 2e-4 + 3e-9 * w} for w in (1e4, 5e4, 2e5)]
    rows += [{"op": "relu", "work": w, "s": 1e-9 * w} for w in (100, 1000)]
    c = fit_costs(rows)
    assert c["conv"].fixed_s == pytest.approx(2e-4) and c["conv"].per_unit_s == pytest.approx(3e-9)
    assert c["relu"].fixed_s == pytest.approx(0, abs=1e-12)
    m = zoo["lenet5_s4"]
    t = time_layers(m, repeats=1)
    assert [r["op"] for r in t] == [l.op for _, l in m.schedule()] + [l.op for l in m.merge.layers]
    assert all(r["s"] > 0 for r in t)


def test_summary_json_and_timeline(zoo, tmp_path):
    m = zoo["cifarnet_s8"]
    cl = make_cluster(n=8)
    plan = build_plan(m, "lcp", cl)
    s = summarize(plan, cl, requests=5, concurrency=4)
    json.dumps(s)
    assert s["latency_ms"]["p50"] > 0 and s["throughput_images_s"] > 0
    assert s["bytes_per_inference"] == pytest.approx(sum(s["link_bytes_per_inference"].values()))
    png = plot_timeline(plan, cl, tmp_path / "t.png")
    assert png.stat().st_size > 1000
    back = ClusterSpec.from_json(json.loads(json.dumps(cl.to_json())))
    assert simulate(build_plan(m, "lcp", back), back).latency_s == \
        simulate(plan, cl).latency_s


def test_cluster_from_a_calibration_and_the_check_rows(zoo):
    from lcp.sw.cluster.calibrate import check_rows, cluster_from

    m = zoo["lenet5_s1"]
    cal = {"compute": {"costs": {"*": {"fixed_s": FIXED, "per_unit_s": PER_MAC}}},
           "links": {"node00": {"rtt_s": 2e-3, "bandwidth_bps": 8e6, "overhead_bytes": 50},
                     "node01": {"rtt_s": 4e-3, "bandwidth_bps": 8e6, "overhead_bytes": 50}}}
    cl = cluster_from(cal, 2, host_cores=2, call_overhead_s=1e-3, slowdown=2.0)
    assert cl.link("node01").latency_s == pytest.approx((3e-3 + 1e-3) / 2)
    assert cl.nodes[1].costs["*"].per_unit_s == pytest.approx(2 * PER_MAC)
    pred = simulate(build_plan(m, "single", cl), cl).latency_s[0]
    row = {"label": "original@1", "variant": "original", "strategy": "single",
           "encoding": "packed", "batch": 1, "nodes_requested": 1,
           "latency_ms": {"p50": 2e3 * pred}, "throughput_images_s": 10.0,
           "tcp_bytes_per_inference": {"total": 1000.0}}
    out, = check_rows([row], {"original": m}, cl, concurrency=2)
    assert out["latency_p50_ms"]["predicted"] == pytest.approx(1e3 * pred)
    assert out["latency_p50_ms"]["error"] == pytest.approx(-0.5)
    bad, = check_rows([{**row, "strategy": "pipeline", "variant": "s4"}],
                      {"s4": zoo["lenet5_s4"]}, cl)
    assert "single-branch" in bad["error"]


def test_node_factors_solve_slowdown_and_per_layer_overhead(zoo):
    from lcp.sw.cluster.calibrate import node_factors

    ms = [zoo["lenet5_s1"], zoo["lenet5_s4"]]
    comp = {"models": {ms[0].name: {"fitted_ms": 10.0}, ms[1].name: {"fitted_ms": 4.0}}}
    n = [sum(1 for _ in m.layers()) for m in ms]
    t = [1.5 * 0.010 + 2e-4 * n[0], 1.5 * 0.004 + 2e-4 * n[1]]
    a, b = node_factors(comp, ms, t)
    assert a == pytest.approx(1.5) and b == pytest.approx(2e-4)


def test_engine_node_costs_come_from_the_hw_cycle_model(zoo):
    """A PYNQ engine node's costs are the hardware cycle model's: the whole model on one
    engine over free links takes the cycle at which its last layer completes, at the PL
    clock."""
    from lcp.hw.chooser import choose
    from lcp.hw.graph import lower_core
    from lcp.hw.pynq_regs import CLOCK_MHZ
    from lcp.sw.cluster.engine import engine_node

    m = zoo["lenet_fc_s2"]
    g = lower_core(m, choose(m, budget="xc7z020", scope="core").folding)
    t = g.lowered_timing or g.timing()
    free = {"*": LinkSpec(1e18, 0.0, 0)}
    disp = NodeSpec(DISPATCHER, 1, None, {"*": OpCost()})
    cl = ClusterSpec(disp, [engine_node("fpga0", m, "xc7z020")], free)
    lat = simulate(build_plan(m, "single", cl), cl, requests=1).latency_s[0]
    assert lat == pytest.approx(max(t.layer_done.values()) / (CLOCK_MHZ * 1e6), rel=1e-6)
    assert max(t.layer_done.values()) <= t.latency
