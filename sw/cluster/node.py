"""The node side: a Dask worker plugin that keeps model parts loaded and runs them.

:class:`NodePlugin` adds these handlers to a Dask worker (called by the dispatcher through
Dask's RPC, i.e. Dask's comm layer with its TLS; every argument is msgpack data, tensors travel
as :mod:`~lcp.sw.cluster.wire` messages, parts as IR JSON + npz bytes, nothing is unpickled):

``lcp_load(key, kind, index, doc, npz, backend)``
    Load a part (:func:`~lcp.sw.cluster.parts.part_from_wire`, digest checked) with an executor
    from :func:`lcp.executor.get_executor`; kept until evicted (least recently used beyond
    ``max_parts``).
``lcp_run(keys, x, enc)``
    Run the parts ``keys`` (all reading the same tensor) on the batch ``x``; several parts run
    side by side on the node's threads, one part with a batch is split over the threads (the
    local split). Replies ``{"status": "OK", "y": [...], "t": seconds}``, or ``"busy"`` when
    ``max_queue`` requests are already in the node, or ``"unknown-part"`` after a restart.
``lcp_route(route, chain, reply_to, enc)``
    Set up a pipeline route once (as DEFER tells each node its next node at setup):
    ``chain`` is ``[[address, part key], ...]`` of the stages, ``reply_to`` the dispatcher's
    delivery address, which must be on the host the route comes from (a node never sends
    results to a third party). Kept per node (the last ``max_parts`` routes).
``lcp_forward(req, attempt, route, pos, x)``
    One-way (``reply=False``) pipeline hop carrying only the request ids, the route id and the
    tensor: run stage ``chain[pos]``, send the result to ``chain[pos + 1]`` or, at the end,
    ``lcp_deliver`` it to the dispatcher. Errors are delivered to the dispatcher too, so that
    it never waits for a lost hop longer than its timeout (an unknown route cannot be answered:
    the dispatcher times out, sends its routes again and retries).
``lcp_stats(reset)``, ``lcp_probe(data)``, ``lcp_unload(keys)``
    Memory (RSS), loaded parts, counters and kernel TCP byte counters; a bandwidth probe.

Who may call what: on a TLS cluster the worker's handler table is guarded by
:mod:`~lcp.sw.cluster.roles` (only ``lcp_forward`` is open to other workers, everything else
needs the dispatcher's client certificate), and a node sends a pipeline hop only to a peer
holding a worker certificate and a delivery only to one holding a client certificate. Hops
and deliveries connect with one attempt (:mod:`~lcp.sw.cluster.rpc`): a dead next stage is
reported to the dispatcher at once.

Emulation knobs, read from the worker's environment at setup: ``LCP_NODE_SLOWDOWN`` (a node
``s`` times slower than the machine: compute time is stretched by sleeping in the compute
thread) and ``LCP_LINK_DELAY_MS`` (one-way delay added to every data message the node receives,
standing in for link latency, which ``tc netem`` would give but is absent here).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from lcp.counters import count_layer
from lcp.executor import get_executor
from lcp.ir import Model

from . import wire
from .netcount import tcp_connections
from .parts import part_from_wire
from .roles import peer_role
from .rpc import FastRPC

__all__ = ["NodePlugin", "PLUGIN_NAME", "HANDLERS"]

PLUGIN_NAME = "lcp-node"
#: Handler names a node adds to its Dask worker.
HANDLERS = ("lcp_load", "lcp_run", "lcp_route", "lcp_forward", "lcp_stats", "lcp_probe",
            "lcp_unload")

logger = logging.getLogger(__name__)


def _rss() -> int:
    import psutil
    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class _Loaded:
    model: Model
    executor: object
    kind: str
    index: int
    backend: str
    param_bytes: int
    runs: int = 0
    lock: object = field(default=None)


class _Node:
    """State of one worker: loaded parts, a compute thread pool, counters."""

    def __init__(self, worker, max_queue: int, max_parts: int):

        self.worker = worker
        self.max_queue = max_queue
        self.max_parts = max_parts
        self.parts: OrderedDict[str, _Loaded] = OrderedDict()
        self.threads = max(1, int(getattr(worker.state, "nthreads", 1) or 1))
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="lcp-node")
        self.slowdown = max(1.0, float(os.environ.get("LCP_NODE_SLOWDOWN", "1") or 1))
        self.delay = max(0.0, float(os.environ.get("LCP_LINK_DELAY_MS", "0") or 0)) / 1e3
        self.base_rss = _rss()
        self.inflight = 0
        self.counters = {"requests": 0, "busy": 0, "errors": 0, "compute_s": 0.0}
        self.tasks: set[asyncio.Task] = set()
        self.routes: OrderedDict[str, tuple] = OrderedDict()
        self._threading = threading
        self.rpc = FastRPC(worker.connection_args)
        sec = getattr(worker, "security", None)
        self.tls = bool(sec is not None and sec.require_encryption)

    def _peer_must_be(self, role: str):
        """A connection check for :meth:`FastRPC.call`: on TLS, the peer's certificate role."""
        def check(comm):
            if self.tls and peer_role(comm) != role:
                raise PermissionError(f"{comm.peer_address} holds no {role} certificate "
                                      f"({peer_role(comm)})")
        return check

    # -- handlers ---------------------------------------------------------------------------
    def install(self) -> None:
        for name in HANDLERS:
            self.worker.handlers[name] = getattr(self, name)

    async def lcp_load(self, key: str, kind: str, index: int, doc: str, npz: bytes,
                       backend: str = "golden") -> dict:
        if key in self.parts and self.parts[key].backend == backend:
            self.parts.move_to_end(key)
            return {"status": "OK", "cached": True, "rss": _rss()}
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            loaded = await loop.run_in_executor(self.pool, self._load_sync, key, kind, index,
                                                doc, npz, backend)
        except Exception as e:     # a bad part or an unavailable backend: tell the dispatcher
            return {"status": "error", "error": f"{type(e).__name__}: {e}"}
        self.parts[key] = loaded
        while len(self.parts) > self.max_parts:
            self.parts.popitem(last=False)
        return {"status": "OK", "cached": False, "load_s": time.perf_counter() - t0,
                "rss": _rss()}

    def _load_sync(self, key, kind, index, doc, npz, backend) -> _Loaded:

        model = part_from_wire({"key": key, "doc": doc, "npz": npz})
        ex = get_executor(backend, model)
        pb = sum(count_layer(model, l).param_bytes for l in model.layers())
        return _Loaded(model, ex, kind, int(index), backend, pb, lock=self._threading.Lock())

    async def lcp_unload(self, keys: list[str] | None = None) -> dict:
        for k in list(self.parts) if keys is None else keys:
            p = self.parts.pop(k, None)
            if p is not None:
                p.executor.close()
        return {"status": "OK", "parts": list(self.parts)}

    async def lcp_run(self, keys: list[str], x: dict, enc: str = "packed") -> dict:
        missing = [k for k in keys if k not in self.parts]
        if missing:
            return {"status": "unknown-part", "keys": missing}
        if self.inflight >= self.max_queue:
            self.counters["busy"] += 1
            return {"status": "busy"}
        self.inflight += 1
        self.counters["requests"] += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            loop = asyncio.get_running_loop()
            ys, t = await loop.run_in_executor(None, self._run_sync, keys, x, enc)
            return {"status": "OK", "y": ys, "t": t, "node": self.worker.name}
        except Exception as e:
            self.counters["errors"] += 1
            return {"status": "error", "error": f"{type(e).__name__}: {e}"}
        finally:
            self.inflight -= 1

    def _run_sync(self, keys, xmsg, enc):
        """Decode, run every part (side by side on the pool), encode; wall seconds."""
        parts = [self.parts[k] for k in keys]
        for k in keys:
            self.parts.move_to_end(k)
        spec = parts[0].model.tensors[parts[0].model.input.name]
        x = wire.decode(xmsg, spec)
        t0 = time.perf_counter()
        if len(parts) == 1 and len(x) > 1 and self.threads > 1:
            chunks = [c for c in np.array_split(x, min(self.threads, len(x))) if len(c)]
            futs = [self.pool.submit(self._compute, parts[0], c) for c in chunks]
            outs = [np.concatenate([f.result() for f in futs])]
        else:
            futs = [self.pool.submit(self._compute, p, x) for p in parts]
            outs = [f.result() for f in futs]
        t = time.perf_counter() - t0
        self.counters["compute_s"] += t
        return [wire.encode(o, p.model.tensors[p.model.output], enc)
                for o, p in zip(outs, parts)], t

    def _compute(self, part: _Loaded, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        if part.backend == "golden":
            y = part.executor.run_int(x)
        else:
            with part.lock:
                y = part.executor.run_int(x)
        part.runs += 1
        if self.slowdown > 1.0:
            time.sleep((time.perf_counter() - t0) * (self.slowdown - 1.0))
        return np.asarray(y, dtype=np.int64)

    async def lcp_route(self, comm, route: str, chain: list, reply_to: str,
                        enc: str = "packed") -> dict:
        from distributed.comm.addressing import get_address_host

        caller = get_address_host(comm.peer_address)
        try:
            target = get_address_host(reply_to)
        except ValueError:
            target = None
        if target != caller:
            return {"status": "error", "error": f"reply_to {reply_to!r} is not on the host of "
                                               f"the caller ({caller})"}
        self.routes[route] = ([list(c) for c in chain], reply_to, enc)
        self.routes.move_to_end(route)
        while len(self.routes) > self.max_parts:
            self.routes.popitem(last=False)
        return {"status": "OK"}

    async def lcp_forward(self, req: int, attempt: int, route: str, pos: int, x: dict) -> None:
        if route not in self.routes:
            logger.info("lcp: request %s on unknown route %s dropped", req, route)
            return
        chain, reply_to, enc = self.routes[route]
        key = chain[pos][1]
        if key not in self.parts:
            await self._deliver(reply_to, req, attempt, error="unknown-part", pos=pos)
            return
        if self.inflight >= self.max_queue:
            self.counters["busy"] += 1
            await self._deliver(reply_to, req, attempt, error="busy", pos=pos)
            return
        self.inflight += 1
        task = asyncio.ensure_future(self._stage(req, attempt, route, chain, pos, reply_to, x,
                                                 enc))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _stage(self, req, attempt, route, chain, pos, reply_to, x, enc):
        self.counters["requests"] += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            loop = asyncio.get_running_loop()
            try:
                (y,), _ = await loop.run_in_executor(None, self._run_sync, [chain[pos][1]], x,
                                                     enc)
            except Exception as e:
                self.counters["errors"] += 1
                await self._deliver(reply_to, req, attempt, error=f"{type(e).__name__}: {e}",
                                    pos=pos)
                return
        finally:
            self.inflight -= 1
        if pos + 1 == len(chain):
            await self._deliver(reply_to, req, attempt, y=y)
            return
        nxt = chain[pos + 1][0]
        try:
            await asyncio.wait_for(
                self.rpc.call(nxt, "lcp_forward", reply=False, check=self._peer_must_be("worker"),
                              req=req, attempt=attempt, route=route, pos=pos + 1, x=y),
                timeout=10.0)
        except Exception as e:
            await self._deliver(reply_to, req, attempt, error=f"forward failed: {e!r}",
                                pos=pos + 1)

    async def _deliver(self, reply_to, req, attempt, y=None, error=None, pos=None):
        try:
            await asyncio.wait_for(
                self.rpc.call(reply_to, "lcp_deliver", reply=False,
                              check=self._peer_must_be("client"), req=req, attempt=attempt,
                              y=y, error=error, pos=pos),
                timeout=10.0)
        except Exception as e:      # the dispatcher times the request out on its own
            logger.info("lcp: could not deliver request %s to %s: %r", req, reply_to, e)

    async def lcp_stats(self, reset: bool = False, tcp: bool = True) -> dict:

        out = {
            "status": "OK", "name": str(self.worker.name), "address": self.worker.address,
            "pid": os.getpid(), "threads": self.threads, "slowdown": self.slowdown,
            "rss": _rss(), "peak_rss": _peak_rss(), "base_rss": self.base_rss,
            "parts": {k: {"kind": p.kind, "index": p.index, "backend": p.backend,
                          "param_bytes": p.param_bytes, "runs": p.runs}
                      for k, p in self.parts.items()},
            "inflight": self.inflight, **self.counters,
            "tcp": tcp_connections() if tcp else {},
        }
        if reset:
            self.counters = {"requests": 0, "busy": 0, "errors": 0, "compute_s": 0.0}
        return out

    async def lcp_probe(self, data: bytes = b"") -> dict:
        return {"status": "OK", "n": len(data)}


class NodePlugin(WorkerPlugin):
    """Install the ``lcp_*`` handlers on a worker (idempotent: a worker keeps its loaded parts
    when the plugin is registered again by another dispatcher session).

    Parameters
    ----------
    max_queue : int
        Requests a node accepts at once (beyond: ``busy``), the node's bounded queue.
    max_parts : int
        Loaded parts kept per node (least recently used evicted).
    """

    name = PLUGIN_NAME

    def __init__(self, max_queue: int = 64, max_parts: int = 64):
        if max_queue < 1 or max_parts < 1:
            raise ValueError(f"max_queue and max_parts must be >= 1, not {max_queue}, "
                             f"{max_parts}")
        self.max_queue = int(max_queue)
        self.max_parts = int(max_parts)

    def setup(self, worker) -> None:
        node = getattr(worker, "_lcp_node", None)
        if node is None:
            node = _Node(worker, self.max_queue, self.max_parts)
            worker._lcp_node = node
        else:
            node.max_queue, node.max_parts = self.max_queue, self.max_parts
        node.install()

    def teardown(self, worker) -> None:
        """Keep the handlers and parts: a re-registration replaces the plugin object only."""
