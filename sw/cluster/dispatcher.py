"""The dispatcher: serve one IR model on a Dask cluster with one strategy.

Strategies (all on the same IR; results equal :class:`lcp.golden.Golden` bit for bit):

``single``
    The whole model on one node.
``lcp``
    Every branch on its own node (round robin when there are fewer nodes); the dispatcher sends
    the input to each branch node and runs the merge on the branch outputs.
``data``
    The whole model on every node; a batch is split into one chunk per node.
``pipeline``
    DEFER-style chain of layer partitions of a single-branch model: the dispatcher sends the
    input to stage 0, every stage forwards its output to the next node, the last stage sends
    the result back to the dispatcher (one-way messages; the dispatcher listens on a small Dask
    ``Server`` for the deliveries).
``hidp``
    HiDP-style placement: every node is profiled (its speed on a reference part, its link's
    round trip and bandwidth), then a global assignment puts each branch (or the whole model,
    or a pipeline of stages, whichever the cost model says is fastest) on nodes, so that a
    node may receive several branches and the input only once; the local split runs a node's
    branches side by side on its threads (or its accelerator backend for nodes with an
    ``fpga`` resource).

``exchange``
    A model whose branches exchange tensors before the merge (the exchange family): one
    branch per node, the exchanged tensors sent node to node (:mod:`~lcp.sw.cluster.exchange`).
``model-parallel``
    A single-branch model with every layer's output channels divided over the nodes and an
    all-gather wherever a layer needs the whole tensor (:mod:`~lcp.sw.cluster.modelpar`),
    served as ``exchange``.

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
and the branches re-placed when a link's bandwidth changes (:mod:`~lcp.sw.cluster.replan`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from distributed.comm.core import CommClosedError

from lcp.golden import Golden
from lcp.ir import IRError, Model

from . import replan, roles, wire
from .node import NodePlugin, PLUGIN_NAME
from .exchange import ExchangeServer
from .modelpar import model_parallel
from .parts import Part, branch_parts, choose_cuts, part_to_wire, stage_parts, whole_part
from .rpc import FastRPC

__all__ = ["STRATEGIES", "EXCHANGE_STRATEGIES", "Result", "Dispatcher", "connect", "run_batch"]

#: Strategies served by :mod:`~lcp.sw.cluster.exchange` (branches meeting node to node).
EXCHANGE_STRATEGIES = ("exchange", "model-parallel")
#: Strategy names accepted by :class:`Dispatcher`.
STRATEGIES = ("single", "lcp", "data", "pipeline", "hidp", *EXCHANGE_STRATEGIES)

logger = logging.getLogger(__name__)

_NET_ERRORS = (OSError, CommClosedError, asyncio.TimeoutError, EOFError)


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


@dataclass
class _Slot:
    """A placed unit of work: one part on one node (the node may change on failure)."""

    sid: int
    part: Part
    addr: str | None = None


@dataclass
class _Req:
    rid: int
    t0: float
    deadline: float
    retries: int = 0
    error: str | None = None
    missing: set = field(default_factory=set)


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
        if strategy not in STRATEGIES:
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
        self._slots: list[_Slot] = []
        self._lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Future] = {}
        self._server = None
        self._route = None
        self._route_lock = asyncio.Lock()
        self.plan: dict = {}
        self.plan_profile: dict = {}          # hidp: the profile the current plan assumed
        self.replan_interval = replan_interval
        self.replans: list[dict] = []         # one entry per re-plan (replan.LinkMonitor)
        self._monitor = None
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

    async def _replace(self, slots: list[_Slot], failed: str) -> None:
        """Move every slot of ``slots`` still on ``failed`` to a live node (loading it)."""
        async with self._lock:
            todo = [s for s in slots if s.addr == failed]
            if not todo:
                return
            self._mark_dead(failed)
            try:
                await self._refresh()
            except _NET_ERRORS:
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
        m, s = self.model, self.strategy
        if s == "single":
            self._slots = [_Slot(0, whole_part(m), nodes[0])]
        elif s == "data":
            whole = whole_part(m)
            self._slots = [_Slot(i, whole, a) for i, a in enumerate(nodes)]
        elif s == "lcp":
            self._slots = [_Slot(i, p, nodes[i % len(nodes)])
                           for i, p in enumerate(branch_parts(m))]
        elif s == "pipeline":
            k = self.stages or len(nodes)
            parts = stage_parts(m, choose_cuts(m, k))
            self._slots = [_Slot(i, p, nodes[i % len(nodes)]) for i, p in enumerate(parts)]
        elif s in EXCHANGE_STRATEGIES:
            served = model_parallel(m, len(nodes)) if s == "model-parallel" else m
            self._xserver = ExchangeServer(served)
            self._slots = [_Slot(p.index, p, a) for p, a in self._xserver.place(nodes)]
        else:
            self._slots = await self._plan_hidp(nodes)
        self.plan.update({"strategy": s, "model": m.name, "encoding": self.encoding,
                          "placement": self.placement})
        await asyncio.gather(*[self._place(sl) for sl in self._slots])
        await self._load_replicas(nodes)
        if s in EXCHANGE_STRATEGIES:
            await self._xserver.send_routes(self._rpc, [(sl.part, sl.addr) for sl in self._slots],
                                            uuid.uuid4().hex[:8], self.encoding)
        if self._uses_pipeline():
            await self._start_sink()
        if self.replan_interval and s == "hidp" and len(m.branches) > 1:
            self._monitor = replan.LinkMonitor(self, self.replan_interval).start()
        self.started = True
        return self

    async def replan(self, profile: dict) -> None:
        """Place the branches again with HiDP on ``profile`` (node address -> rtt, bw, t_ref,
        threads); the new parts are loaded before the slots are swapped in one step."""
        slots = await self._plan_hidp(list(profile), profile)
        await asyncio.gather(*[self._place(sl) for sl in slots])
        self._slots = slots
        self.plan["placement"] = self.placement

    async def _place(self, sl: _Slot) -> None:
        """Load ``sl`` on its node; a node that died since the scheduler listed it is marked
        dead and the part goes to a live node."""
        try:
            await self._load(sl.addr, sl.part)
        except _NET_ERRORS:
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

    def _uses_pipeline(self) -> bool:
        return any(sl.part.kind == "stage" for sl in self._slots)

    async def _start_sink(self) -> None:
        from distributed.core import Server
        from distributed.comm.addressing import get_address_host, parse_address
        from distributed.utils import get_ip

        sched = self.client.scheduler.address
        proto, _ = parse_address(sched)
        host = get_address_host(sched)
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            host = get_ip(host)
        self._server = Server({"lcp_deliver": self._on_deliver})
        sec = self.client.security
        kwargs = sec.get_listen_args("client") if sec else {}
        if sec is not None and sec.require_encryption:
            roles.guard(self._server, "dispatcher")        # deliveries from workers only
        await self._server.listen(f"{proto}://{host}:0", **kwargs)
        self._sink = self._server.listen_address

    async def close(self) -> None:
        """Stop the link monitor and the delivery server, fail every pending pipeline
        request."""
        if self._monitor is not None:
            await self._monitor.stop()
        for f in self._pending.values():
            if not f.done():
                f.set_exception(ConnectionError("dispatcher closed"))
        if self._server is not None:
            self._server.stop()
            self._server = None
        await self._pool.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    # -- HiDP planning ---------------------------------------------------------------------------
    async def _profile(self, nodes: list[str], ref: Part, xq: np.ndarray) -> dict[str, dict]:
        """Per node: round trip (s), bandwidth (bytes/s), seconds to run ``ref`` on ``xq``."""
        probe = bytes(64 * 1024)
        prof = {}
        xmsg = wire.encode(xq, self.model.tensors[ref.input], self.encoding)
        for a in nodes:
            small, big = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                await self._rpc(a, "lcp_probe", data=b"")
                small.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await self._rpc(a, "lcp_probe", data=probe)
                big.append(time.perf_counter() - t0)
            rtt = min(small)
            bw = len(probe) / max(min(big) - rtt, 1e-6)
            await self._load(a, ref)
            ts = []
            for _ in range(3):
                r = await self._rpc(a, "lcp_run", keys=[ref.key], x=xmsg, enc=self.encoding)
                if r.get("status") != "OK":
                    raise IRError(f"profiling {self._name(a)} failed: {r}")
                ts.append(r["t"])
            threads = int(self._workers[a].get("nthreads", 1) or 1)
            prof[a] = {"rtt": rtt, "bw": bw, "t_ref": float(np.median(ts)), "threads": threads}
        return prof

    async def _plan_hidp(self, nodes: list[str], prof: dict | None = None) -> list[_Slot]:
        m = self.model
        x0 = np.full((1, *m.input.shape), m.input.lo, dtype=np.int64)
        in_bytes = m.tensors[m.input.name].nbytes
        if len(m.branches) > 1:
            parts = branch_parts(m)
            prof = prof or await self._profile(nodes, parts[0], x0)
            self.plan_profile = prof
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
            slots = [_Slot(p.index, p, a) for a in nodes for p in assign[a]]
            slots.sort(key=lambda s: s.sid)
            est = max(finish(a, assign[a]) for a in nodes)
            self.plan["hidp"] = {
                "kind": "branches", "estimate_s": est,
                "profile": {self._name(a): v for a, v in prof.items()},
                "assignment": {self._name(a): [p.name for p in ps] for a, ps in assign.items()
                               if ps}}
            return slots
        whole = whole_part(m)
        prof = await self._profile(nodes, whole, x0)
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
        est, kind, hosts = min(options, key=lambda o: o[0])
        self.plan["hidp"] = {"kind": kind, "estimate_s": est,
                             "profile": {self._name(a): v for a, v in prof.items()},
                             "options": {o[1] + ("@" + self._name(o[2][0]) if o[1] == "whole"
                                                 else ""): o[0] for o in options}}
        if kind == "whole":
            return [_Slot(0, whole, hosts[0])]
        stages = stage_parts(m, choose_cuts(m, len(hosts)))
        return [_Slot(i, p, a) for i, (p, a) in enumerate(zip(stages, hosts))]

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
            req = _Req(next(self._ids), t0, t0 + self.timeout)
            try:
                if self._uses_pipeline():
                    y = await self._infer_pipeline(req, xq)
                elif self.strategy == "data":
                    y = await self._infer_data(req, xq)
                elif self.strategy in EXCHANGE_STRATEGIES:
                    y = await self._xserver.infer(
                        self._rpc, [(sl.part, sl.addr) for sl in self._slots], req.rid, xq,
                        self.encoding, max(0.0, req.deadline - time.monotonic()))
                else:
                    y = await self._infer_parts(req, xq)
            except _NET_ERRORS + (ConnectionError, IRError) as e:
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

    async def _call_group(self, req: _Req, slots: list[_Slot], xmsg: dict) -> dict[int, np.ndarray]:
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
            except _NET_ERRORS as e:
                req.retries += 1
                req.error = f"{self._name(addr)}: {type(e).__name__}: {e}"
                if not self.replace:
                    raise
                await self._replace(slots, addr)
                groups: dict[str, list[_Slot]] = {}
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
                except _NET_ERRORS + (IRError,):
                    await self._replace(slots, addr)
            elif st == "busy":
                await asyncio.sleep(min(0.01 * req.retries, 0.2))
            else:
                raise IRError(f"node {self._name(addr)} failed: {reply.get('error')}")

    async def _infer_parts(self, req: _Req, xq: np.ndarray) -> np.ndarray:
        """single, lcp, hidp: the input once per node holding parts, merge if branches."""
        xmsg = wire.encode(xq, self.model.tensors[self.model.input.name], self.encoding)
        slots = self._slots          # a re-plan swaps self._slots; this request keeps its own
        groups: dict[str, list[_Slot]] = {}
        for s in slots:
            groups.setdefault(s.addr, []).append(s)
        tasks = {asyncio.ensure_future(self._call_group(req, g, xmsg)): g
                 for g in groups.values()}
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, req.deadline -
                                                                time.monotonic()))
        for t in pending:
            t.cancel()
        outs: dict[int, np.ndarray] = {}
        for t in tasks:
            if t in done and t.exception() is None:
                outs.update(t.result())
            elif t in done:
                req.error = f"{type(t.exception()).__name__}: {t.exception()}"
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if slots[0].part.kind == "whole":
            if 0 not in outs:
                return None
            return outs[0]
        n = len(xq)
        branch_outs = []
        for s in slots:
            if s.sid in outs:
                branch_outs.append(outs[s.sid])
            else:
                req.missing.add(s.part.index)
                spec = self.model.tensors[s.part.output]
                branch_outs.append(np.full((n, *spec.shape), np.clip(0, spec.lo, spec.hi),
                                           dtype=np.int64))
        if len(req.missing) == len(slots):
            return None
        return self._golden.run_merge(branch_outs)

    async def _infer_data(self, req: _Req, xq: np.ndarray) -> np.ndarray:
        spec = self.model.tensors[self.model.input.name]
        k = min(len(self._slots), len(xq))
        chunks = np.array_split(xq, k)
        tasks = [asyncio.ensure_future(self._call_group(req, [s], wire.encode(c, spec,
                                                                              self.encoding)))
                 for s, c in zip(self._slots[:k], chunks)]
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, req.deadline -
                                                                time.monotonic()))
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            req.error = "request deadline"
            return None
        ys = []
        for t, s in zip(tasks, self._slots[:k]):
            if t.exception() is not None:
                req.error = f"{type(t.exception()).__name__}: {t.exception()}"
                return None
            ys.append(t.result()[s.sid])
        return np.concatenate(ys)

    # -- pipeline --------------------------------------------------------------------------------
    def _on_deliver(self, req: int, attempt: int, y=None, error=None, pos=None) -> None:
        fut = self._pending.get((req, attempt))
        if fut is not None and not fut.done():
            fut.set_result({"y": y, "error": error, "pos": pos})

    async def _infer_pipeline(self, req: _Req, xq: np.ndarray) -> np.ndarray:
        spec_in = self.model.tensors[self._slots[0].part.input]
        xmsg = wire.encode(xq, spec_in, self.encoding)
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
                    await self._rpc(first, "lcp_forward", min(self.call_timeout, remaining),
                                    reply=False, req=req.rid, attempt=attempt, route=route,
                                    pos=0, x=xmsg)
                    wait = min(self.call_timeout * len(self._slots), remaining)
                    got = await asyncio.wait_for(fut, wait)
                except _NET_ERRORS as e:
                    req.retries += 1
                    req.error = f"{type(e).__name__}: {e}"
                    self._route = None                 # send the routes again
                    await self._heal_chain(None)
                    continue
            finally:
                self._pending.pop((req.rid, attempt), None)
            if self.delay:
                await asyncio.sleep(self.delay)
            if got["error"] is None:
                return wire.decode(got["y"], self.model.tensors[self._slots[-1].part.output])
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
        chain = [[s.addr, s.part.key] for s in self._slots]
        async with self._route_lock:
            if self._route is None or self._route[1] != chain:
                rid = uuid.uuid4().hex[:8]
                addrs = sorted({c[0] for c in chain})
                replies = await asyncio.gather(*[
                    self._rpc(a, "lcp_route", route=rid, chain=chain, reply_to=self._sink,
                              enc=self.encoding) for a in addrs])
                for a, r in zip(addrs, replies):
                    if r.get("status") != "OK":
                        raise IRError(f"node {self._name(a)} refuses the route: {r.get('error')}")
                self._route = (rid, chain)
            return self._route[0], chain[0][0]

    async def _heal_chain(self, pos: int | None, error: str | None = None) -> None:
        """After a lost or failed pipeline request: reload an unknown part, or re-place the
        stages whose nodes do not answer a ping."""
        if pos is not None and error == "unknown-part":
            s = self._slots[pos]
            self._loaded.pop(s.addr, None)
            try:
                await self._load(s.addr, s.part)
                return
            except _NET_ERRORS + (IRError,):
                await self._replace([s], s.addr)
                return
        candidates = self._slots if pos is None else [self._slots[min(pos, len(self._slots) - 1)]]
        for s in candidates:
            try:
                await self._rpc(s.addr, "lcp_probe", min(self.call_timeout, 2.0))
            except _NET_ERRORS:
                if self.replace:
                    await self._replace([s], s.addr)

    # -- measurements ------------------------------------------------------------------------------
    async def node_stats(self, tcp: bool = True) -> dict[str, dict]:
        """``lcp_stats`` of every live node used by this dispatcher, by node name."""
        addrs = sorted({s.addr for s in self._slots if s.addr})
        out = {}
        for a in addrs:
            try:
                out[self._name(a)] = await self._rpc(a, "lcp_stats", tcp=tcp)
            except _NET_ERRORS as e:
                out[self._name(a)] = {"status": "unreachable", "error": repr(e)}
        return out

    @property
    def placement(self) -> dict[str, str]:
        """Part name (``whole#i`` for the data strategy's copies) -> node name (current, after
        any re-placement)."""
        if self.strategy == "data":
            return {f"{s.part.name}#{s.sid}": self._name(s.addr) for s in self._slots}
        return {s.part.name: self._name(s.addr) for s in self._slots}

    @property
    def slots(self) -> list[tuple[str, str, str]]:
        """``(part name, part key, node address)`` of every slot."""
        return [(s.part.name, s.part.key, s.addr) for s in self._slots]


def _ignore_event(event) -> None:
    logger.info("lcp: ignored a warn event from the cluster: %.200r", event)


@asynccontextmanager
async def connect(scheduler: str | None = None, *, n_workers: int = 4,
                  threads_per_worker: int = 1, security=None, processes: bool = True,
                  timeout: float = 60.0, plugin: NodePlugin | None = None):
    """An asynchronous Dask client with the node plugin registered.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://HOST:PORT`` or ``tls://...``); None starts an
        embedded :class:`distributed.LocalCluster` with ``n_workers`` worker processes (names
        ``0 .. n_workers-1``) on loopback, without dashboard, closed on exit.
    security : distributed.Security, optional
        TLS settings (:mod:`lcp.sw.cluster.security`: :func:`~.security.load_security` of the
        client's folder; for the embedded cluster :func:`~.security.local_security`, whose
        servers then load :mod:`~lcp.sw.cluster.roles`).
    plugin : NodePlugin, optional
        The node plugin to register (default ``NodePlugin()``), e.g. with a smaller queue.

    The client ignores Dask's ``warn`` events: its default handler unpickles them, and any
    worker can log one.
    """
    from distributed import Client, LocalCluster

    class _Client(Client):
        def subscribe_topic(self, topic, handler):
            super().subscribe_topic(topic, _ignore_event if topic == "warn" else handler)

    cluster = None
    try:
        if scheduler is None:
            kw = {}
            if security is not None:
                roles.install()
                kw = {"security": security, "protocol": "tls://",
                      "preload": [roles.PRELOAD], "preload_nanny": [roles.PRELOAD]}
            cluster = await LocalCluster(
                n_workers=n_workers, threads_per_worker=threads_per_worker,
                processes=processes, asynchronous=True, host="127.0.0.1",
                dashboard_address=None, memory_limit=0,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0",
                                  "preload": [roles.PRELOAD] if security is not None else []},
                **kw)
            target = cluster
        else:
            if security is not None:
                roles.install()
            target = scheduler
        client = await asyncio.wait_for(
            _Client(target, asynchronous=True, security=security, timeout=timeout), timeout)
        try:
            await client.register_plugin(plugin or NodePlugin(), name=PLUGIN_NAME)
            yield client
        finally:
            await client.close()
    finally:
        if cluster is not None:
            await cluster.close()


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
