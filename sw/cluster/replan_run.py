"""The re-planning experiment on emulated links (``lcp cluster emulate-replan``).

A dispatcher serves a multi-branch model with ``hidp`` and dynamic placement
(:mod:`~lcp.sw.cluster.replan`) over emulated links; sequential requests run for ``before_s``
seconds, then one node's tbf rate is lowered (both directions) and requests go on until the
dispatcher has re-planned and ``after_s`` seconds more. Every answer is checked against the
golden reference; the result lists the plan before and after, the latency before, during (from
the drop to the re-plan) and after, and every request id with its status, so that a reader can
see each request answered exactly once.
"""

from __future__ import annotations

import time

import numpy as np

from lcp.golden import Golden
from lcp.ir import Model

from .dispatcher import Dispatcher, connect
from .emulate import Topology

__all__ = ["replan_experiment"]


def _stats(lat: list[float]) -> dict:
    if not lat:
        return {"n": 0}
    a = 1e3 * np.asarray(lat)
    return {"n": len(lat), "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)), "max_ms": float(a.max())}


async def replan_experiment(scheduler: str, model: Model, xq: np.ndarray, *, nodes: int,
                            prefix: str, slow_node: int, slow_rate: str, before_s: float = 4.0,
                            after_s: float = 4.0, max_s: float = 60.0, interval: float = 0.5,
                            log=print) -> dict:
    """Run the experiment from inside the dispatcher's namespace of topology ``prefix``."""
    golden = Golden(model)
    yref = golden.run_int(xq)
    topo = Topology(nodes, prefix=prefix)           # not built here: only its rates change
    rows = []
    async with connect(scheduler) as client:
        await client.wait_for_workers(nodes, timeout=60)
        async with Dispatcher(client, model, "hidp", nodes=nodes, timeout=30.0,
                              replan_interval=interval) as d:
            before = d.plan["hidp"]["assignment"]
            log(f"plan before: {before}")
            t_start = time.monotonic()
            t_drop = t_replan = None
            n_before = 0
            i = 0
            while True:
                now = time.monotonic() - t_start
                if t_drop is None and now >= before_s:
                    topo.set_rate(slow_node, slow_rate)
                    n_before = len(d.replans)
                    t_drop = now
                    log(f"t={now:.1f} s: node{slow_node:02d}'s link lowered to {slow_rate}")
                if t_replan is None and t_drop is not None and len(d.replans) > n_before:
                    t_replan = now
                    log(f"t={now:.1f} s: re-planned: {d.replans[-1]['after']}")
                if (t_replan is not None and now >= t_replan + after_s) or now > max_s:
                    break
                k = i % len(xq)
                r = await d.infer(xq[k:k + 1])
                rows.append({"rid": r.request, "t_s": now, "latency_s": r.latency,
                             "status": r.status,
                             "exact": bool(r.y is not None and np.array_equal(r.y, yref[k:k + 1])),
                             "phase": "before" if t_drop is None else
                                      "during" if t_replan is None else "after"})
                i += 1
            replans = list(d.replans)
    rids = [r["rid"] for r in rows]
    phases = {p: _stats([r["latency_s"] for r in rows if r["phase"] == p])
              for p in ("before", "during", "after")}
    return {"model": model.name, "nodes": nodes, "slow_node": f"node{slow_node:02d}",
            "slow_rate": slow_rate, "drop_at_s": t_drop, "replanned_at_s": t_replan,
            "plan_before": before, "plan_after": replans[-1]["after"] if len(replans) > n_before else None,
            "replans_before_drop": n_before, "replans": replans, "latency": phases, "requests": len(rows),
            "unique_answers": len(set(rids)), "exact": sum(r["exact"] for r in rows),
            "statuses": {s: sum(r["status"] == s for r in rows)
                         for s in sorted({r["status"] for r in rows})},
            "rows": rows}
