"""Placement that follows the links: a dispatcher serving with ``hidp`` re-profiles its links
while it serves and re-plans when a link's bandwidth changes.

:class:`LinkMonitor` (started by :class:`~.dispatcher.Dispatcher` with ``replan_interval``)
measures, every ``interval`` seconds, each node's link as HiDP's profile does: the median round
trip of empty ``lcp_probe`` calls, and the best of ``rounds`` calls carrying ``probe_bytes``
(64 KiB, the profile's probe: the difference is the transfer time). When a node's bandwidth
estimate stays more than ``threshold`` times away from the one its current plan assumed (down
or up) for ``confirm`` checks in a row (one noisy probe does not move a plan), the HiDP
profile's bandwidth and round trip of that node are replaced by the new estimates (compute
speeds stay as profiled) and the dispatcher's own HiDP placement runs again on that profile. The new parts are loaded first,
then the dispatcher's slots are swapped in one step: a request already in flight finishes
on the slots it started with, the next one uses the new plan, so no request is lost or
answered twice. Each re-plan is recorded in ``Dispatcher.replans`` (time, the link estimates,
the assignment before and after).

Only a multi-branch model is re-planned (the branches move between nodes); a single-branch
model's HiDP plan (the whole model or a pipeline) is kept.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

__all__ = ["LinkMonitor"]

logger = logging.getLogger(__name__)


class LinkMonitor:
    """Re-profile the links of dispatcher ``d`` every ``interval`` seconds (see module doc)."""

    def __init__(self, d, interval: float, *, threshold: float = 2.0,
                 probe_bytes: int = 64 * 1024, rounds: int = 2, confirm: int = 2):
        if interval <= 0 or threshold <= 1 or probe_bytes < 1 or rounds < 1 or confirm < 1:
            raise ValueError("interval > 0, threshold > 1, probe_bytes, rounds and confirm "
                             ">= 1")
        self.d = d
        self.interval = float(interval)
        self.threshold = float(threshold)
        self.probe = bytes(probe_bytes)
        self.rounds = rounds
        self.confirm = confirm
        self.streak: dict[str, list[dict]] = {}    # node address -> estimates out of band
        self.last: dict[str, dict] = {}
        self._task: asyncio.Task | None = None

    async def measure(self, addr: str) -> dict:
        """Round trip (s) and bandwidth (bytes/s) of ``addr``'s link, best of ``rounds``."""
        small, big = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            await self.d._rpc(addr, "lcp_probe", data=b"")
            small.append(time.perf_counter() - t0)
        for _ in range(self.rounds):
            t0 = time.perf_counter()
            await self.d._rpc(addr, "lcp_probe", data=self.probe)
            big.append(time.perf_counter() - t0)
        rtt = float(sorted(small)[1])
        return {"rtt": rtt, "bw": len(self.probe) / max(min(big) - rtt, 1e-4)}

    def start(self) -> "LinkMonitor":
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as e:         # a failed probe: the failover path handles nodes
                logger.info("lcp: link monitor: %s: %s", type(e).__name__, e)

    async def check(self) -> bool:
        """Measure every profiled node once; re-plan if a link changed. True if re-planned."""
        d = self.d
        prof = d.plan_profile
        if not prof:
            return False
        changed = {}
        for addr in list(prof):
            m = await self.measure(addr)
            self.last[d._name(addr)] = m
            ratio = m["bw"] / prof[addr]["bw"]
            if 1 / self.threshold <= ratio <= self.threshold:
                self.streak.pop(addr, None)
                continue
            self.streak.setdefault(addr, []).append(m)
            if len(self.streak[addr]) >= self.confirm:
                changed[addr] = self.streak.pop(addr)
        if not changed:
            return False
        new = {a: dict(p) for a, p in prof.items()}
        for a, ms in changed.items():
            new[a]["bw"] = float(np.median([m["bw"] for m in ms]))
            new[a]["rtt"] = float(np.median([m["rtt"] for m in ms]))
        before = d.plan["hidp"].get("assignment")
        t0 = time.monotonic()
        await d.replan(new)
        entry = {"t": time.time(), "seconds": time.monotonic() - t0,
                 "bandwidth_ratio": {d._name(a): new[a]["bw"] / prof[a]["bw"]
                                     for a in changed},
                 "links": {k: dict(v) for k, v in self.last.items()},
                 "before": before, "after": d.plan["hidp"].get("assignment")}
        d.replans.append(entry)
        logger.info("lcp: re-planned after a link change %s: %s -> %s",
                    entry["bandwidth_ratio"], before, entry["after"])
        return True
