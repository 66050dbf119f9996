"""One run of the cluster benchmark (:func:`measure_run`): fresh workers, a dispatcher with the
run's strategy and encoding, warm-up, sequential requests (latency, bytes per link), concurrent
requests (throughput), memory per node, and every answer checked against golden."""

from __future__ import annotations

import math
import time

import numpy as np

from ..dispatcher import Dispatcher
from ..netcount import link_counters, tcp_connections
from .accounting import links_from_tcp, veth_delta
from .families import Family
from .runs import BenchConfig, RunSpec

__all__ = ["measure_run"]


def _pct(v, q):
    return float(np.percentile(v, q)) if len(v) else math.nan


async def measure_run(client, fam: Family, spec: RunSpec, cfg: BenchConfig, refs: dict,
                      idle: dict | None, log) -> dict:
    model = fam.models[spec.variant]
    n_total = len((await client.scheduler.identity())["workers"])
    await client.restart()
    await client.wait_for_workers(n_total, timeout=cfg.timeout)
    xq_all = refs[spec.variant]["xq"]
    yref = refs[spec.variant]["y"]
    b = spec.batch
    n_batches = len(xq_all) // b
    idx = [slice(i * b, (i + 1) * b) for i in range(n_batches)]
    row = {"label": spec.label, "group": spec.group or spec.label, "family": fam.name,
           "model": model.name, "variant": spec.variant, "strategy": spec.strategy, "encoding": spec.encoding,
           "batch": b, "nodes_requested": spec.nodes}
    t_setup = time.perf_counter()
    async with Dispatcher(client, model, spec.strategy, nodes=spec.nodes,
                          encoding=spec.encoding, stages=spec.stages, timeout=cfg.timeout,
                          call_timeout=cfg.timeout / 2, delay_ms=cfg.delay_ms,
                          max_inflight=cfg.concurrency) as d:
        row["setup_s"] = time.perf_counter() - t_setup
        row["placement"] = d.placement
        row["plan"] = {k: v for k, v in d.plan.items() if k == "hidp"}
        row["nodes_used"] = len({a for _, _, a in d.slots})
        wrong = 0
        statuses: dict[str, int] = {}

        def check(r, sl):
            nonlocal wrong
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.y is None or not np.array_equal(r.y, yref[sl]):
                wrong += 1

        for i in range(3):                               # warm up connections and caches
            check(await d.infer(xq_all[idx[i % n_batches]]), idx[i % n_batches])
        # latency and bytes: sequential requests
        n0 = await d.node_stats(tcp=True)
        d0 = tcp_connections()
        v0 = link_counters(cfg.links["hub"], list(cfg.links["devices"].values())) \
            if cfg.links else None
        t0 = time.perf_counter()
        lat = []
        for i in range(cfg.requests):
            sl = idx[i % n_batches]
            r = await d.infer(xq_all[sl])
            lat.append(r.latency)
            check(r, sl)
        window = time.perf_counter() - t0
        v1 = link_counters(cfg.links["hub"], list(cfg.links["devices"].values())) \
            if cfg.links else None
        d1 = tcp_connections()
        n1 = await d.node_stats(tcp=True)
        images = cfg.requests * b
        tcp = links_from_tcp(d0, d1, n0, n1)
        row["latency_ms"] = {"p50": 1e3 * _pct(lat, 50), "p95": 1e3 * _pct(lat, 95),
                             "mean": 1e3 * float(np.mean(lat))}
        row["latency_per_image_ms"] = row["latency_ms"]["p50"] / b
        per_link = {k: {"a_to_b": v[0] / images, "b_to_a": v[1] / images}
                    for k, v in sorted(tcp["links"].items())}
        row["tcp_bytes_per_inference"] = {
            "total": sum(v[0] + v[1] for v in tcp["links"].values()) / images,
            "max_link": max((v[0] + v[1] for v in tcp["links"].values()), default=0) / images,
            "links": per_link, "control": tcp["control"] / images,
            "lost_connections": tcp["lost_connections"]}
        if cfg.links:
            vd = veth_delta(v0, v1, cfg.links["devices"])
            raw = {k: (v["sent"] + v["received"]) / images for k, v in vd.items()}
            net = {}
            for k, v in vd.items():
                rate = idle[k] if idle else 0.0
                net[k] = max(0.0, v["sent"] + v["received"] - rate * window) / images
            row["link_bytes_per_inference"] = {
                # every frame crosses the sender's link and the receiver's link: halve the sum
                "total_raw": sum(raw.values()) / 2, "total_net": sum(net.values()) / 2,
                "max_link_net": max(net.values()), "per_device_raw": raw,
                "per_device_net": net, "window_s": window}
        # throughput: concurrent requests
        order = [idx[i % n_batches] for i in range(cfg.throughput_requests)]
        t0 = time.perf_counter()
        rs = await d.stream([xq_all[sl] for sl in order])
        el = time.perf_counter() - t0
        for r, sl in zip(rs, order):
            check(r, sl)
        row["throughput_images_s"] = cfg.throughput_requests * b / el
        st = await d.node_stats(tcp=False)
        row["memory"] = {name: {"rss_mb": s.get("rss", 0) / 2**20,
                                "base_rss_mb": s.get("base_rss", 0) / 2**20,
                                "peak_rss_mb": s.get("peak_rss", 0) / 2**20,
                                "param_bytes": sum(p["param_bytes"]
                                                   for p in s.get("parts", {}).values()),
                                "parts": sorted(f"{p['kind']}{p['index']}"
                                                for p in s.get("parts", {}).values())}
                         for name, s in st.items() if s.get("status") == "OK"}
        row["statuses"] = statuses
        row["wrong"] = wrong
        row["answers"] = sum(statuses.values())
    log(f"  {fam.name} {spec.label:24s} p50 {row['latency_ms']['p50']:8.2f} ms  "
        f"{row['tcp_bytes_per_inference']['total'] / 1e3:9.2f} kB/inf  "
        f"{row['throughput_images_s']:7.1f} img/s  wrong {wrong}")
    return row
