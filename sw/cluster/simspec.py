"""The cluster simulator's data: devices (:class:`NodeSpec` with :class:`OpCost` per op kind),
their links (:class:`LinkSpec`), the cluster (:class:`ClusterSpec`) and a strategy's plan of one
request (:class:`Plan`, a list of :class:`Task`). :mod:`.simplan` builds plans,
:mod:`.simulator` runs them; both read these (see :mod:`.simplan` for what each field means).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lcp.ir import IRError

__all__ = ["SIM_STRATEGIES", "SIM_ENCODINGS", "DISPATCHER", "BROADCAST", "OpCost", "NodeSpec",
           "LinkSpec", "ClusterSpec", "Task", "Plan"]

SIM_STRATEGIES = ("single", "data", "pipeline", "lcp", "hidp", "model-parallel", "exchange")
#: Encodings whose size does not depend on the values (the simulator has none).
SIM_ENCODINGS = ("packed", "float32")
DISPATCHER = "dispatcher"
#: Destination of a broadcast message (every device hears it).
BROADCAST = "*"


@dataclass
class OpCost:
    """Seconds of one layer for one image: ``fixed_s + per_unit_s * work``."""

    fixed_s: float = 0.0
    per_unit_s: float = 0.0

    def seconds(self, work: float, batch: int = 1, share: float = 1.0) -> float:
        return self.fixed_s + self.per_unit_s * work * batch * share


@dataclass
class NodeSpec:
    """A device. ``costs`` maps op names (the IR's) to :class:`OpCost`; ``"*"`` is the
    default for ops not listed."""

    name: str
    cores: int = 1
    memory_bytes: int | None = None
    costs: dict = field(default_factory=dict)

    def layer_seconds(self, op: str, work: float, batch: int = 1, share: float = 1.0) -> float:
        c = self.costs.get(op) or self.costs.get("*") or OpCost()
        return c.seconds(work, batch, share)


@dataclass
class LinkSpec:
    """A device's link: ``bandwidth_bps`` (bits/s), one-way ``latency_s`` per message,
    ``overhead_bytes`` of framing per message, ``loss`` probability per message (a lost one
    is sent again after ``rto_s``)."""

    bandwidth_bps: float
    latency_s: float = 0.0
    overhead_bytes: int = 0
    loss: float = 0.0
    rto_s: float = 0.2


@dataclass
class ClusterSpec:
    dispatcher: NodeSpec
    nodes: list[NodeSpec]
    links: dict                      # device name -> LinkSpec ("*": every other device)
    medium: str = "switched"         # or "shared"
    host_cores: int | None = None    # every device's compute shares these (emulation)
    broadcast: bool = False          # shared medium: one transmission for several receivers

    def __post_init__(self):
        if self.medium not in ("switched", "shared"):
            raise IRError(f"medium must be switched or shared, not {self.medium!r}")
        if self.broadcast and self.medium != "shared":
            raise IRError("broadcast needs the shared medium")
        if not self.nodes:
            raise IRError("a cluster needs at least one node")

    def link(self, device: str) -> LinkSpec:
        try:
            return self.links[device] if device in self.links else self.links["*"]
        except KeyError:
            raise IRError(f"no link for device {device!r} (and no default '*')") from None

    def node(self, name: str) -> NodeSpec:
        if name == DISPATCHER:
            return self.dispatcher
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "ClusterSpec":
        def node(n):
            return NodeSpec(n["name"], int(n.get("cores", 1)), n.get("memory_bytes"),
                            {k: OpCost(**v) for k, v in n.get("costs", {}).items()})
        try:
            return cls(node(d["dispatcher"]), [node(n) for n in d["nodes"]],
                       {k: LinkSpec(**v) for k, v in d["links"].items()},
                       d.get("medium", "switched"), d.get("host_cores"),
                       bool(d.get("broadcast", False)))
        except (KeyError, TypeError) as e:
            raise IRError(f"cluster description: missing or bad field {e}") from None


@dataclass
class Task:
    """One step of a request: ``cpu`` (``seconds`` on node ``where``) or ``net`` (``nbytes``
    from ``where`` to ``dst``), after the tasks ``deps`` (indices into the plan)."""

    kind: str
    where: str
    seconds: float = 0.0
    nbytes: int = 0
    dst: str | None = None
    deps: tuple = ()
    label: str = ""


@dataclass
class Plan:
    strategy: str
    model: str
    encoding: str
    batch: int
    tasks: list[Task]
    placement: dict
    notes: list = field(default_factory=list)
