"""The discrete-event cluster simulator: a :class:`~.simspec.Plan` run on a
:class:`~.simspec.ClusterSpec`.

Resources: each node's cores (and, when ``host_cores`` is set, the host's cores that every
device shares), and the network: on a ``switched`` medium a message occupies its sender's
uplink and its receiver's downlink, on a ``shared`` medium the one medium, for
``(bytes + framing) * 8 / bandwidth`` (the slower of the two links); it arrives ``latency_s``
later (the larger of the two ends'). A lost message (probability ``loss``, seeded) is sent again
after ``rto_s``. Every resource serves tasks first come first served by ready time, without
preemption.

Requests run closed loop: ``concurrency`` requests in flight, a new one starts when one ends,
``requests`` in all. Latency figures come from ``concurrency=1`` (sequential requests, as the
benchmark measures them), throughput from the concurrent run.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

import numpy as np

from .simspec import DISPATCHER, ClusterSpec, Plan

__all__ = ["SimResult", "simulate", "summarize", "plot_timeline"]


@dataclass
class SimResult:
    """Per request latency (s, in completion order), makespan, and per resource use."""

    latency_s: list
    makespan_s: float
    requests: int
    batch: int
    busy_s: dict                     # node -> compute seconds
    link_bytes: dict                 # "src->dst" -> payload + framing bytes
    timeline: list = field(default_factory=list)   # (resource, start, end, request, label)

    @property
    def throughput(self) -> float:
        """Images per second."""
        return self.requests * self.batch / self.makespan_s if self.makespan_s > 0 else math.inf


class _Pool:
    """``k`` identical servers; returns the start time for a task ready at ``t``."""

    def __init__(self, k: int):
        self.free = [0.0] * max(1, int(k))

    def earliest(self) -> float:
        return min(self.free)

    def take(self, start: float, end: float) -> None:
        i = int(np.argmin(self.free))
        self.free[i] = end


def simulate(plan: Plan, cluster: ClusterSpec, *, requests: int = 20, concurrency: int = 1,
             seed: int = 0, timeline: bool = False) -> SimResult:
    """Run ``requests`` copies of ``plan`` with ``concurrency`` in flight."""
    tasks = plan.tasks
    n = len(tasks)
    children: list[list[int]] = [[] for _ in range(n)]
    for i, t in enumerate(tasks):
        for d in t.deps:
            children[d].append(i)
    roots = [i for i, t in enumerate(tasks) if not t.deps]
    cpu = {nd.name: _Pool(nd.cores) for nd in [cluster.dispatcher, *cluster.nodes]}
    host = _Pool(cluster.host_cores) if cluster.host_cores else None
    net: dict[str, _Pool] = {}
    rng = random.Random(seed)
    heap: list = []
    seq = 0
    state: dict[int, dict] = {}
    started = 0
    lat: list[float] = []
    busy = {nd.name: 0.0 for nd in [cluster.dispatcher, *cluster.nodes]}
    link_bytes: dict[str, int] = {}
    tl: list = []
    end_all = 0.0

    def start_request(t0: float) -> None:
        nonlocal started, seq
        r = started
        started += 1
        state[r] = {"t0": t0, "left": [len(t.deps) for t in tasks], "ready": [t0] * n,
                    "todo": n, "end": t0}
        for i in roots:
            heapq.heappush(heap, (t0, seq, r, i))
            seq += 1

    def pool(name: str) -> _Pool:
        if name not in net:
            net[name] = _Pool(1)
        return net[name]

    for _ in range(min(concurrency, requests)):
        start_request(0.0)
    while heap:
        ready, _, r, i = heapq.heappop(heap)
        t = tasks[i]
        st = state[r]
        if t.kind == "cpu":
            p = cpu[t.where]
            start = max(ready, p.earliest(), host.earliest() if host else 0.0)
            end = start + t.seconds
            p.take(start, end)
            if host:
                host.take(start, end)
            busy[t.where] += t.seconds
            done = end
            res = t.where
        else:
            ls, ld = cluster.link(t.where), cluster.link(t.dst)
            bw = min(ls.bandwidth_bps, ld.bandwidth_bps)
            nbytes = t.nbytes + max(ls.overhead_bytes, ld.overhead_bytes)
            tx = nbytes * 8 / bw
            pools = ([pool("medium")] if cluster.medium == "shared"
                     else [pool(f"{t.where}.up"), pool(f"{t.dst}.down")])
            start = max([ready] + [q.earliest() for q in pools])
            end = start + tx
            for q in pools:
                q.take(start, end)
            done = end + max(ls.latency_s, ld.latency_s)
            loss = max(ls.loss, ld.loss)
            while loss and rng.random() < loss:                  # resent after a timeout
                done += max(ls.rto_s, ld.rto_s) + tx
            key = f"{t.where}->{t.dst}"
            link_bytes[key] = link_bytes.get(key, 0) + nbytes
            res = f"{t.where}->{t.dst}"
        if timeline:
            tl.append((res, start, end if t.kind == "cpu" else done, r, t.label))
        st["end"] = max(st["end"], done)
        st["todo"] -= 1
        for c in children[i]:
            st["left"][c] -= 1
            st["ready"][c] = max(st["ready"][c], done)
            if st["left"][c] == 0:
                heapq.heappush(heap, (st["ready"][c], seq, r, c))
                seq += 1
        if st["todo"] == 0:
            lat.append(st["end"] - st["t0"])
            end_all = max(end_all, st["end"])
            del state[r]
            if started < requests:
                start_request(st["end"])
    return SimResult(lat, end_all, requests, plan.batch, busy, link_bytes, tl)


def summarize(plan: Plan, cluster: ClusterSpec, *, requests: int = 20, concurrency: int = 8,
              seed: int = 0) -> dict:
    """Latency p50/p95 (sequential requests), throughput (``concurrency`` in flight), bytes
    per link and per inference, busy seconds per node and per inference, as JSON-able data."""
    seqr = simulate(plan, cluster, requests=requests, concurrency=1, seed=seed)
    thr = simulate(plan, cluster, requests=max(requests, 4 * concurrency),
                   concurrency=concurrency, seed=seed)
    images = seqr.requests * plan.batch
    lat = np.array(seqr.latency_s)
    return {
        "strategy": plan.strategy, "model": plan.model, "encoding": plan.encoding,
        "batch": plan.batch, "placement": plan.placement, "notes": plan.notes,
        "latency_ms": {"p50": 1e3 * float(np.percentile(lat, 50)),
                       "p95": 1e3 * float(np.percentile(lat, 95)),
                       "mean": 1e3 * float(lat.mean())},
        "throughput_images_s": thr.throughput, "concurrency": concurrency,
        "bytes_per_inference": sum(seqr.link_bytes.values()) / images,
        "link_bytes_per_inference": {k: v / images for k, v in sorted(seqr.link_bytes.items())},
        "busy_ms_per_inference": {k: 1e3 * v / images for k, v in seqr.busy_s.items() if v},
        "tasks": len(plan.tasks)}


def plot_timeline(plan: Plan, cluster: ClusterSpec, path, *, requests: int = 3,
                  concurrency: int = 1, title: str | None = None):
    """A Gantt chart of ``requests`` requests: one row per node (compute) and per sender's
    uplink (``shared`` medium: one row for the medium) for messages, drawn from the start of
    their transmission until they arrive; one colour per request."""
    import matplotlib                    # plotting only when asked (a heavy import)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = simulate(plan, cluster, requests=requests, concurrency=concurrency, timeline=True)

    def row(name):
        if "->" not in name:
            return name
        return "medium" if cluster.medium == "shared" else f"{name.split('->')[0]} sends"
    res.timeline = [(row(n), s, e, r, lab) for n, s, e, r, lab in res.timeline]
    order = [DISPATCHER, *[n.name for n in cluster.nodes]]
    rows = [r for r in order if any(e[0] == r for e in res.timeline)]
    rows += sorted({e[0] for e in res.timeline} - set(rows))
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.5))
    colours = plt.get_cmap("tab10")
    for res_name, s, e, r, label in res.timeline:
        y = rows.index(res_name)
        ax.barh(y, 1e3 * (e - s), left=1e3 * s, height=0.6, color=colours(r % 10),
                alpha=0.9 if res_name in order else 0.5, edgecolor="none")
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.set_title(title or f"{plan.model} {plan.strategy}: {requests} request(s), "
                          f"{concurrency} in flight (colour = request)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
