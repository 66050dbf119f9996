"""What the cluster simulator simulates: the cluster (nodes, links) and a strategy's plan of one
request as a graph of compute and network tasks, with MACs and bytes from the IR.

A :class:`NodeSpec` is a device: cores, memory and a cost per op kind (:class:`OpCost`:
``fixed_s + per_unit_s * work``, work = the layer's MACs from :mod:`lcp.counters`, or its
output elements for an op without MACs). A :class:`LinkSpec` is a device's link to the
network: bandwidth, one-way latency per message, bytes of framing per message, loss. A
:class:`ClusterSpec` holds the dispatcher, the nodes, their links, the medium (``switched``:
every device its own full-duplex link; ``shared``: one medium, WiFi-like, one message at a
time; with ``broadcast`` a tensor one device sends to several is one transmission, as a
multicast on a radio medium) and optionally the host cores every device shares (an emulation
on one machine).

:func:`build_plan` turns ``(model, strategy, cluster)`` into a :class:`Plan`: a list of
:class:`Task` in dependency order. Strategies (the runtime's, :mod:`.dispatcher`, plus two
modelled here from the IR alone):

``single``     the whole model on node 0 (input from the dispatcher, output back).
``data``       the whole model on every node, the batch split in chunks.
``pipeline``   DEFER's chain of layer stages (cuts of :func:`.parts.choose_cuts`), one-way hops.
``lcp``        every branch on a node (round robin), input once per node, one reply per node,
               merge on the dispatcher; tensors a branch reads from another branch (exchange
               points, :attr:`lcp.ir.Model.exchanges`) travel from node to node when produced.
``exchange``   ``lcp`` on a model that has exchange points (refused without).
``hidp``       the placement (whole model on one node, a pipeline of k stages, or branches
               assigned greedily to nodes) that this same model predicts fastest.
``model-parallel``  each layer's output channels divided over the N nodes (work / N), the
               input sent to every node, an all-gather of each weighted layer's (activated)
               output among the nodes, the last slices to the dispatcher.

Wire bytes are those of :func:`lcp.sw.cluster.wire.encode` for ``packed`` (IR bit widths) or
``float32`` (4 bytes a value, what a float framework sends), plus the link's framing bytes.
"""

from __future__ import annotations

import numpy as np

from lcp.counters import count_layer
from lcp.ir import IRError, Layer, Model, TensorSpec

from . import wire
from .parts import chain, choose_cuts
from .simspec import (BROADCAST, DISPATCHER, SIM_ENCODINGS, SIM_STRATEGIES, ClusterSpec, LinkSpec,
                      NodeSpec, OpCost, Plan, Task)
from .simulator import simulate

__all__ = ["OpCost", "NodeSpec", "LinkSpec", "ClusterSpec", "Task", "Plan", "SIM_STRATEGIES",
           "SIM_ENCODINGS", "layer_work", "wire_bytes", "build_plan", "DISPATCHER", "BROADCAST"]

def layer_work(model: Model, layer: Layer) -> int:
    """The work unit of a layer: its MACs (IR counters), or its output elements if none."""
    c = count_layer(model, layer)
    return c.macs if c.macs else int(np.prod(model.tensors[layer.output].shape))


_SIZE_CACHE: dict = {}


def wire_bytes(spec: TensorSpec, encoding: str, batch: int = 1, share: float = 1.0) -> int:
    """Payload bytes of ``batch`` images of ``spec`` (a ``share`` of its channels) in
    ``encoding``, as :func:`.wire.encode` produces them (header not included)."""
    if encoding not in SIM_ENCODINGS:
        raise IRError(f"the simulator sizes only {', '.join(SIM_ENCODINGS)} messages "
                      f"(a compressed size depends on the values), not {encoding!r}")
    key = (spec.shape, spec.lo, spec.hi, spec.bipolar, encoding)
    if key not in _SIZE_CACHE:
        x = np.full((1, *spec.shape), 1 if spec.bipolar else spec.lo, dtype=np.int64)
        _SIZE_CACHE[key] = wire.payload_nbytes(wire.encode(x, spec, encoding))
    return int(np.ceil(_SIZE_CACHE[key] * batch * share))


class _Builder:
    def __init__(self, model: Model, cluster: ClusterSpec, encoding: str, batch: int):
        self.m, self.c, self.enc, self.batch = model, cluster, encoding, batch
        self.tasks: list[Task] = []

    def add(self, t: Task) -> int:
        self.tasks.append(t)
        return len(self.tasks) - 1

    def cpu(self, node: str, layers: list[Layer], deps, share: float = 1.0, label="") -> int:
        n = self.c.node(node)
        s = sum(n.layer_seconds(l.op, layer_work(self.m, l), self.batch, share)
                for l in layers)
        return self.add(Task("cpu", node, seconds=s, deps=tuple(deps),
                             label=label or (layers[0].name if len(layers) == 1 else
                                             f"{layers[0].name}..{layers[-1].name}")))

    def send(self, src: str, dst: str, tensors: list[str], deps, share: float = 1.0,
             label="") -> int:
        b = sum(wire_bytes(self.m.tensors[t], self.enc, self.batch, share) for t in tensors)
        return self.add(Task("net", src, nbytes=b, dst=dst, deps=tuple(deps),
                             label=label or ",".join(tensors)))

    # -- the layer graph over a placement -------------------------------------------------------
    def layer_dag(self, where_branch, merge_node: str, reply_grouped: bool) -> None:
        """Every branch layer on ``where_branch(i)``, the merge on ``merge_node``; a tensor
        crosses to a node the first time a layer there reads it. With ``reply_grouped`` the
        branch outputs a node holds go to the merge node in one message when all are done."""
        m = self.m
        loc = {m.input.name: DISPATCHER}
        prod: dict[str, int | None] = {m.input.name: None}
        arrived: dict[tuple[str, str], int | None] = {}

        def need(t: str, node: str) -> list[int]:
            if loc[t] == node:
                return [] if prod[t] is None else [prod[t]]
            key = (t, BROADCAST if self.c.broadcast else node)
            if key not in arrived:
                deps = [] if prod[t] is None else [prod[t]]
                arrived[key] = self.send(loc[t], key[1], [t], deps)
            return [arrived[key]]

        for i, layer in m.schedule():
            node = where_branch(i)
            deps = [d for t in layer.inputs for d in need(t, node)]
            prod[layer.output] = self.cpu(node, [layer], deps, label=f"b{i}:{layer.name}")
            loc[layer.output] = node
        if reply_grouped:
            by_node: dict[str, list[str]] = {}
            for b in m.branches:
                if loc[b.output] != merge_node:
                    by_node.setdefault(loc[b.output], []).append(b.output)
            for node, ts in by_node.items():
                tid = self.send(node, merge_node, ts, [prod[t] for t in ts],
                                label=f"reply {len(ts)} branch output(s)")
                for t in ts:
                    arrived[(t, BROADCAST if self.c.broadcast else merge_node)] = tid
        for layer in m.merge.layers:
            deps = [d for t in layer.inputs for d in need(t, merge_node)]
            prod[layer.output] = self.cpu(merge_node, [layer], deps, label=f"merge:{layer.name}")
            loc[layer.output] = merge_node
        need(m.output, DISPATCHER)

    def pipeline(self, hosts: list[str]) -> list[list[str]]:
        layers = chain(self.m)
        cuts = choose_cuts(self.m, len(hosts)) if len(hosts) > 1 else []
        bounds = [-1, *cuts, len(layers) - 1]
        prev, t_in, src = None, self.m.input.name, DISPATCHER
        stages = []
        for s in range(len(bounds) - 1):
            sl = layers[bounds[s] + 1: bounds[s + 1] + 1]
            host = hosts[s]
            tx = self.send(src, host, [t_in], [] if prev is None else [prev])
            prev = self.cpu(host, sl, [tx], label=f"stage{s}")
            t_in, src = sl[-1].output, host
            stages.append([l.name for l in sl])
        self.send(src, DISPATCHER, [t_in], [prev])
        return stages

    def model_parallel(self, hosts: list[str]) -> int:
        """Each weighted layer (one with parameters) and the layers after it up to the next
        weighted one form a group; every node computes 1/N of each group; the group's output
        is all-gathered (each node's slice to every other node). Returns the gathers."""
        layers = chain(self.m)
        groups: list[list[Layer]] = []
        for l in layers:
            if count_layer(self.m, l).params or not groups:
                groups.append([l])
            else:
                groups[-1].append(l)
        n = len(hosts)
        share = 1.0 / n
        if self.c.broadcast:
            x = self.send(DISPATCHER, BROADCAST, [self.m.input.name], [])
            recv = {h: [x] for h in hosts}
        else:
            recv = {h: [self.send(DISPATCHER, h, [self.m.input.name], [])] for h in hosts}
        gathers = 0
        for g, grp in enumerate(groups):
            comp = {h: self.cpu(h, grp, recv[h], share, label=f"group{g}/{n}") for h in hosts}
            out = grp[-1].output
            if g == len(groups) - 1:
                for h in hosts:
                    self.send(h, DISPATCHER, [out], [comp[h]], share, label=f"slice of {out}")
                break
            gathers += 1
            nxt = {h: [comp[h]] for h in hosts}
            for h in hosts:
                if self.c.broadcast:                  # one transmission reaches every node
                    tx = self.send(h, BROADCAST, [out], [comp[h]], share, label=f"gather {out}")
                for o in hosts:
                    if o != h:
                        nxt[o].append(tx if self.c.broadcast else
                                      self.send(h, o, [out], [comp[h]], share,
                                                label=f"gather {out}"))
            recv = nxt
        return gathers


def _hidp_candidates(model: Model, cluster: ClusterSpec):
    names = [n.name for n in cluster.nodes]
    yield "whole", {"kind": "whole", "nodes": names[:1]}
    if len(model.branches) == 1:
        for k in range(2, len(names) + 1):
            yield f"pipeline{k}", {"kind": "pipeline", "nodes": names[:k]}
    else:
        # greedy: largest branch first onto the node whose finish time grows least
        work = [sum(layer_work(model, l) for l in b.layers) for b in model.branches]
        load = {n: 0.0 for n in names}
        assign = {}
        for i in sorted(range(len(work)), key=lambda i: -work[i]):
            cores = {n.name: n.cores for n in cluster.nodes}
            best = min(names, key=lambda a: ((load[a] + work[i]) / cores[a], names.index(a)))
            assign[i] = best
            load[best] += work[i]
        yield "branches", {"kind": "branches", "assign": assign}
        yield "lcp-round-robin", {"kind": "branches",
                                  "assign": {i: names[i % len(names)]
                                             for i in range(len(model.branches))}}


def build_plan(model: Model, strategy: str, cluster: ClusterSpec, *, encoding: str = "packed",
               batch: int = 1, stages: int | None = None, nodes: int | None = None) -> Plan:
    """The task graph of one request of ``batch`` images (see the module docstring).

    Raises
    ------
    IRError
        on an unknown strategy or encoding, or a plan the model does not allow (a pipeline or
        model parallelism of a multi-branch model, ``exchange`` without exchange points).
    """
    if strategy not in SIM_STRATEGIES:
        raise IRError(f"unknown strategy {strategy!r} (known: {', '.join(SIM_STRATEGIES)})")
    if batch < 1:
        raise IRError(f"batch must be >= 1, not {batch}")
    names = [n.name for n in cluster.nodes][:nodes or None]
    b = _Builder(model, cluster, encoding, batch)
    placement: dict = {}
    notes: list = []
    if strategy == "single":
        b.layer_dag(lambda i: names[0], names[0], False)
        placement = {names[0]: "whole"}
    elif strategy in ("lcp", "exchange"):
        if strategy == "exchange" and not model.exchanges:
            raise IRError(f"{model.name}: the exchange strategy needs a model with exchange "
                          f"points (Model.exchanges is empty)")
        b.layer_dag(lambda i: names[i % len(names)], DISPATCHER, True)
        for i in range(len(model.branches)):
            placement.setdefault(names[i % len(names)], []).append(f"branch{i}")
    elif strategy == "data":
        k = min(len(names), batch)
        chunks = np.array_split(np.arange(batch), k)
        for h, ch in zip(names, chunks):
            sub = _Builder(model, cluster, encoding, len(ch))
            sub.layer_dag(lambda i, h=h: h, h, False)
            off = len(b.tasks)
            for t in sub.tasks:
                t.deps = tuple(d + off for d in t.deps)
                b.tasks.append(t)
            placement[h] = f"whole x {len(ch)} image(s)"
    elif strategy == "pipeline":
        hosts = names[:stages or len(names)]
        st = b.pipeline(hosts)
        placement = {h: f"stage{s}: {len(ls)} layers" for s, (h, ls) in
                     enumerate(zip(hosts, st))}
        if len(st) < len(hosts):
            notes.append(f"only {len(st)} stages can be cut")
    elif strategy == "model-parallel":
        g = b.model_parallel(names)
        placement = {h: f"1/{len(names)} of every layer" for h in names}
        notes.append(f"{g} all-gathers among {len(names)} nodes")
    else:                                              # hidp: this model picks the placement
        return _plan_hidp(model, cluster, encoding, batch, names)
    return Plan(strategy, model.name, encoding, batch, b.tasks, placement, notes)


def _plan_hidp(model, cluster, encoding, batch, names) -> Plan:
    sub = ClusterSpec(cluster.dispatcher, [cluster.node(n) for n in names], cluster.links,
                      cluster.medium, cluster.host_cores, cluster.broadcast)
    best = None
    estimates = {}
    for label, cand in _hidp_candidates(model, sub):
        b = _Builder(model, sub, encoding, batch)
        if cand["kind"] == "whole":
            b.layer_dag(lambda i, h=cand["nodes"][0]: h, cand["nodes"][0], False)
            placement = {cand["nodes"][0]: "whole"}
        elif cand["kind"] == "pipeline":
            st = b.pipeline(cand["nodes"])
            if len(st) < len(cand["nodes"]):
                continue
            placement = {h: f"stage{s}" for s, h in enumerate(cand["nodes"])}
        else:
            a = cand["assign"]
            b.layer_dag(lambda i, a=a: a[i], DISPATCHER, True)
            placement = {}
            for i in sorted(a):
                placement.setdefault(a[i], []).append(f"branch{i}")
        plan = Plan("hidp", model.name, encoding, batch, b.tasks, placement)
        est = simulate(plan, sub, requests=1, concurrency=1).latency_s[0]
        estimates[label] = est
        if best is None or est < best[0]:
            best = (est, label, plan)
    est, label, plan = best
    plan.notes = [f"HiDP placement: {label} (estimates, ms: " +
                  ", ".join(f"{k} {1e3 * v:.2f}" for k, v in estimates.items()) + ")"]
    plan.placement = {"kind": label, **plan.placement}
    return plan
