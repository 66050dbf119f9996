"""Calibrate the cluster simulator on this machine and check it against measurements.

* Compute: every layer of the calibration models is run alone by the golden executor
  (:func:`lcp.golden.run_layer`, batch 1, best of ``repeats``), and each op kind gets a fit
  ``seconds = fixed_s + per_unit_s * work`` (non-negative least squares; work = the layer's MACs
  from the IR counters, or its output elements for an op without MACs).
* The PYNQ engine: its cost per op is its cycle model (:mod:`lcp.hw`) at the clock, so a node
  with ``--accel-backend pynq`` is described by cycles, not by a fit (:mod:`.engine`).
* A node runs the layers slower than the timing loop (its compute runs in a thread beside Dask's
  event loop): two reference models (few wide layers, many narrow ones) are run whole on a node
  (``lcp_run``, the node's own compute time), and ``t = slowdown * fitted + layers *
  per_layer`` is solved for the two factors (:func:`node_factors`); these two configurations
  calibrate, the others check.
* Links (:func:`probe_links`, run where the dispatcher runs): round trip of an empty
  ``lcp_probe`` call to every node (two messages), of one carrying 64 KiB and 256 KiB (the
  slope is the bandwidth), TCP payload bytes per empty call (framing bytes per message, from
  the kernel's counters), and the extra round trip of a real ``lcp_run`` call over the node's
  own compute time (decoding, encoding, the executor hop), folded into the per-message latency.

:func:`check_rows` simulates the configurations a benchmark measured (``bench.json`` rows) with
the calibration and sets predicted and measured p50 latency and throughput side by side.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from lcp.golden import run_layer
from lcp.ir import IRError, Model

from .netcount import diff_connections, tcp_connections
from .rpc import FastRPC
from .simplan import DISPATCHER, ClusterSpec, LinkSpec, NodeSpec, OpCost, build_plan, layer_work
from .simulator import summarize

__all__ = ["time_layers", "fit_costs", "calibrate_compute", "probe_links", "cluster_from",
           "check_rows", "node_factors", "factors_from_rows",
           "CALIBRATION_RUNS"]


def time_layers(model: Model, repeats: int = 5, batch: int = 1, seed: int = 0) -> list[dict]:
    """``{"op", "work", "s"}`` of every layer of ``model`` run alone by the golden executor
    (best of ``repeats``) on inputs inside each tensor's range."""
    rng = np.random.default_rng(seed)
    env = {}
    out = []

    def tensor(name):
        if name not in env:
            s = model.tensors[name]
            env[name] = rng.integers(s.lo, s.hi + 1, (batch, *s.shape), dtype=np.int64)
        return env[name]

    for _, layer in [*model.schedule(), *[(None, l) for l in model.merge.layers]]:
        xs = [tensor(t) for t in layer.inputs]
        specs = [model.tensors[t] for t in layer.inputs]
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            y = run_layer(layer, xs, specs)
            best = min(best, time.perf_counter() - t0)
        env[layer.output] = np.clip(y, model.tensors[layer.output].lo,
                                    model.tensors[layer.output].hi)
        out.append({"op": layer.op, "work": layer_work(model, layer) * batch, "s": best})
    return out


def fit_costs(samples: list[dict]) -> dict[str, OpCost]:
    """Per op kind, ``fixed_s`` and ``per_unit_s`` >= 0 by least squares; ``"*"`` fits all."""
    def fit(rows):
        w = np.array([r["work"] for r in rows], float)
        s = np.array([r["s"] for r in rows], float)
        if len(set(w)) < 2:
            return OpCost(0.0, float(s.sum() / max(w.sum(), 1)))
        # least squares with both coefficients >= 0 (two-variable active set)
        a = np.vstack([np.ones_like(w), w]).T
        (f, p), *_ = np.linalg.lstsq(a, s, rcond=None)
        if f < 0:
            f, p = 0.0, float(s @ w / (w @ w))
        if p < 0:
            f, p = float(s.mean()), 0.0
        return OpCost(float(f), float(p))

    ops = sorted({r["op"] for r in samples})
    costs = {op: fit([r for r in samples if r["op"] == op]) for op in ops}
    costs["*"] = fit(samples)
    return costs


def calibrate_compute(models: list[Model], repeats: int = 5) -> dict:
    """Fit the golden executor's cost per op on ``models``; also the fit's error on each
    model's whole run (sum of predicted layer times over the sum of measured ones)."""
    samples = [s for m in models for s in time_layers(m, repeats)]
    costs = fit_costs(samples)
    per_model = {}
    for m in models:
        meas = time_layers(m, repeats, seed=1)
        pred = sum(costs.get(r["op"], costs["*"]).seconds(r["work"]) for r in meas)
        per_model[m.name] = {"measured_ms": 1e3 * sum(r["s"] for r in meas),
                             "fitted_ms": 1e3 * pred}
    return {"costs": {k: vars(v) for k, v in costs.items()}, "layers": len(samples),
            "models": per_model}


def node_factors(comp: dict, models: list[Model], t_node: list[float]) -> tuple[float, float]:
    """``(slowdown, per_layer_s)`` >= 0 with ``t_node[i] = slowdown * fitted_i + per_layer_s *
    layers_i`` for the models' fitted costs (``comp = calibrate_compute(...)``)."""
    f = np.array([comp["models"][m.name]["fitted_ms"] / 1e3 for m in models])
    n = np.array([sum(1 for _ in m.layers()) for m in models], float)
    t = np.asarray(t_node, float)
    (a, b), *_ = np.linalg.lstsq(np.vstack([f, n]).T, t, rcond=None)
    if b < 0:
        a, b = float(t @ f / (f @ f)), 0.0
    if a < 0:
        a, b = 0.0, float(t @ n / (n @ n))
    return float(a), float(b)


#: Benchmark runs that calibrate the node factors in :func:`factors_from_rows` (one node, the
#: whole model: the original (few wide layers) and split8 (many narrow ones)).
CALIBRATION_RUNS = {"original@1": "original", "lcp8@1": "split8"}


def factors_from_rows(rows: list[dict], models: dict[str, Model], comp: dict,
                      cluster: ClusterSpec) -> tuple[float, float]:
    """:func:`node_factors` from the benchmark's own one-node runs (:data:`CALIBRATION_RUNS`,
    measured in the same session as the runs they help predict): a run's node compute is its
    p50 minus what the simulator gives it with free compute (its messages)."""
    free = {k: OpCost() for k in comp["costs"]}
    cl0 = ClusterSpec(NodeSpec(DISPATCHER, 1, None, free),
                      [NodeSpec(n.name, 1, None, free) for n in cluster.nodes],
                      cluster.links, cluster.medium, cluster.host_cores)
    ms, ts = [], []
    for r in rows:
        if r["label"] in CALIBRATION_RUNS:
            m = models[CALIBRATION_RUNS[r["label"]]]
            comm = summarize(build_plan(m, "single", cl0), cl0, requests=3,
                             concurrency=1)["latency_ms"]["p50"]
            ms.append(m)
            ts.append(max(0.0, (r["latency_ms"]["p50"] - comm) / 1e3))
    if len(ms) != 2:
        raise IRError(f"the benchmark rows lack the calibration runs {sorted(CALIBRATION_RUNS)}")
    return node_factors(comp, ms, ts)


async def probe_links(client, rounds: int = 15) -> dict:
    """Link parameters of every worker seen from this process (see the module docstring)."""
    pool = FastRPC(getattr(client, "connection_args", None))
    ident = await client.scheduler.identity()
    out = {}
    try:
        for addr, w in sorted(ident["workers"].items(), key=lambda kv: kv[1].get("name", "")):
            async def rtt(data: bytes, n: int = rounds) -> float:
                ts = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = await asyncio.wait_for(pool.call(addr, "lcp_probe", data=data), 30)
                    ts.append(time.perf_counter() - t0)
                    if not r or r.get("n") != len(data):
                        raise IRError(f"{addr}: lcp_probe did not answer (node plugin missing)")
                return float(np.median(ts))

            await rtt(b"", 3)                                       # connect, warm up
            c0 = tcp_connections()
            small = await rtt(b"")
            d, _ = diff_connections(c0, tcp_connections())
            per_call = sum(s + r for s, r in d.values()) / rounds
            sizes = [64 * 1024, 256 * 1024]
            big = [await rtt(bytes(n), 5) for n in sizes]
            slope = (big[1] - big[0]) / (sizes[1] - sizes[0])      # s per byte
            out[str(w.get("name", addr))] = {
                "rtt_s": small, "bandwidth_bps": 8.0 / max(slope, 1e-12),
                "overhead_bytes": int(round(per_call / 2))}
    finally:
        await pool.close()
    return out


def cluster_from(calib: dict, nodes: int, *, bandwidth_bps: float | None = None,
                 host_cores: int | None = None, call_overhead_s: float = 0.0,
                 slowdown: float = 1.0, layer_overhead_s: float = 0.0) -> ClusterSpec:
    """A :class:`ClusterSpec` of ``nodes`` identical one-core nodes from a calibration: the
    golden costs (times ``slowdown``, plus ``layer_overhead_s`` per layer: how a node runs
    the layers, :func:`node_factors`), the links' median round trip (half per message, plus half the call
    overhead), bandwidth and framing."""
    costs = {k: OpCost(v["fixed_s"] * slowdown + layer_overhead_s, v["per_unit_s"] * slowdown)
             for k, v in calib["compute"]["costs"].items()}
    links = list(calib["links"].values())
    rtt = float(np.median([l["rtt_s"] for l in links]))
    bw = bandwidth_bps or float(np.median([l["bandwidth_bps"] for l in links]))
    ovh = int(np.median([l["overhead_bytes"] for l in links]))
    lat = (rtt + call_overhead_s) / 2
    return ClusterSpec(NodeSpec(DISPATCHER, 1, None, costs),
                       [NodeSpec(f"node{i:02d}", 1, None, costs) for i in range(nodes)],
                       {"*": LinkSpec(bw, lat, ovh)}, "switched", host_cores)


def check_rows(rows: list[dict], models: dict[str, Model], cluster: ClusterSpec, *,
               concurrency: int = 8) -> list[dict]:
    """Predicted vs measured p50 latency and throughput of benchmark rows (``bench.json``)."""
    out = []
    for r in rows:
        m = models[r["variant"]]
        try:
            plan = build_plan(m, r["strategy"], cluster, encoding=r["encoding"],
                              batch=r["batch"], nodes=r["nodes_requested"])
        except IRError as e:
            out.append({"label": r["label"], "error": str(e)})
            continue
        s = summarize(plan, cluster, concurrency=concurrency)
        lat_m, lat_p = r["latency_ms"]["p50"], s["latency_ms"]["p50"]
        thr_m, thr_p = r["throughput_images_s"], s["throughput_images_s"]
        out.append({"label": r["label"], "calibration": r["label"] in CALIBRATION_RUNS,
                    "model": m.name, "strategy": r["strategy"],
                    "nodes": r["nodes_requested"], "batch": r["batch"],
                    "latency_p50_ms": {"measured": lat_m, "predicted": lat_p,
                                       "error": lat_p / lat_m - 1},
                    "throughput_images_s": {"measured": thr_m, "predicted": thr_p,
                                            "error": thr_p / thr_m - 1},
                    "bytes_per_inference": {"measured_tcp": r["tcp_bytes_per_inference"]["total"],
                                            "predicted": s["bytes_per_inference"]},
                    "placement_measured": r.get("placement"), "placement_predicted":
                        s["placement"]})
    return out
