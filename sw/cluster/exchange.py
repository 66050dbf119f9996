"""Serving models whose branches exchange tensors before the merge, node to node: the
``exchange`` strategy (any model of the exchange family, :attr:`lcp.ir.Model.exchanges`) and
the ``model-parallel`` strategy (a single-branch model divided by
:func:`~lcp.sw.cluster.modelpar.model_parallel` over the nodes, then served the same way).

Parts (:func:`exchange_parts`): one per branch, kind ``"xbranch"``. A branch that reads other
branches' tensors is not a standalone one-input model, so its part is the whole model with
every parameter outside the branch zeroed (same shapes, same tensor specs; the npz is
compressed, so the zeros cost almost nothing to ship); a node runs only branch ``index`` of it.

Protocol (Dask comms, msgpack only, tensors as :mod:`~lcp.sw.cluster.wire` messages):

``lcp_xroute(route, parts, peers, enc)`` (dispatcher -> node, once per placement)
    ``parts``: the part keys and branch indices this node runs; ``peers``: for every tensor
    one of them sends, the addresses of the nodes whose branches read it.
``lcp_xrun(route, req, keys, x)`` (dispatcher -> node, per request)
    Run the node's branches on input ``x``: each runs its layers in segments on the node's
    threads; after a segment whose last output other branches read, the node sends it once to
    every reading node (``lcp_xput``, one-way, node to node; a tensor for a branch on the same
    node stays in memory); before a segment that reads another branch's tensor it waits for
    it. Replies the branch outputs; the dispatcher runs the merge.
``lcp_xput(route, req, tensor, y)`` (node -> node, one-way)
    A tensor for this node's mailbox (the only exchange handler a worker certificate may call,
    :mod:`~lcp.sw.cluster.roles`).

Failures: a request whose node fails or times out is answered ``"failed"`` at its deadline
(no re-placement: the nodes of one request depend on each other within it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

import numpy as np

from lcp.counters import count_layer
from lcp.golden import Golden, run_layer
from lcp.ir import Branch, IRError, Layer, Model

from . import wire
from .parts import Part

__all__ = ["exchange_parts", "segments", "NodeExchange", "ExchangeServer"]

logger = logging.getLogger(__name__)


def _zeroed(layers: list[Layer]) -> list[Layer]:
    return [Layer(l.name, l.op, list(l.inputs), l.output, dict(l.attrs),
                  {k: np.zeros_like(v) for k, v in l.params.items()}) for l in layers]


def exchange_parts(model: Model) -> list[Part]:
    """One ``xbranch`` part per branch (module doc); ``macs`` and ``param_bytes`` are the
    branch's own."""
    parts = []
    for i, b in enumerate(model.branches):
        branches = [Branch(o.name, list(o.inputs), list(o.layers) if j == i else _zeroed(o.layers),
                           o.output) for j, o in enumerate(model.branches)]
        sub = Model(f"{model.name}:xbranch{i}", model.input, dict(model.tensors), branches,
                    Branch("merge", list(model.merge.inputs), _zeroed(model.merge.layers),
                           model.merge.output), model.dequant,
                    {**model.meta, "part_of": model.name, "part": f"xbranch{i}"})
        counts = [count_layer(model, l) for l in b.layers]
        parts.append(Part(sub.digest()[:24], "xbranch", i, sub, model.input.name, b.output,
                          sum(c.macs for c in counts), sum(c.param_bytes for c in counts)))
    return parts


def segments(model: Model, index: int) -> list[tuple[list[str], list[Layer], list[str]]]:
    """Branch ``index`` as ``(tensors to wait for, layers, tensors to send after)`` segments:
    a segment ends after a layer whose output another branch reads, or before a layer that
    reads another branch's tensor."""
    b = model.branches[index]
    received = set(b.inputs[1:])
    sent = {t for t, src, _ in model.exchanges if src == index}
    out, cur, waits = [], [], []
    for l in b.layers:
        need = [t for t in l.inputs if t in received and t not in waits]
        if need and cur:
            out.append((waits, cur, []))
            cur, waits = [], []
        waits = waits + need
        cur.append(l)
        if l.output in sent:
            out.append((waits, cur, [l.output]))
            cur, waits = [], []
    if cur or waits:
        out.append((waits, cur, []))
    return out


class NodeExchange:
    """The node side (installed by :class:`~lcp.sw.cluster.node.NodePlugin`)."""

    HANDLERS = ("lcp_xroute", "lcp_xrun", "lcp_xput")

    def __init__(self, node, max_mail: int = 4096):
        self.node = node
        self.routes: OrderedDict[str, dict] = OrderedDict()
        #: ``(route, req)`` -> tensor -> future of its wire message
        self.mail: OrderedDict[tuple, dict] = OrderedDict()
        self.max_mail = max_mail

    def install(self, worker) -> None:
        for name in self.HANDLERS:
            worker.handlers[name] = getattr(self, name)

    async def lcp_xroute(self, route: str, parts: list, peers: dict, enc: str = "packed") -> dict:
        plans = {}
        for key, index in parts:
            p = self.node.parts.get(key)
            if p is None:
                return {"status": "unknown-part", "keys": [key]}
            plans[key] = (int(index), segments(p.model, int(index)))
        self.routes[route] = {"plans": plans, "peers": {t: list(a) for t, a in peers.items()},
                              "enc": enc}
        while len(self.routes) > self.node.max_parts:
            self.routes.popitem(last=False)
        return {"status": "OK"}

    def _box(self, route: str, req: int, tensor: str) -> asyncio.Future:
        box = self.mail.get((route, req))
        if box is None:
            box = self.mail[(route, req)] = {}
            while len(self.mail) > self.max_mail:        # requests that never finished here
                _, old = self.mail.popitem(last=False)
                for f in old.values():
                    f.cancel()
        fut = box.get(tensor)
        if fut is None:
            fut = box[tensor] = asyncio.get_running_loop().create_future()
        return fut

    async def lcp_xput(self, route: str, req: int, tensor: str, y: dict) -> None:
        fut = self._box(route, req, tensor)
        if not fut.done():
            fut.set_result(y)

    async def lcp_xrun(self, route: str, req: int, keys: list, x: dict,
                       limit: float = 30.0) -> dict:
        node = self.node
        r = self.routes.get(route)
        if r is None:
            return {"status": "unknown-route"}
        missing = [k for k in keys if k not in node.parts]
        if missing:
            return {"status": "unknown-part", "keys": missing}
        node.counters["requests"] += 1
        t0 = time.perf_counter()
        try:
            if node.delay:
                await asyncio.sleep(node.delay)
            ys = await asyncio.wait_for(asyncio.gather(*[
                self._branch(r, route, req, k, x) for k in keys]), limit)
            return {"status": "OK", "y": ys, "t": time.perf_counter() - t0,
                    "node": node.worker.name}
        except Exception as e:
            node.counters["errors"] += 1
            return {"status": "error", "error": f"{type(e).__name__}: {e}"}
        finally:
            self.mail.pop((route, req), None)

    async def _branch(self, r: dict, route: str, req: int, key: str, xmsg: dict) -> dict:
        node = self.node
        part = node.parts[key]
        part.runs += 1
        model = part.model
        index, plan = r["plans"][key]
        enc = r["enc"]
        loop = asyncio.get_running_loop()
        env = {model.input.name: wire.decode(xmsg, model.tensors[model.input.name])}
        sends = []
        for waits, layers, send in plan:
            for t in waits:
                env[t] = wire.decode(await self._box(route, req, t), model.tensors[t])
            await loop.run_in_executor(node.pool, self._run, model, layers, env)
            for t in send:
                y = wire.encode(env[t], model.tensors[t], enc)
                for addr in r["peers"].get(t, []):
                    if addr == node.worker.address:
                        fut = self._box(route, req, t)
                        if not fut.done():
                            fut.set_result(y)
                    else:
                        sends.append(asyncio.ensure_future(node.rpc.call(
                            addr, "lcp_xput", reply=False, check=node._peer_must_be("worker"),
                            route=route, req=req, tensor=t, y=y)))
        if sends:
            await asyncio.gather(*sends)
        out = model.branches[index].output
        return wire.encode(env[out], model.tensors[out], enc)

    def _run(self, model: Model, layers: list[Layer], env: dict) -> None:
        t0 = time.perf_counter()
        for l in layers:
            env[l.output] = run_layer(l, [env[t] for t in l.inputs],
                                      [model.tensors[t] for t in l.inputs])
        dt = time.perf_counter() - t0
        self.node.counters["compute_s"] += dt
        if self.node.slowdown > 1.0:
            time.sleep(dt * (self.node.slowdown - 1.0))


class ExchangeServer:
    """The dispatcher side for one served model: place the parts, send the routes, answer
    requests (the merge runs here, on the served model's golden)."""

    def __init__(self, model: Model):
        if not model.exchanges:
            logger.info("lcp: %s has no exchange points: the exchange strategy serves it as "
                        "independent branches", model.name)
        self.model = model
        self.parts = exchange_parts(model)
        self.golden = Golden(model)
        self.route: str | None = None

    def place(self, nodes: list[str]) -> list[tuple[Part, str]]:
        return [(p, nodes[i % len(nodes)]) for i, p in enumerate(self.parts)]

    async def send_routes(self, rpc, slots, route: str, enc: str) -> None:
        """``slots``: ``(part, address)`` pairs."""
        at = {p.index: a for p, a in slots}
        peers: dict[str, dict[str, list[str]]] = {}
        for t, src, dst in self.model.exchanges:
            lst = peers.setdefault(at[src], {}).setdefault(t, [])
            if at[dst] not in lst:
                lst.append(at[dst])
        by_node: dict[str, list] = {}
        for p, a in slots:
            by_node.setdefault(a, []).append([p.key, p.index])
        replies = await asyncio.gather(*[rpc(a, "lcp_xroute", route=route, parts=ps,
                                             peers=peers.get(a, {}), enc=enc)
                                         for a, ps in by_node.items()])
        for a, rep in zip(by_node, replies):
            if rep.get("status") != "OK":
                raise IRError(f"node {a} refuses the exchange route: {rep}")
        self.route = route

    async def infer(self, rpc, slots, req: int, xq: np.ndarray, enc: str,
                    timeout: float) -> np.ndarray:
        xmsg = wire.encode(xq, self.model.tensors[self.model.input.name], enc)
        by_node: dict[str, list[Part]] = {}
        for p, a in slots:
            by_node.setdefault(a, []).append(p)
        replies = await asyncio.gather(*[
            rpc(a, "lcp_xrun", timeout, route=self.route, req=req, keys=[p.key for p in ps],
                x=xmsg, limit=timeout) for a, ps in by_node.items()])
        outs: dict[int, np.ndarray] = {}
        for (a, ps), rep in zip(by_node.items(), replies):
            if rep.get("status") != "OK":
                raise IRError(f"node {a}: {rep.get('status')} {rep.get('error', '')}".strip())
            for p, y in zip(ps, rep["y"]):
                outs[p.index] = wire.decode(y, self.model.tensors[p.output])
        return self.golden.run_merge([outs[i] for i in range(len(self.parts))])
