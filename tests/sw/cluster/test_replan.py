"""Placement that follows the links: HiDP re-plans while serving (every answer exact and given
once), the link monitor re-plans when a link is slower than its plan assumed, and on emulated
links (root, slow) a tbf rate lowered mid-run moves the branches and the latency recovers."""

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lcp.golden import Golden

from lcp.sw.cluster.dispatcher import Dispatcher, connect
from lcp.sw.cluster.replan import LinkMonitor

from .conftest import arun, int_inputs

root = pytest.mark.skipif(os.geteuid() != 0, reason="emulated links need root (network "
                                                    "namespaces, veth, tc)")


def _nodes_of(assignment):
    return {n for n, parts in assignment.items() if parts}


def test_replan_while_serving_answers_every_request_once(cluster, zoo):
    m = zoo["cifarnet_s8"]
    xq = int_inputs(m, 6)
    ref = Golden(m).run_int(xq)

    async def main():
        async with connect(cluster) as client:
            async with Dispatcher(client, m, "hidp", nodes=2) as d:
                before = d.plan["hidp"]["assignment"]
                assert len(_nodes_of(before)) == 2
                slow = next(a for a in d.plan_profile if d._name(a) in before)
                prof = {a: dict(p) for a, p in d.plan_profile.items()}
                prof[slow]["bw"] = 1e3                   # 1 kB/s: nothing should go there
                reqs = [asyncio.ensure_future(d.infer(xq[i % 6: i % 6 + 1])) for i in range(24)]
                await asyncio.sleep(0.05)
                await d.replan(prof)
                reqs += [asyncio.ensure_future(d.infer(xq[i % 6: i % 6 + 1]))
                         for i in range(24, 36)]
                rs = await asyncio.gather(*reqs)
                return before, d.plan["hidp"]["assignment"], d._name(slow), rs

    before, after, slow, rs = arun(main())
    assert slow not in _nodes_of(after) and len(_nodes_of(after)) == 1
    assert len({r.request for r in rs}) == len(rs) == 36
    for i, r in enumerate(rs):
        assert r.status == "exact" and np.array_equal(r.y, ref[i % 6: i % 6 + 1])


def test_link_monitor_replans_when_a_link_is_slower_than_planned(cluster, zoo):
    m = zoo["lenet5_s4"]
    xq = int_inputs(m, 2)

    async def main():
        async with connect(cluster) as client:
            async with Dispatcher(client, m, "hidp", nodes=2) as d:
                mon = LinkMonitor(d, 10.0)             # not started: driven by hand here
                # the plan assumed a link 10^4 times faster than the one measured now
                a = next(iter(d.plan_profile))
                d.plan_profile[a]["bw"] *= 1e4
                assert not await mon.check()           # one reading is not enough
                assert await mon.check()               # confirmed: re-planned
                r = await d.infer(xq)
                return d.replans, d._name(a), r

    replans, name, r = arun(main())
    assert len(replans) == 1 and replans[0]["bandwidth_ratio"][name] < 0.5
    assert r.status == "exact"


@root
@pytest.mark.slow
def test_emulated_link_drop_moves_the_branches_and_latency_recovers(tmp_path):
    out = tmp_path / "replan.json"
    res = subprocess.run([sys.executable, "-m", "lcp.sw.cli", "cluster", "emulate-replan",
                          "--before-s", "3", "--after-s", "3", "-o", str(out), "--logs",
                          str(tmp_path / "logs")], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    print(res.stdout)
    r = json.loads(out.read_text())
    assert r["replanned_at_s"] is not None and r["replanned_at_s"] > r["drop_at_s"]
    assert r["slow_node"] in _nodes_of(r["plan_before"])
    assert r["slow_node"] not in _nodes_of(r["plan_after"])
    lat = r["latency"]
    assert lat["during"]["p50_ms"] > 2 * lat["before"]["p50_ms"]
    assert lat["after"]["p50_ms"] < lat["during"]["p50_ms"] / 2
    assert r["requests"] == r["unique_answers"] == r["exact"]
    assert r["statuses"] == {"exact": r["requests"]}
    assert ip_netns_clean()


def ip_netns_clean() -> bool:
    """No namespace of a finished run is left."""
    from lcp.sw.cluster.emulate import cleanup_stale
    return cleanup_stale() == []
