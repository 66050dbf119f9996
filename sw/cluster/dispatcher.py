"""The dispatcher: serve one IR model on a Dask cluster with one strategy.

The dispatcher keeps the cluster view (live workers, loaded parts, the slots: which part runs
on which node), the remote calls and failover; the strategy (:mod:`lcp.sw.cluster.strategies`,
one class per file, :data:`STRATEGIES` their names) places the parts and answers each request.
All strategies serve the same IR and answer equal to :class:`lcp.golden.Golden` bit for bit:

``single``          the whole model on one node.
``lcp``             every branch on its own node, the merge on the dispatcher.
``data``            the whole model on every node, a batch split into one chunk per node.
``pipeline``        DEFER-style chain of layer partitions, one-way messages node to node.
``hidp``            HiDP-style profiled global placement and local split
                    (cost model in :mod:`~lcp.sw.cluster.hidp`).
``exchange``        branches exchanging tensors node to node (:mod:`~lcp.sw.cluster.exchange`).
``model-parallel``  every layer's output channels over the nodes, all-gathers
                    (:mod:`~lcp.sw.cluster.modelpar`), served as ``exchange``.

Failures: every remote call has a timeout; a node that fails or times out is marked dead for a
while and its parts are re-placed on a live node (one that already holds them when
``replicas > 1``, else loading them there), and the request is retried until its deadline.
Calls connect with one attempt (:mod:`~lcp.sw.cluster.rpc`): a node whose process died refuses
or resets the connection and is marked dead at once, so the request moves to a live node
without waiting for a timeout; a silent node is found by ``call_timeout``. For ``lcp`` and
``hidp`` a request whose branch cannot be served within ``timeout`` is answered *degraded*:
the missing branch outputs are zeros, the result is marked ``"degraded"`` with the missing
branch indices. Other strategies answer ``"failed"`` at the deadline. Every request is answered exactly once (duplicate deliveries are dropped).

In-flight requests are bounded by ``max_inflight``; nodes bound their own queues.

Dynamic placement (``hidp`` with ``replan_interval``): the links are re-profiled while serving
and the branches re-placed when a link's bandwidth changes (:mod:`~lcp.sw.cluster.replan`,
:meth:`Dispatcher.replan`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np

from lcp.golden import Golden
from lcp.ir import IRError, Model

from . import wire
from .client import connect
from .parts import Part, part_to_wire
from .rpc import FastRPC
from .strategies import NET_ERRORS, REGISTRY, STRATEGIES, Req, Slot

__all__ = ["STRATEGIES", "Result", "Dispatcher", "connect", "run_batch"]

logger = logging.getLogger(__name__)


@dataclass
class Result:
    """The answer to one request.

    Members
    -------
    request : int
        Request id (unique per dispatcher).
    y : ndarray or None
        Integer model output ``(N, ...)``; None when ``status == "failed"``.
    status : str
        ``"exact"`` (equals golden), ``"degraded"`` (branches ``missing`` zeroed) or
        ``"failed"`` (no output within the timeout; only strategies without branches).
    missing : tuple of int
        Branch indices answered with zeros.
    latency : float
        Seconds from submission to answer.
    retries : int
        Calls repeated after a failure.
    error : str or None
        Last error seen, if any.
    """

    request: int
    y: np.ndarray | None
    status: str
    missing: tuple[int, ...] = ()
    latency: float = 0.0
    retries: int = 0
    error: str | None = None


class Dispatcher:
    """Serve ``model`` with ``strategy`` on the workers of ``client`` (an asynchronous
    :class:`distributed.Client` whose workers run :class:`~lcp.sw.cluster.node.NodePlugin`;
    see :func:`connect`).

    Parameters
    ----------
    client : distributed.Client
        Asynchronous client.
    model : Model
        The IR model.
    strategy : str
        One of :data:`STRATEGIES`.
    nodes : int or list of str, optional
        Worker names or addresses to use (default all, sorted by name), or how many of them.
    encoding : str
        Wire encoding of tensors (:data:`lcp.sw.cluster.wire.ENCODINGS`); ``zfp-lz4`` with
        ``pipeline`` is DEFER's float32 + ZFP + LZ4.
    stages : int, optional
        Pipeline stages (default: as many as nodes, bounded by the cut candidates).
    timeout : float
        Seconds per request before it is answered degraded or failed.
    call_timeout : float
        Seconds per remote call before the node is considered failed.
    replace : bool
        Re-place the parts of failed nodes on live nodes (else answer degraded at once).
    replicas : int
        Nodes that load each part (distinct when there are enough): the first serves it, the
        others stand by, so that a failed node's parts move without loading anything.
    max_inflight : int
        Requests in flight at once (:meth:`infer` waits for a slot).
    backend : str
        Executor backend on CPU nodes.
    accel_backend : str, optional
        Executor backend on nodes with an ``fpga`` resource (e.g. ``"pynq"``, ``"pynq-sim"``);
        nodes fall back to ``backend`` when it cannot load.
    delay_ms : float
        One-way delay added to every data message the dispatcher receives (link latency
        emulation; nodes read ``LCP_LINK_DELAY_MS``).
    dead_ttl : float
        Seconds a failed node stays out of placement (unless the scheduler still lists it
        after that, it is gone for good).
    """

    def __init__(self, client, model: Model, strategy: str = "lcp", *,
                 nodes: int | list[str] | None = None, encoding: str = "packed",
                 stages: int | None = None, timeout: float = 30.0, call_timeout: float = 10.0,
                 replace: bool = True, max_inflight: int = 16, backend: str = "golden",
                 accel_backend: str | None = None, delay_ms: float = 0.0,
                 dead_ttl: float = 15.0, replicas: int = 1,
                 replan_interval: float | None = None):
        if strategy not in REGISTRY:
            raise IRError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
        if encoding not in wire.ENCODINGS:
            raise IRError(f"unknown encoding {encoding!r} (known: {', '.join(wire.ENCODINGS)})")
        if timeout <= 0 or call_timeout <= 0 or max_inflight < 1 or replicas < 1:
            raise IRError("timeout, call_timeout must be > 0, max_inflight and replicas >= 1")
        self.client = client
        self.model = model
        self.strategy = strategy
        self.encoding = encoding
        self.stages = stages
        self.timeout = float(timeout)
        self.call_timeout = float(call_timeout)
        self.replace = replace
        self.backend = backend
        self.accel_backend = accel_backend
        self.delay = max(0.0, float(delay_ms)) / 1e3
        self.dead_ttl = dead_ttl
        self.replicas = int(replicas)
        self._pool = FastRPC(getattr(client, "connection_args", None))
        self._want_nodes = nodes
        self._golden = Golden(model)
        self._ids = itertools.count()
        self._sem = asyncio.Semaphore(max_inflight)
        self._workers: dict[str, dict] = {}       # address -> scheduler identity entry
        self._dead: dict[str, float] = {}
        self._loaded: dict[str, set[str]] = {}    # address -> part keys
        self._slots: list[Slot] = []
        self._lock = asyncio.Lock()
        self.plan: dict = {}
        self.plan_profile: dict = {}          # hidp: the profile the current plan assumed
        self.replan_interval = replan_interval
        self.replans: list[dict] = []         # one entry per re-plan (replan.LinkMonitor)
        self._strategy = REGISTRY[strategy](self)
        #: ``(part name, node name, already loaded there)`` of every load, in order.
        self.loads: list[tuple[str, str, bool]] = []
        self.started = False

    # -- cluster view ------------------------------------------------------------------------
    async def _refresh(self) -> None:
        ident = await asyncio.wait_for(self.client.scheduler.identity(), self.call_timeout)
        self._workers = dict(ident.get("workers", {}))

    def _alive(self) -> list[str]:
        now = time.monotonic()
        self._dead = {a: t for a, t in self._dead.items() if now - t < self.dead_ttl}
        return [a for a in self._workers if a not in self._dead]

    def _name(self, addr: str | None) -> str:
        if addr is None:
            return "-"
        return str(self._workers.get(addr, {}).get("name", addr))

    def _select_nodes(self) -> list[str]:
        addrs = sorted(self._alive(), key=lambda a: (str(self._workers[a].get("name")), a))
        want = self._want_nodes
        if want is None:
            chosen = addrs
        elif isinstance(want, int):
            chosen = addrs[:want]
        else:
            want = [str(w) for w in want]
            chosen = [a for a in addrs if a in want or str(self._workers[a].get("name")) in want]
            if len(chosen) != len(want):
                raise IRError(f"nodes {want} not all found among workers "
                              f"{[self._name(a) for a in addrs]}")
        if not chosen:
            raise IRError("no live worker in the cluster")
        return chosen

    def _backend_for(self, addr: str) -> str:
        res = self._workers.get(addr, {}).get("resources") or {}
        if self.accel_backend and res.get("fpga", 0) > 0:
            return self.accel_backend
        return self.backend

    # -- remote calls --------------------------------------------------------------------------
    async def _rpc(self, addr: str, op: str, timeout: float | None = None, **msg):
        reply = await asyncio.wait_for(self._pool.call(addr, op, **msg),
                                       timeout or self.call_timeout)
        if reply is None and msg.get("reply", True):
            raise IRError(f"node {self._name(addr)} does not answer {op}: the lcp node plugin "
                          f"is not installed (connect with lcp.sw.cluster.connect)")
        return reply

    async def _load(self, addr: str, part: Part) -> None:
        if part.key in self._loaded.get(addr, set()):
            return
        backend = self._backend_for(addr)
        msg = self._wire_cache.get(part.key)
        if msg is None:
            msg = self._wire_cache[part.key] = part_to_wire(part)
        reply = await self._rpc(addr, "lcp_load", max(self.call_timeout, 30.0), backend=backend,
                                **msg)
        if reply.get("status") != "OK" and backend != self.backend:
            logger.warning("lcp: %s cannot load %s with %s (%s); using %s", self._name(addr),
                           part.name, backend, reply.get("error"), self.backend)
            reply = await self._rpc(addr, "lcp_load", max(self.call_timeout, 30.0),
                                    backend=self.backend, **msg)
        if reply.get("status") != "OK":
            raise IRError(f"node {self._name(addr)} cannot load {part.name}: "
                          f"{reply.get('error')}")
        self._loaded.setdefault(addr, set()).add(part.key)
        self.loads.append((part.name, self._name(addr), bool(reply.get("cached"))))

    def _mark_dead(self, addr: str) -> None:
        self._dead[addr] = time.monotonic()
        self._loaded.pop(addr, None)
        self._pool.forget(addr)

    async def _replace(self, slots: list[Slot], failed: str) -> None:
        """Move every slot of ``slots`` still on ``failed`` to a live node (loading it)."""
        async with self._lock:
            todo = [s for s in slots if s.addr == failed]
            if not todo:
                return
            self._mark_dead(failed)
            try:
                await self._refresh()
            except NET_ERRORS:
                pass
            for s in todo:
                load = {a: 0 for a in self._alive()}
                for o in self._slots:
                    if o.addr in load:
                        load[o.addr] += 1
                if not load:
                    raise ConnectionError("no live worker to re-place "
                                          f"{s.part.name} on")
                # prefer a node that already holds the part, then the least loaded one
                best = min(load, key=lambda a: (s.part.key not in self._loaded.get(a, ()),
                                                load[a], self._name(a)))
                await self._load(best, s.part)
                logger.info("lcp: re-placed %s from %s to %s", s.part.name,
                            self._name(failed), self._name(best))
                s.addr = best

    # -- set up --------------------------------------------------------------------------------
    async def start(self) -> "Dispatcher":
        """Place the parts and load them on their nodes.

        The workers must run :class:`~lcp.sw.cluster.node.NodePlugin` (:func:`connect`
        registers it).
        """
        self._wire_cache: dict[str, dict] = {}
        await self._refresh()
        nodes = self._select_nodes()
        self._slots = await self._strategy.place(nodes)
        self.plan.update({"strategy": self.strategy, "model": self.model.name,
                          "encoding": self.encoding, "placement": self.placement})
        await asyncio.gather(*[self._place(sl) for sl in self._slots])
        await self._load_replicas(nodes)
        await self._strategy.start()
        self.started = True
        return self

    async def replan(self, profile: dict) -> None:
        """Place the branches again with HiDP on ``profile`` (node address -> rtt, bw, t_ref,
        threads); the new parts are loaded before the slots are swapped in one step."""
        slots = await self._strategy.place(list(profile), profile)
        await asyncio.gather(*[self._place(sl) for sl in slots])
        self._slots = slots
        self.plan["placement"] = self.placement

    async def _place(self, sl: Slot) -> None:
        """Load ``sl`` on its node; a node that died since the scheduler listed it is marked
        dead and the part goes to a live node."""
        try:
            await self._load(sl.addr, sl.part)
        except NET_ERRORS:
            if not self.replace:
                raise
            await self._replace([sl], sl.addr)

    async def _load_replicas(self, nodes: list[str]) -> None:
        """Load every part on ``replicas - 1`` more nodes: the next ones after its own (a
        standby that cannot load is skipped)."""
        loads = []
        for r in range(1, min(self.replicas, len(nodes))):
            for sl in self._slots:
                at = nodes.index(sl.addr) if sl.addr in nodes else 0
                loads.append(self._load(nodes[(at + r) % len(nodes)], sl.part))
        for res in await asyncio.gather(*loads, return_exceptions=True):
            if isinstance(res, BaseException):
                logger.warning("lcp: a standby copy was not loaded: %r", res)

    async def close(self) -> None:
        """Stop what the strategy started (a link monitor, a delivery server: its pending
        requests fail), close the connections."""
        await self._strategy.close()
        await self._pool.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    # -- serving ---------------------------------------------------------------------------------
    async def infer(self, xq: np.ndarray) -> Result:
        """Answer one request: integer inputs ``(N, *model.input.shape)`` -> :class:`Result`.

        Never raises for node failures (they become ``degraded``/``failed`` results); raises
        :class:`IRError` for an input that does not fit the model. A batch of zero images is
        answered at once with an empty output.
        """
        if not self.started:
            raise IRError("Dispatcher.start() was not called")
        xq = self._golden.check_int_input(xq)
        if len(xq) == 0:                       # nothing to send: the empty answer, exact
            out = self.model.tensors[self.model.output]
            return Result(next(self._ids), np.zeros((0, *out.shape), np.int64), "exact")
        async with self._sem:
            t0 = time.monotonic()
            req = Req(next(self._ids), t0, t0 + self.timeout)
            try:
                y = await self._strategy.serve(req, xq)
            except NET_ERRORS + (ConnectionError, IRError) as e:
                req.error = f"{type(e).__name__}: {e}"
                y = None
            latency = time.monotonic() - t0
            if y is None:
                return Result(req.rid, None, "failed", (), latency, req.retries, req.error)
            status = "degraded" if req.missing else "exact"
            return Result(req.rid, y, status, tuple(sorted(req.missing)), latency, req.retries,
                          req.error)

    async def stream(self, xs, *, progress=None) -> list[Result]:
        """Answer every batch of the iterable ``xs`` (at most ``max_inflight`` at once);
        results in input order."""
        tasks = [asyncio.ensure_future(self.infer(x)) for x in xs]
        out = []
        for t in tasks:
            out.append(await t)
            if progress is not None:
                progress(out[-1])
        return out

    async def _call_group(self, req: Req, slots: list[Slot], xmsg: dict) -> dict[int, np.ndarray]:
        """Run ``slots`` (all on one node, same input) with retries; sid -> output."""
        while True:
            addr = slots[0].addr
            remaining = req.deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError("request deadline")
            try:
                reply = await self._rpc(addr, "lcp_run", min(self.call_timeout, remaining),
                                        keys=[s.part.key for s in slots], x=xmsg,
                                        enc=self.encoding)
                if self.delay:
                    await asyncio.sleep(self.delay)
            except NET_ERRORS as e:
                req.retries += 1
                req.error = f"{self._name(addr)}: {type(e).__name__}: {e}"
                if not self.replace:
                    raise
                await self._replace(slots, addr)
                groups: dict[str, list[Slot]] = {}
                for s in slots:
                    groups.setdefault(s.addr, []).append(s)
                if len(groups) > 1:
                    outs = await asyncio.gather(*[self._call_group(req, g, xmsg)
                                                  for g in groups.values()])
                    return {k: v for o in outs for k, v in o.items()}
                continue
            st = reply.get("status")
            if st == "OK":
                return {s.sid: wire.decode(y, self.model.tensors[s.part.output])
                        for s, y in zip(slots, reply["y"])}
            req.retries += 1
            req.error = f"{self._name(addr)}: {st} {reply.get('error', '')}".strip()
            if st == "unknown-part":
                self._loaded.pop(addr, None)
                try:
                    for s in slots:
                        await self._load(addr, s.part)
                except NET_ERRORS + (IRError,):
                    await self._replace(slots, addr)
            elif st == "busy":
                await asyncio.sleep(min(0.01 * req.retries, 0.2))
            else:
                raise IRError(f"node {self._name(addr)} failed: {reply.get('error')}")

    # -- measurements ------------------------------------------------------------------------------
    async def node_stats(self, tcp: bool = True) -> dict[str, dict]:
        """``lcp_stats`` of every live node used by this dispatcher, by node name."""
        addrs = sorted({s.addr for s in self._slots if s.addr})
        out = {}
        for a in addrs:
            try:
                out[self._name(a)] = await self._rpc(a, "lcp_stats", tcp=tcp)
            except NET_ERRORS as e:
                out[self._name(a)] = {"status": "unreachable", "error": repr(e)}
        return out

    @property
    def placement(self) -> dict[str, str]:
        """Part name (``whole#i`` for the data strategy's copies) -> node name (current, after
        any re-placement)."""
        return self._strategy.placement(self._slots)

    @property
    def slots(self) -> list[tuple[str, str, str]]:
        """``(part name, part key, node address)`` of every slot."""
        return [(s.part.name, s.part.key, s.addr) for s in self._slots]


def run_batch(model: Model, xq: np.ndarray, strategy: str = "lcp", *,
              scheduler: str | None = None, n_workers: int | None = None, security=None,
              **options) -> Result:
    """Run one integer batch through the cluster (synchronous helper for the CLI).

    ``n_workers`` sizes the embedded cluster (default: one per branch or pipeline stage,
    at most 8); ``options`` go to :class:`Dispatcher`.
    """
    if n_workers is None:
        n_workers = min(8, max(2, len(model.branches)))

    async def main():
        async with connect(scheduler, n_workers=n_workers, security=security) as client:
            async with Dispatcher(client, model, strategy, **options) as d:
                return await d.infer(xq)

    return asyncio.run(main())
