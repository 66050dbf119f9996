"""Failover: a node killed by SIGKILL refuses connections at once, so its requests move to a
live node without waiting for a timeout; every request is still answered once and exact."""

import os
import random
import signal
import time

from lcp.sw.cluster import Dispatcher, connect

from .conftest import arun, int_inputs, kill
from .test_failures import check_answers

#: Seconds a remote call may take before its node counts as silent: far above any failover
#: here, so that a request that waited for a timeout shows as a latency beyond it.
CALL_TIMEOUT = 10.0


def test_sigkill_at_random_points_fails_over_without_a_timeout(fresh_cluster, zoo,
                                                               record_property):
    """5 runs of 200 requests (LeNet-5 split4, one branch per node; runs 1 and 3 with a standby
    copy of every part on the next node); in each run the node of a random branch is killed
    after a random number of answers (the next run starts at once, on the nodes alive then, the
    nanny's replacement among them once it has registered). Every request is answered once and
    exact; no request waits for the call timeout. The worst latency of each run is printed (the
    issue's target is 1.5 s; on a loaded 2-core machine it is a measurement, not an
    assertion)."""
    m = zoo["lenet5_s4"]
    rng = random.Random(20240613)

    async def main():
        runs = []
        async with connect(fresh_cluster) as client:
            for run in range(5):
                xs = list(int_inputs(m, 200, seed=run)[:, None])
                replicas = 1 + run % 2              # odd runs: a standby copy of each part
                async with Dispatcher(client, m, "lcp", timeout=30, call_timeout=CALL_TIMEOUT,
                                      max_inflight=8, replicas=replicas) as d:
                    slot = rng.randrange(len(d.slots))
                    at = rng.randrange(10, 190)
                    victim = d.slots[slot][2]
                    lost = sorted(name for name, _, addr in d.slots if addr == victim)
                    pid = (await client.run(os.getpid))[victim]
                    done, loads_at_kill = 0, None

                    def progress(_):
                        nonlocal done, loads_at_kill
                        done += 1
                        if done == at:
                            kill(pid, signal.SIGKILL)
                            loads_at_kill = len(d.loads)
                    t0 = time.monotonic()
                    results = await d.stream(xs, progress=progress)
                    wall = time.monotonic() - t0
                    loads_after = d.loads[loads_at_kill:]
                runs.append((xs, results, slot, at, wall, replicas, loads_after, lost))
        return runs

    worst = 0.0
    for run, (xs, results, slot, at, wall, replicas, loads_after, lost) in enumerate(
            arun(main(), timeout=600)):
        counts = check_answers(m, xs, results, allow_degraded=False)
        assert counts["exact"] == len(xs) == 200
        retried = [r for r in results if r.retries]
        assert retried, "the kill reached no request"
        top = max(r.latency for r in results)
        worst = max(worst, top)
        if replicas > 1:
            assert loads_after == [], "the standby already held the part: nothing to load"
        else:
            assert sorted(name for name, _, _ in loads_after) == lost
        print(f"run {run} (replicas {replicas}): branch {slot} node killed after {at} answers; "
              f"{len(retried)} request(s) retried, worst latency {top:.3f} s "
              f"(median {sorted(r.latency for r in results)[100]:.3f} s, {wall:.1f} s total)")
        assert top < CALL_TIMEOUT, "a request waited for the call timeout"
    print(f"worst request latency over 5 runs with a node killed: {worst:.3f} s")
    record_property("worst_failover_latency_s", round(worst, 3))
