"""Failures: killed, stopped and busy nodes. Every request is answered exactly once, each
answer is exact (equal to golden) or degraded (equal to golden with the missing branch
outputs zeroed), within the timeout; nothing hangs."""

import asyncio
import collections
import os
import signal
import time

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.sw.cluster import Dispatcher, NodePlugin, connect

from .conftest import arun, int_inputs, kill


def check_answers(model, xs, results, *, allow_degraded=True):
    """Every request answered once, exact or degraded, and each equal to its reference."""
    g = Golden(model)
    assert len(results) == len(xs)
    assert len({r.request for r in results}) == len(results)
    counts = collections.Counter(r.status for r in results)
    assert set(counts) <= ({"exact", "degraded"} if allow_degraded else {"exact"}), counts
    for x, r in zip(xs, results):
        if r.status == "exact":
            assert r.missing == ()
            np.testing.assert_array_equal(r.y, g.run_int(x))
        else:
            outs = [g.run_branch(i, x) for i in range(len(model.branches))]
            for i in r.missing:
                outs[i] = np.zeros_like(outs[i])
            np.testing.assert_array_equal(r.y, g.run_merge(outs))
    return counts


async def wait_restarted(client, pid, n=4):
    """Wait until the nanny has replaced the killed process ``pid``; the worker pids."""
    for _ in range(150):
        pids = await client.run(os.getpid)
        if len(pids) == n and pid not in pids.values():
            break
        await asyncio.sleep(0.2)
    return pids


async def stream_with_fault(address, model, strategy, n, fault, *, at=None, part=1,
                            plugin=None, after=None, **options):
    """Stream ``n`` single-image requests; apply ``fault`` (a signal) to the worker holding
    slot ``part`` after ``at`` answers; then ``await after(client, pid)`` if given.
    Returns (inputs, results, victim pid, dispatcher, result of ``after``)."""
    xs = list(int_inputs(model, n, seed=7)[:, None])
    async with connect(address, plugin=plugin) as client:
        async with Dispatcher(client, model, strategy, **options) as d:
            victim = d.slots[part][2]
            pids = await client.run(os.getpid)
            pid = pids[victim]
            done = 0

            def progress(_):
                nonlocal done
                done += 1
                if done == (at if at is not None else n // 3):
                    kill(pid, fault)
            try:
                results = await d.stream(xs, progress=progress)
            finally:
                if fault == signal.SIGSTOP:
                    kill(pid, signal.SIGCONT)
            extra = await after(client, pid) if after is not None else None
            return xs, results, pid, d, extra


def test_killed_branch_worker_is_replaced(fresh_cluster, zoo):
    m = zoo["lenet5_s4"]

    xs, rs, pid, d, pids = arun(stream_with_fault(
        fresh_cluster, m, "lcp", 150, signal.SIGKILL, timeout=10, call_timeout=3,
        max_inflight=8, after=wait_restarted))
    check_answers(m, xs, rs)
    assert sum(r.retries for r in rs) > 0
    assert len(pids) == 4 and pid not in pids.values()


def test_killed_pipeline_stage_is_replaced(fresh_cluster, zoo):
    m = zoo["lenet5_s1"]
    xs, rs, _, d, _ = arun(stream_with_fault(fresh_cluster, m, "pipeline", 60, signal.SIGKILL,
                                             at=20, part=2, timeout=20, call_timeout=2,
                                             max_inflight=4))
    check_answers(m, xs, rs, allow_degraded=False)
    assert sum(r.retries for r in rs) > 0


def test_stopped_worker_times_out_and_is_replaced(fresh_cluster, zoo):
    m = zoo["lenet5_s4"]
    t0 = time.monotonic()
    xs, rs, _, d, _ = arun(stream_with_fault(fresh_cluster, m, "lcp", 40, signal.SIGSTOP,
                                             at=10, timeout=8, call_timeout=1,
                                             max_inflight=4))
    check_answers(m, xs, rs)
    assert max(r.latency for r in rs) < 8 + 1
    assert sum(r.retries for r in rs) > 0
    assert time.monotonic() - t0 < 60


def test_degraded_answers_within_the_timeout_without_replacement(fresh_cluster, zoo):
    m = zoo["lenet5_s4"]
    xs, rs, _, d, _ = arun(stream_with_fault(fresh_cluster, m, "lcp", 30, signal.SIGSTOP,
                                             at=10, timeout=1.5, call_timeout=1.0,
                                             replace=False, max_inflight=4))
    counts = check_answers(m, xs, rs)
    assert counts["degraded"] >= 15
    assert all(r.missing == (1,) for r in rs if r.status == "degraded")
    assert max(r.latency for r in rs) < 1.5 + 1.0


def test_full_node_queue_answers_busy_and_requests_retry(fresh_cluster, zoo):
    m = zoo["lenet5_s1"]

    async def main():
        xs = list(int_inputs(m, 24)[:, None])
        async with connect(fresh_cluster, plugin=NodePlugin(max_queue=1)) as client:
            async with Dispatcher(client, m, "single", max_inflight=24, timeout=30) as d:
                rs = await d.stream(xs)
                stats = await d.node_stats(tcp=False)
        return xs, rs, stats

    xs, rs, stats = arun(main())
    check_answers(m, xs, rs, allow_degraded=False)
    assert sum(s["busy"] for s in stats.values()) > 0


def test_all_branches_lost_is_failed_not_hung(fresh_cluster, zoo):
    m = zoo["lenet5_s1"]

    async def main():
        async with connect(fresh_cluster) as client:
            async with Dispatcher(client, m, "single", timeout=1.0, call_timeout=0.5,
                                  replace=False) as d:
                pids = await client.run(os.getpid)
                pid = pids[d.slots[0][2]]
                kill(pid, signal.SIGSTOP)
                try:
                    return await d.infer(int_inputs(m, 1))
                finally:
                    kill(pid, signal.SIGCONT)
    r = arun(main())
    assert r.status == "failed" and r.y is None and r.latency < 3


def test_1000_requests_with_a_worker_killed_and_restarted(fresh_cluster, zoo):
    """Acceptance: 1,000 requests, one worker killed mid-stream and restarted by its nanny:
    every request answered once, each marked exact or degraded."""
    m = zoo["lenet5_s4"]

    xs, rs, pid, d, pids = arun(stream_with_fault(
        fresh_cluster, m, "lcp", 1000, signal.SIGKILL, at=300, timeout=10, call_timeout=3,
        max_inflight=8, after=wait_restarted), timeout=900)
    counts = check_answers(m, xs, rs)
    print(f"1000 requests: {dict(counts)}, retries {sum(r.retries for r in rs)}, "
          f"max latency {max(r.latency for r in rs):.3f} s")
    assert counts["exact"] + counts["degraded"] == 1000
    assert len(pids) == 4 and pid not in pids.values(), "the killed worker was restarted"


def test_pipeline_recovers_when_nodes_forget_their_routes(fresh_cluster, zoo):
    """A node restarted at the same address has lost its routes: the lost request times out,
    the dispatcher sends the routes again and the retry is exact."""
    m = zoo["lenet5_s1"]
    x = int_inputs(m, 1)

    async def main():
        async with connect(fresh_cluster) as client:
            async with Dispatcher(client, m, "pipeline", timeout=20, call_timeout=0.5) as d:
                first = await d.infer(x)

                def forget(dask_worker):
                    dask_worker._lcp_node.routes.clear()
                await client.run(forget)
                return first, await d.infer(x)

    first, second = arun(main())
    assert first.status == second.status == "exact" and second.retries >= 1
    np.testing.assert_array_equal(second.y, Golden(m).run_int(x))
