"""HiDP's profiler and cost model (the ``hidp`` strategy's placement,
:mod:`~lcp.sw.cluster.strategies.hidp`).

:func:`profile` measures every node once: the round trip of an empty ``lcp_probe``, the
bandwidth of a 64 KiB probe (its time less the round trip; best of three), and the median
seconds the node takes to run a reference part (``lcp_run``, three times).

The cost model predicts a request's latency from such a profile (node address ->
``{"rtt", "bw", "t_ref", "threads"}``), the parts' MACs (scaled from the reference part's
time) and the bytes of the tensors that cross each link:

- :func:`assign_branches` (a model with several branches): greedily, largest branch first,
  each branch to the node that keeps the slowest node's finish time lowest; a node's finish
  time is one round trip, the input and its branch outputs over its link, and its branches run
  side by side on its threads (at least the longest one).
- :func:`chain_options` (a single-branch model): the whole model on each node, or a pipeline
  of ``k`` stages on the ``k`` fastest nodes (half a round trip and the stage input per hop,
  the output back from the last).
"""

from __future__ import annotations

import time

import numpy as np

from lcp.ir import IRError, Model

from . import wire
from .parts import Part, choose_cuts, stage_parts

__all__ = ["profile", "assign_branches", "chain_options"]

#: Bytes of the bandwidth probe.
PROBE_BYTES = 64 * 1024


async def profile(d, nodes: list[str], ref: Part, xq: np.ndarray) -> dict[str, dict]:
    """Per node of dispatcher ``d``: round trip (s), bandwidth (bytes/s), seconds to run
    ``ref`` on ``xq`` (``ref`` is loaded on every node; the fastest of three runs), threads."""
    probe = bytes(PROBE_BYTES)
    prof = {}
    xmsg = wire.encode(xq, d.model.tensors[ref.input], d.encoding)
    for a in nodes:
        small, big = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            await d._rpc(a, "lcp_probe", data=b"")
            small.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await d._rpc(a, "lcp_probe", data=probe)
            big.append(time.perf_counter() - t0)
        rtt = min(small)
        bw = len(probe) / max(min(big) - rtt, 1e-6)
        await d._load(a, ref)
        ts = []
        for _ in range(3):
            r = await d._rpc(a, "lcp_run", keys=[ref.key], x=xmsg, enc=d.encoding)
            if r.get("status") != "OK":
                raise IRError(f"profiling {d._name(a)} failed: {r}")
            ts.append(r["t"])
        threads = int(d._workers[a].get("nthreads", 1) or 1)
        # the least disturbed run, as for the round trips: the node's speed, not the host's load
        prof[a] = {"rtt": rtt, "bw": bw, "t_ref": float(min(ts)), "threads": threads}
    return prof


def assign_branches(m: Model, parts: list[Part], prof: dict[str, dict],
                    nodes: list[str]) -> tuple[dict[str, list[Part]], float]:
    """Branch parts ``parts`` (``parts[0]`` the profiled reference) -> nodes; returns the
    assignment (node -> parts, every node listed) and the estimated latency (s)."""
    in_bytes = m.tensors[m.input.name].nbytes
    cost = {(p.key, a): prof[a]["t_ref"] * max(p.macs, 1) / max(parts[0].macs, 1)
            for p in parts for a in nodes}
    assign: dict[str, list[Part]] = {a: [] for a in nodes}

    def finish(a, ps):
        if not ps:
            return 0.0
        pr = prof[a]
        work = [cost[(p.key, a)] for p in ps]
        out_b = sum(m.tensors[p.output].nbytes for p in ps)
        return (pr["rtt"] + (in_bytes + out_b) / pr["bw"]
                + max(max(work), sum(work) / pr["threads"]))

    for p in sorted(parts, key=lambda p: -p.macs):
        best = min(nodes, key=lambda a: (max(finish(a, assign[a] + [p]),
                                             max(finish(b, assign[b]) for b in nodes)),
                                         finish(a, assign[a] + [p])))
        assign[best].append(p)
    return assign, max(finish(a, assign[a]) for a in nodes)


def chain_options(m: Model, whole: Part, prof: dict[str, dict],
                  nodes: list[str]) -> list[tuple[float, str, list[str]]]:
    """Estimated latency of every placement of a single-branch model ``m`` profiled on its
    ``whole`` part: ``(seconds, "whole" | "pipeline<k>", hosts)``."""
    in_bytes = m.tensors[m.input.name].nbytes
    out_bytes = m.tensors[m.output].nbytes
    options = []
    for a in nodes:
        pr = prof[a]
        options.append((pr["rtt"] + (in_bytes + out_bytes) / pr["bw"] + pr["t_ref"],
                        "whole", [a]))
    ranked = sorted(nodes, key=lambda a: prof[a]["t_ref"])
    for k in range(2, len(nodes) + 1):
        try:
            stages = stage_parts(m, choose_cuts(m, k))
        except IRError:
            break
        if len(stages) < k:
            break
        hosts = ranked[:k]
        est = 0.0
        for st, a in zip(stages, hosts):
            pr = prof[a]
            b_in = m.tensors[st.input].nbytes
            est += pr["rtt"] / 2 + b_in / pr["bw"] + pr["t_ref"] * st.macs / max(whole.macs, 1)
        est += prof[hosts[-1]]["rtt"] / 2 + out_bytes / prof[hosts[-1]]["bw"]
        options.append((est, f"pipeline{k}", hosts))
    return options
