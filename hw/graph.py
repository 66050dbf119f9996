"""From the IR to a dataflow graph of engine plans, its cycle model, and the top-level RTL.

:func:`lower_branch` and :func:`lower_core` turn one IR branch (or the whole model) and a
:class:`~lcp.hw.folding.Folding` into a :class:`PlanGraph`: nodes are engine plans (conv, dense,
threshold, pools, ..., plus lane converters, broadcasts and FIFOs), links are streams. The graph
knows its cycle model (:meth:`PlanGraph.timing`), its resource estimate
(:meth:`PlanGraph.resources`) and builds the top-level Amaranth component
(:meth:`PlanGraph.top`).

FIFOs are placed by the cycle model: the model assumes that every engine's output beat is taken
when offered; on each link where a consumer would make a (non-elastic) producer wait, a FIFO
deep enough for the largest backlog the model sees is inserted, so the hardware behaves as
modelled. Elastic producers (the AXI input adapter, broadcasts, FIFOs) absorb back-pressure.

The other links get a skid buffer (:class:`~lcp.hw.skid.SkidBuffer`, ``ready`` registered, no
added cycle) behind an engine, or, with the folding's ``link_reg``, a register slice
(:class:`~lcp.hw.skid.RegisterSlice`, one cycle, everything registered) on every link without
a FIFO; the model takes a slice's beats by :func:`~lcp.hw.skid.slice_taken`.

Top-level ports (Verilog names; ``clk`` and ``rst``, active-high synchronous, come from the
``sync`` domain)::

    s_axis_tdata[IN_W-1:0]  s_axis_tvalid  s_axis_tready  s_axis_tlast   (input image, slave)
    m_axis_tdata[OUT_W-1:0] m_axis_tvalid  m_axis_tready  m_axis_tlast   (output, master)

With ``taps=True`` every IR tensor the hardware produces is also visible as
``tap{k}_data`` (one beat) and ``tap{k}_fire`` (the beat moves this cycle), for diagnosis.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from lcp.ir import Branch, IRError, Model

from .base import Resources, StreamFormat, hwc_perm
from .plans import plan_for
from .skid import RegisterSlice, SkidBuffer, skid_resources, slice_resources, slice_taken
from .plumbing import (AxisInPlan, AxisOutPlan, FifoPlan, ForkPlan, RelanePlan, _run_max,
                       axis_top_members)

__all__ = ["Node", "Link", "PlanGraph", "lower_branch", "lower_core", "Timing", "TIMING_FRAMES"]


def _check_no_exchange(model: Model) -> None:
    if model.exchanges:
        t, a, b = model.exchanges[0]
        raise IRError(f"{model.name}: branch {b} reads {t!r} of branch {a} before the merge; "
                      f"the hardware generator builds LCP cores and branches without exchange "
                      f"points (the golden reference and the cluster's exchange strategy run it)")


#: Back-to-back images in the cycle model (the initiation interval is measured between the
#: last two).
TIMING_FRAMES = 3

_ELASTIC = ("axis_in", "fork", "fifo")


@dataclass
class Node:
    """One engine instance: ``plan`` (see :mod:`lcp.hw.plumbing` for the plan contract)."""

    name: str
    plan: object
    n_in: int
    n_out: int = 1
    layer: str | None = None       # IR layer it implements
    tensor: str | None = None      # IR tensor it produces (tap)

    @property
    def kind(self) -> str:
        return self.plan.kind


@dataclass
class Link:
    """A stream from output ``src_port`` of node ``src`` to input ``dst_port`` of ``dst``;
    ``fifo`` > 0 puts a FIFO of that depth on it."""

    src: int
    src_port: int
    dst: int
    dst_port: int
    fmt: StreamFormat
    fifo: int = 0


@dataclass
class Timing:
    """Result of the cycle model (cycles; see :meth:`PlanGraph.timing`)."""

    latency: int
    interval: int
    frames: int
    first_in: int
    last_out: list[int]
    layer_done: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"latency_cycles": int(self.latency), "interval_cycles": int(self.interval),
                "frames_modelled": self.frames}


class PlanGraph:
    """Dataflow graph of engine plans between one AXI input and one AXI output."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[Node] = []
        self.links: list[Link] = []
        self.input_node: int | None = None
        self.output_node: int | None = None
        #: :meth:`timing` as lowered (FIFOs placed), set by :func:`lower_branch` /
        #: :func:`lower_core`; stale once the graph is changed by hand.
        self.lowered_timing: Timing | None = None
        #: register slices on the links without FIFO (the folding's ``link_reg``)
        self.link_reg = False

    # -- construction ----------------------------------------------------------------------
    def add(self, node: Node) -> int:
        names = {n.name for n in self.nodes}
        base, k = node.name, 1
        while node.name in names:
            node.name = f"{base}_{k}"
            k += 1
        self.nodes.append(node)
        return len(self.nodes) - 1

    def connect(self, src: int, src_port: int, dst: int, dst_port: int, fmt: StreamFormat):
        self.links.append(Link(src, src_port, dst, dst_port, fmt))

    def in_links(self, idx: int) -> list[Link]:
        return [self.links[k] for k in self._in_ids(idx)]

    def out_links(self, idx: int) -> list[Link]:
        return [self.links[k] for k in self._out_ids(idx)]

    def _adjacency(self):
        key = (len(self.nodes), len(self.links))
        if getattr(self, "_adj_key", None) != key:
            ins = [[] for _ in self.nodes]
            outs = [[] for _ in self.nodes]
            for k, l in enumerate(self.links):
                ins[l.dst].append(k)
                outs[l.src].append(k)
            for lst, port in ((ins, "dst_port"), (outs, "src_port")):
                for ids in lst:
                    ids.sort(key=lambda k: getattr(self.links[k], port))
            self._adj, self._adj_key = (ins, outs), key
        return self._adj

    def _in_ids(self, idx: int) -> list[int]:
        """Indices (into ``links``) of the links into node ``idx``, by input port."""
        return self._adjacency()[0][idx]

    def _out_ids(self, idx: int) -> list[int]:
        return self._adjacency()[1][idx]

    @property
    def in_fmt(self) -> StreamFormat:
        return self.nodes[self.input_node].plan.out_fmt

    @property
    def out_fmt(self) -> StreamFormat:
        return self.nodes[self.output_node].plan.in_fmt

    @property
    def in_width(self) -> int:
        return self.nodes[self.input_node].plan.width

    @property
    def out_width(self) -> int:
        return self.nodes[self.output_node].plan.width

    def taps(self) -> list[tuple[int, Node]]:
        """Nodes that produce an IR tensor, numbered in order (``tap{k}``)."""
        return list(enumerate(n for n in self.nodes if n.tensor is not None))

    # -- cycle model -----------------------------------------------------------------------
    def _run(self, frames: int, floors: dict[int, np.ndarray], ready: np.ndarray | None = None):
        words = self.nodes[self.input_node].plan.words
        out_off: dict[int, np.ndarray] = {}
        link_off: dict[int, np.ndarray] = {}
        link_acc: dict[int, np.ndarray] = {}
        for idx, node in enumerate(self.nodes):
            ins = self._in_ids(idx)
            if node.kind == "axis_in":
                offers = [np.zeros(frames * words, dtype=np.int64)]
            else:
                offers = []
                for li in ins:
                    l = self.links[li]
                    o = out_off[l.src]
                    if l.fifo:
                        o = _run_max(o + FifoPlan.LATENCY)
                    elif self.slice(l):
                        o = o + 1
                    link_off[li] = o
                    offers.append(o)
            if node.kind == "axis_in":
                accs, out = node.plan.timing(offers, ready=ready)
            else:
                accs, out = node.plan.timing(offers)
            for li, a in zip(ins, accs):
                link_acc[li] = np.asarray(a, dtype=np.int64)
            out = np.asarray(out, dtype=np.int64)
            if idx in floors:
                out = np.maximum(out, floors[idx])
            out_off[idx] = out
        return out_off, link_off, link_acc

    def timing(self, frames: int = TIMING_FRAMES, place_fifos: bool = True) -> Timing:
        """Cycle model of ``frames`` images sent back to back (input words always valid,
        output always ready).

        With ``place_fifos`` (the default) FIFOs are added or deepened where the model needs
        them (see the module docstring); the graph is changed in place.

        Returns
        -------
        Timing
            ``latency``: cycles from the first input word taken to the last output word of the
            first image; ``interval``: cycles between the last output words of the last two
            images.
        """
        floors: dict[int, np.ndarray] = {}
        ready = None
        for _ in range(48):
            out_off, link_off, link_acc = self._run(frames, floors, ready)
            changed = place_fifos and self._place_fifos(out_off, link_off, link_acc)
            if changed:
                floors, ready = {}, None
                continue
            # back-pressure on the input adapter: its beats move when the consumer takes them
            (k_in,) = self._out_ids(self.input_node)
            taken = self._taken(k_in, out_off, link_acc)
            if ready is None or np.any(taken > ready):
                ready = taken if ready is None else np.maximum(ready, taken)
                changed = True
            for idx, node in enumerate(self.nodes):
                if node.kind != "fork":
                    continue
                top = np.max(np.stack([self._taken(k, out_off, link_acc)
                                       for k in self._out_ids(idx)]), axis=0)
                floor = np.full(top.size, -(1 << 60), dtype=np.int64)
                floor[1:] = top[:-1] + 1
                if idx not in floors or np.any(floor > floors[idx]):
                    floors[idx] = np.maximum(floor, floors.get(idx, floor))
                    changed = True
            if not changed:
                break
        else:
            raise IRError(f"{self.name}: the cycle model does not settle (a stream deadlock?)")
        first_in = 0            # the input adapter takes the first word at cycle 0
        out = out_off[self.output_node]
        per = out.size // frames
        last = [int(out[(f + 1) * per - 1]) for f in range(frames)]
        interval = last[-1] - last[-2] if frames > 1 else last[0] - first_in
        done = {}
        for idx, node in enumerate(self.nodes):
            if node.layer is not None:
                o = out_off[idx]
                done[node.layer] = int(o[o.size // frames - 1]) - first_in
        return Timing(latency=last[0] - first_in, interval=interval, frames=frames,
                      first_in=first_in, last_out=last, layer_done=done)

    def _taken(self, li: int, out_off, link_acc) -> np.ndarray:
        """Cycles at which the beats on link ``li`` leave its producer: when offered into a
        FIFO; by :func:`~lcp.hw.skid.slice_taken` into a register slice; else when the
        consumer takes them (:meth:`_accepted`)."""
        l = self.links[li]
        if l.fifo:
            return out_off[l.src]
        if self.slice(l):
            return slice_taken(out_off[l.src], self._accepted(li, out_off, link_acc))
        return self._accepted(li, out_off, link_acc)

    def _accepted(self, li: int, out_off, link_acc) -> np.ndarray:
        """Cycles at which link ``li``'s consumer takes its beats (a broadcast when every
        output has)."""
        l = self.links[li]
        if self.nodes[l.dst].kind == "fork":
            return np.max(np.stack([self._taken(k, out_off, link_acc)
                                    for k in self._out_ids(l.dst)]), axis=0)
        return link_acc[li]

    def _place_fifos(self, out_off, link_off, link_acc) -> bool:
        """Add or deepen FIFOs where a producer would wait; True when something changed."""
        changed = False
        excess: dict[int, bool] = {}
        for idx, node in enumerate(self.nodes):
            if node.kind == "fork":
                outs = self._out_ids(idx)
                waits = [int(np.max(link_acc[k] - link_off[k] if self.links[k].fifo else
                                    self._taken(k, out_off, link_acc) - out_off[idx]))
                         for k in outs]
                for k, w in zip(outs, waits):
                    excess[k] = w > min(waits)
        for li, l in enumerate(self.links):
            kind = self.nodes[l.src].kind
            off, acc = link_off[li], self._accepted(li, out_off, link_acc)
            if kind == "fork":
                need = excess[li] or l.fifo
            elif kind in _ELASTIC:
                need = False
            else:
                need = l.fifo or np.any(acc > off)
            if not need:
                continue
            w = out_off[l.src]                       # written into the FIFO when offered
            occ = int(np.max(np.searchsorted(w, acc, side="right") - np.arange(acc.size)))
            depth = max(2, occ + 1)
            if depth > l.fifo:
                l.fifo = depth
                changed = True
        return changed

    # -- resources -------------------------------------------------------------------------
    def skid(self, link) -> bool:
        """``link`` gets a :class:`~lcp.hw.skid.SkidBuffer` (registered ready): no register
        slices, and its producer is an engine whose beats the model has taken when offered
        (not the input adapter, a broadcast or a FIFO, which wait for their consumers)."""
        return not (self.link_reg or link.fifo) and self.nodes[link.src].kind not in _ELASTIC

    def slice(self, link) -> bool:
        """``link`` gets a :class:`~lcp.hw.skid.RegisterSlice`: ``link_reg`` and no FIFO."""
        return bool(self.link_reg) and not link.fifo

    def resources(self) -> Resources:
        r = Resources()
        for n in self.nodes:
            r += n.plan.resources()
        for l in self.links:
            if l.fifo:
                r += FifoPlan(l.fmt, l.fifo).resources()
            elif self.slice(l):
                r += slice_resources(l.fmt.beat_bits)
            elif self.skid(l):
                r += skid_resources(l.fmt.beat_bits)
        return r

    def engine_resources(self) -> Resources:
        """The engines' resources alone (no FIFO, skid buffer or slice): a lower bound of
        :meth:`resources` that needs no cycle model (``timed=False`` lowering)."""
        r = Resources()
        for n in self.nodes:
            r += n.plan.resources()
        return r

    def node_resources(self) -> dict[str, Resources]:
        out: dict[str, Resources] = {}
        for n in self.nodes:
            key = n.layer or n.name
            out[key] = out.get(key, Resources()) + n.plan.resources()
        return out

    # -- RTL -------------------------------------------------------------------------------
    def top(self, taps: bool = False) -> "GraphTop":
        """The top-level component (see the module docstring for its ports)."""
        return GraphTop(self, taps=taps)

    def describe(self) -> dict:
        return {
            "nodes": [{"name": n.name, "kind": n.kind, "layer": n.layer, "tensor": n.tensor,
                       **({"folding": n.plan.folding} if hasattr(n.plan, "folding") else {})}
                      for n in self.nodes],
            "fifos": [{"from": self.nodes[l.src].name, "to": self.nodes[l.dst].name,
                       "depth": l.fifo} for l in self.links if l.fifo],
            **({"register_slices": sum(map(self.slice, self.links))} if self.link_reg else {}),
        }


#: Producers that wait for their consumer (the cycle model's back-pressure): no skid buffer.
_ELASTIC = ("axis_in", "fork")


class GraphTop(wiring.Component):
    """Top level of a :class:`PlanGraph`: AXI4-Stream in, engines, AXI4-Stream out."""

    def __init__(self, graph: PlanGraph, taps: bool = False):
        self.graph = graph
        self.with_taps = taps
        members = axis_top_members(graph.in_width, graph.out_width)
        if taps:
            for k, node in graph.taps():
                members[f"tap{k}_data"] = Out(node.plan.out_fmt.beat_bits)
                members[f"tap{k}_fire"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        g = self.graph
        comps = []
        for node in g.nodes:
            c = node.plan.build()
            m.submodules[node.name] = c
            comps.append(c)
        for li, l in enumerate(g.links):
            src = _out_port(comps[l.src], g.nodes[l.src], l.src_port)
            dst = _in_port(comps[l.dst], g.nodes[l.dst], l.dst_port)
            if l.fifo:
                f = FifoPlan(l.fmt, l.fifo).build()
                m.submodules[f"fifo_{g.nodes[l.src].name}_{g.nodes[l.dst].name}_{li}"] = f
                _join(m, src, f.i_stream)
                src = f.o_stream
            elif g.slice(l) or g.skid(l):
                kind, cls = ("slice", RegisterSlice) if g.slice(l) else ("skid", SkidBuffer)
                sk = cls(src.signature)
                m.submodules[f"{kind}_{g.nodes[l.src].name}_{li}"] = sk
                _join(m, src, sk.i_stream)
                src = sk.o_stream
            _join(m, src, dst)
        ain, aout = comps[g.input_node], comps[g.output_node]
        m.d.comb += [
            ain.s_axis.tdata.eq(self.s_axis_tdata), ain.s_axis.tvalid.eq(self.s_axis_tvalid),
            ain.s_axis.tlast.eq(self.s_axis_tlast), self.s_axis_tready.eq(ain.s_axis.tready),
            self.m_axis_tdata.eq(aout.m_axis.tdata), self.m_axis_tvalid.eq(aout.m_axis.tvalid),
            self.m_axis_tlast.eq(aout.m_axis.tlast), aout.m_axis.tready.eq(self.m_axis_tready),
        ]
        if self.with_taps:
            k = 0
            for idx, node in enumerate(g.nodes):
                if node.tensor is None:
                    continue
                s = comps[idx].o_stream
                m.d.comb += [getattr(self, f"tap{k}_data").eq(s.payload.as_value()),
                             getattr(self, f"tap{k}_fire").eq(s.valid & s.ready)]
                k += 1
        return m


def _out_port(comp, node: Node, k: int):
    """Output ``k`` of an engine: ``outputs[k]`` of a multi-output one, else ``o_stream``."""
    outs = getattr(comp, "outputs", None)
    return outs[k] if outs is not None else comp.o_stream


def _in_port(comp, node: Node, k: int):
    """Input ``k`` of an engine: ``inputs[k]`` of a multi-input one, else ``i_stream``."""
    ins = getattr(comp, "inputs", None)
    return ins[k] if ins is not None else comp.i_stream


def _join(m, src, dst):
    """``src`` (an output stream) drives ``dst`` (an input stream): ``wiring.connect``, so
    both ends must carry the same stream signature (the link's format)."""
    wiring.connect(m, src, dst)


# -- lowering --------------------------------------------------------------------------------

class _Lowering:
    def __init__(self, model: Model, folding, g: PlanGraph):
        self.model, self.folding, self.g = model, folding, g
        self.env: dict[str, tuple[int, int, StreamFormat]] = {}
        self.uses: Counter = Counter()
        self.forks: dict[str, list] = {}

    def count_uses(self, graphs: list[Branch], extra: list[str]):
        for gr in graphs:
            for l in gr.layers:
                for t in l.inputs:
                    self.uses[t] += 1
        for t in extra:
            self.uses[t] += 1

    def take(self, tensor: str) -> tuple[int, int, StreamFormat]:
        """Stream endpoint of ``tensor`` for one consumer (a broadcast when it has several)."""
        node, port, fmt = self.env[tensor]
        n = self.uses[tensor]
        if n <= 1:
            return node, port, fmt
        if tensor not in self.forks:
            f = self.g.add(Node(f"fork_{tensor}", ForkPlan(fmt, n), n_in=1, n_out=n))
            self.g.connect(node, port, f, 0, fmt)
            self.forks[tensor] = [f, 0]
        f, k = self.forks[tensor]
        self.forks[tensor][1] += 1
        return f, k, fmt

    def adapt(self, src, lanes: int, what: str):
        node, port, fmt = src
        if fmt.lanes == lanes:
            return src
        plan = RelanePlan(fmt, lanes, shift=bool(self.folding.link_reg))
        r = self.g.add(Node(f"relane_{what}", plan, n_in=1))
        self.g.connect(node, port, r, 0, fmt)
        return r, 0, plan.out_fmt

    def fold(self, layer) -> dict:
        return self.folding.layer(layer.name)

    def demand(self, tensor: str, graphs: list[Branch]) -> int | None:
        """Lanes the first consumer of ``tensor`` takes (following pass-through ops)."""
        for gr in graphs:
            for l in gr.layers:
                if tensor in l.inputs:
                    cls = plan_for(l)
                    if cls.passthrough:
                        return self.demand(l.output, graphs)
                    return cls.demand(self.model, l, self.fold(l))
        return None

    def lower(self, gr: Branch):
        for layer in gr.layers:
            try:
                self._lower_layer(layer)
            except IRError as e:
                if str(e).startswith("layer "):
                    raise
                raise IRError(f"layer {layer.name!r} ({layer.op}): {e}") from None

    def _lower_layer(self, layer):
        m, g = self.model, self.g
        out_spec = m.tensors[layer.output]
        cls = plan_for(layer)
        if cls.passthrough:
            node, port, fmt = self.take(layer.inputs[0])
            flat = StreamFormat(out_spec.shape, fmt.lo, fmt.hi, fmt.lanes, fmt.perm, fmt.bipolar)
            self.env[layer.output] = (node, port, flat)
            return
        srcs = [self.take(t) for t in layer.inputs]
        plan, srcs = cls.lower(self, layer, srcs, self.fold(layer), out_spec)
        idx = g.add(Node(layer.name, plan, n_in=len(srcs), layer=layer.name,
                         tensor=layer.output))
        for k, (node, port, fmt) in enumerate(srcs):
            g.connect(node, port, idx, k, fmt)
        self.env[layer.output] = (idx, 0, plan.out_fmt)

    def add_input(self, graphs: list[Branch], width: int):
        m = self.model
        spec = m.tensors[m.input.name]
        lanes = self.demand(m.input.name, graphs) or (spec.shape[0] if len(spec.shape) >= 2
                                                      else 1)
        if len(spec.shape) >= 2 and spec.shape[0] % lanes:
            # e.g. a dense layer right after flatten: stream the input as its flattened vector
            fmt = StreamFormat((spec.size,), spec.lo, spec.hi, lanes, hwc_perm(spec.shape),
                               spec.bipolar)
        else:
            fmt = StreamFormat.of(spec, lanes)
        idx = self.g.add(Node("axis_in", AxisInPlan(fmt, width), n_in=0))
        self.g.input_node = idx
        self.env[m.input.name] = (idx, 0, fmt)

    def add_output(self, tensor: str, width: int):
        node, port, fmt = self.take(tensor)
        idx = self.g.add(Node("axis_out", AxisOutPlan(fmt, width), n_in=1))
        self.g.connect(node, port, idx, 0, fmt)
        self.g.output_node = idx


def lower_branch(model: Model, index: int, folding, timed: bool = True) -> PlanGraph:
    """Plan graph of branch ``index`` alone (one device per branch): AXI input (the model
    input), the branch's layers, AXI output (the branch output tensor). ``timed=False``: no
    cycle model run and no FIFO placed (``lowered_timing`` is None), for resource bounds.

    Raises
    ------
    IRError
        naming the layer when an engine cannot be built (op, bit width, folding).
    """
    br = model.branches[index]
    _check_no_exchange(model)
    folding.check(model)
    g = PlanGraph(f"{model.name}_{br.name}")
    g.link_reg = bool(folding.link_reg)
    low = _Lowering(model, folding, g)
    low.count_uses([br], [br.output])
    low.add_input([br], folding.in_width)
    low.lower(br)
    low.add_output(br.output, folding.out_width)
    return _finish(g) if timed else g


def lower_core(model: Model, folding, timed: bool = True) -> PlanGraph:
    """Plan graph of the whole model on one chip: AXI input broadcast to every branch, the
    branches side by side, the merge, AXI output (the model output tensor)."""
    _check_no_exchange(model)
    folding.check(model)
    g = PlanGraph(f"{model.name}_core")
    g.link_reg = bool(folding.link_reg)
    low = _Lowering(model, folding, g)
    low.count_uses(model.graphs, [model.output])
    low.add_input(model.graphs, folding.in_width)
    for br in model.branches:
        low.lower(br)
    low.lower(model.merge)
    low.add_output(model.output, folding.out_width)
    return _finish(g) if timed else g


def _finish(g: PlanGraph) -> PlanGraph:
    g.lowered_timing = g.timing()          # places the FIFOs
    return g
