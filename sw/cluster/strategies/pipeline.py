"""``pipeline``: a DEFER-style chain of layer partitions of a single-branch model.

The dispatcher sends the input to stage 0, every stage forwards its output to the next node,
the last stage sends the result back to the dispatcher (one-way messages; the dispatcher
listens on a small Dask ``Server`` for the deliveries, ``lcp_deliver``). The chain is sent to
its nodes once (``lcp_route``), as DEFER configures each node's next hop at setup, and again
whenever a stage moved. A lost or failed request is retried until its deadline: an unknown
part is reloaded, a stage whose node does not answer a ping is re-placed. ``hidp`` serves its
pipeline placements with the same :class:`Pipeline`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import numpy as np

from lcp.ir import IRError

from .. import roles, wire
from ..parts import choose_cuts, stage_parts
from .base import NET_ERRORS, Req, Slot, Strategy, register

__all__ = ["Pipeline", "uses_pipeline"]


def uses_pipeline(slots: list[Slot]) -> bool:
    """Whether ``slots`` are pipeline stages."""
    return any(sl.part.kind == "stage" for sl in slots)


@register
class Pipeline(Strategy):
    name = "pipeline"

    def __init__(self, d):
        super().__init__(d)
        self._pending: dict[tuple[int, int], asyncio.Future] = {}
        self._server = None
        self._sink = None
        self._route = None
        self._route_lock = asyncio.Lock()

    async def place(self, nodes: list[str]) -> list[Slot]:
        m = self.d.model
        k = self.d.stages or len(nodes)
        parts = stage_parts(m, choose_cuts(m, k))
        return [Slot(i, p, nodes[i % len(nodes)]) for i, p in enumerate(parts)]

    async def start(self) -> None:
        """Listen for the last stage's deliveries."""
        from distributed.comm.addressing import get_address_host, parse_address
        from distributed.core import Server
        from distributed.utils import get_ip

        sched = self.d.client.scheduler.address
        proto, _ = parse_address(sched)
        host = get_address_host(sched)
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            host = get_ip(host)
        self._server = Server({"lcp_deliver": self._on_deliver})
        sec = self.d.client.security
        kwargs = sec.get_listen_args("client") if sec else {}
        if sec is not None and sec.require_encryption:
            roles.guard(self._server, "dispatcher")        # deliveries from workers only
        await self._server.listen(f"{proto}://{host}:0", **kwargs)
        self._sink = self._server.listen_address

    async def close(self) -> None:
        """Fail every pending request, stop the delivery server."""
        for f in self._pending.values():
            if not f.done():
                f.set_exception(ConnectionError("dispatcher closed"))
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _on_deliver(self, req: int, attempt: int, y=None, error=None, pos=None) -> None:
        fut = self._pending.get((req, attempt))
        if fut is not None and not fut.done():
            fut.set_result({"y": y, "error": error, "pos": pos})

    async def serve(self, req: Req, xq: np.ndarray) -> np.ndarray | None:
        d = self.d
        spec_in = d.model.tensors[d._slots[0].part.input]
        xmsg = wire.encode(xq, spec_in, d.encoding)
        loop = asyncio.get_running_loop()
        for attempt in itertools.count():
            remaining = req.deadline - time.monotonic()
            if remaining <= 0:
                req.error = req.error or "request deadline"
                return None
            fut = loop.create_future()
            self._pending[(req.rid, attempt)] = fut
            try:
                try:
                    route, first = await self._ensure_route()
                    await d._rpc(first, "lcp_forward", min(d.call_timeout, remaining),
                                 reply=False, req=req.rid, attempt=attempt, route=route,
                                 pos=0, x=xmsg)
                    wait = min(d.call_timeout * len(d._slots), remaining)
                    got = await asyncio.wait_for(fut, wait)
                except NET_ERRORS as e:
                    req.retries += 1
                    req.error = f"{type(e).__name__}: {e}"
                    self._route = None                 # send the routes again
                    await self._heal_chain(None)
                    continue
            finally:
                self._pending.pop((req.rid, attempt), None)
            if d.delay:
                await asyncio.sleep(d.delay)
            if got["error"] is None:
                return wire.decode(got["y"], d.model.tensors[d._slots[-1].part.output])
            req.retries += 1
            req.error = f"stage {got['pos']}: {got['error']}"
            if got["error"] == "busy":
                await asyncio.sleep(min(0.01 * req.retries, 0.2))
            else:
                await self._heal_chain(got["pos"], got["error"])
        return None

    async def _ensure_route(self) -> tuple[str, str]:
        """Send the current chain to its nodes once (``lcp_route``), as DEFER configures each
        node's next hop at setup; a new route id whenever a stage moved. Returns
        ``(route id, address of stage 0)``."""
        d = self.d
        chain = [[s.addr, s.part.key] for s in d._slots]
        async with self._route_lock:
            if self._route is None or self._route[1] != chain:
                rid = uuid.uuid4().hex[:8]
                addrs = sorted({c[0] for c in chain})
                replies = await asyncio.gather(*[
                    d._rpc(a, "lcp_route", route=rid, chain=chain, reply_to=self._sink,
                           enc=d.encoding) for a in addrs])
                for a, r in zip(addrs, replies):
                    if r.get("status") != "OK":
                        raise IRError(f"node {d._name(a)} refuses the route: {r.get('error')}")
                self._route = (rid, chain)
            return self._route[0], chain[0][0]

    async def _heal_chain(self, pos: int | None, error: str | None = None) -> None:
        """After a lost or failed request: reload an unknown part, or re-place the stages
        whose nodes do not answer a ping."""
        d = self.d
        if pos is not None and error == "unknown-part":
            s = d._slots[pos]
            d._loaded.pop(s.addr, None)
            try:
                await d._load(s.addr, s.part)
                return
            except NET_ERRORS + (IRError,):
                await d._replace([s], s.addr)
                return
        candidates = d._slots if pos is None else [d._slots[min(pos, len(d._slots) - 1)]]
        for s in candidates:
            try:
                await d._rpc(s.addr, "lcp_probe", min(d.call_timeout, 2.0))
            except NET_ERRORS:
                if d.replace:
                    await d._replace([s], s.addr)
