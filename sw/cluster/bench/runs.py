"""What the cluster benchmark measures: the runs (:class:`RunSpec`, :func:`default_runs`: every
strategy on its model variant, every group once per wire encoding) and the settings
(:class:`BenchConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..wire import ENCODINGS
from .families import FAMILIES

__all__ = ["RunSpec", "default_runs", "BenchConfig"]


@dataclass(frozen=True)
class RunSpec:
    """One measured configuration: ``variant`` of the family served with ``strategy`` on
    ``nodes`` nodes, ``batch`` images per request, tensors in ``encoding``; ``group`` names
    the configuration measured with several encodings (default: the label)."""

    label: str
    variant: str
    strategy: str
    nodes: int
    encoding: str = "packed"
    batch: int = 1
    stages: int | None = None
    group: str = ""


def default_runs(nodes: int) -> list[RunSpec]:
    """The runs of the module table for a cluster of ``nodes`` nodes: the two references,
    then every group once per wire encoding."""
    runs = [RunSpec("original@1", "original", "single", 1, group="original@1"),
            RunSpec("lcp8@1", "split8", "single", 1, group="lcp8@1")]
    groups = [("data", "original", "data", nodes, {"batch": nodes}),
              ("pipeline", "original", "pipeline", nodes, {"stages": nodes}),
              ("hidp-original", "original", "hidp", nodes, {}),
              ("lcp-split4", "split4", "lcp", min(4, nodes), {}),
              ("lcp-split8", "split8", "lcp", min(8, nodes), {}),
              ("hidp-split8", "split8", "hidp", nodes, {}),
              ("model-parallel4", "original", "model-parallel", min(4, nodes), {}),
              ("model-parallel8", "original", "model-parallel", min(8, nodes), {}),
              ("exchange-split4", "split4-x", "exchange", min(4, nodes), {})]
    for g, variant, strategy, n, kw in groups:
        runs += [RunSpec(f"{g}/{e}", variant, strategy, n, e, group=g, **kw) for e in ENCODINGS]
    return runs


@dataclass
class BenchConfig:
    """Benchmark settings.

    Members
    -------
    families : list of str
        From :data:`FAMILIES`.
    nodes : int
        Worker nodes (the embedded cluster starts this many worker processes).
    requests : int
        Sequential single-image requests per run (latency and bytes).
    throughput_requests : int
        Requests per run for the throughput figure.
    concurrency : int
        Requests in flight for throughput.
    out : Path
        Output folder.
    scheduler : str, optional
        A running scheduler (else the embedded cluster).
    links : dict, optional
        Emulated links (:meth:`lcp.sw.cluster.emulate.Topology.links_info`).
    delay_ms : float
        Application-level one-way delay per data message (0: none).
    runs : list of str, optional
        Labels of :func:`default_runs` to measure (default all).
    cache : Path
        Where compiled IR models are cached.
    train : bool
        Train LeNet-5 (cached runs of :func:`lcp.models.train.train`); else random weights.
    epochs : int
        Training epochs for LeNet-5.
    security : object, optional
        :class:`distributed.Security`.
    """

    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    nodes: int = 8
    requests: int = 40
    throughput_requests: int = 80
    concurrency: int = 8
    out: Path = Path("runs/cluster-bench")
    scheduler: str | None = None
    links: dict | None = None
    delay_ms: float = 0.0
    runs: list[str] | None = None
    cache: Path = Path("runs/cluster-cache")
    train: bool = True
    epochs: int = 30
    security: object = None
    timeout: float = 60.0
