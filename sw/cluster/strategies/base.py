"""What a cluster strategy is: how a model's parts are placed on nodes and how one request is
answered on that placement.

A strategy is one subclass of :class:`Strategy` in one file of this package, registered with
:func:`register` under its name (the ``--strategy`` value); :mod:`lcp.sw.cluster.strategies`
imports every file, in the order the command line lists them. The dispatcher
(:class:`~lcp.sw.cluster.dispatcher.Dispatcher`) keeps the cluster view, the remote calls and
failover, and asks its strategy for:

- :meth:`Strategy.place`: the slots (:class:`Slot`: one part on one node) for the live nodes;
  the dispatcher then loads them (and their standby copies);
- :meth:`Strategy.start`: set-up after the parts are loaded (routes, a delivery server, ...);
- :meth:`Strategy.serve`: the integer output of one request (:class:`Req`), or None when it
  failed (the dispatcher answers ``"failed"``); a strategy with branches records the branches
  it answered with zeros in ``req.missing`` (``"degraded"``);
- :meth:`Strategy.close`: stop what :meth:`start` started.

What a strategy may use of the dispatcher ``d``: ``d.model``, ``d.encoding``, ``d.stages``,
``d.plan`` (JSON-able notes on the plan), ``d._slots`` (the current slots), ``d._rpc`` (one
remote call), ``d._call_group`` (run slots on their node with retries and re-placement),
``d._load``, ``d._replace``, ``d._name``, ``d._golden`` and the settings (``timeout``,
``call_timeout``, ``replace``, ``delay``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from distributed.comm.core import CommClosedError

from ..parts import Part

if TYPE_CHECKING:                  # the dispatcher imports the strategies, never the reverse
    from ..dispatcher import Dispatcher

__all__ = ["Strategy", "Slot", "Req", "NET_ERRORS", "REGISTRY", "register"]

#: Errors of a remote call that mean "this node or its link failed".
NET_ERRORS = (OSError, CommClosedError, asyncio.TimeoutError, EOFError)


@dataclass
class Slot:
    """A placed unit of work: one part on one node (the node may change on failure)."""

    sid: int
    part: Part
    addr: str | None = None


@dataclass
class Req:
    """One request in flight: id, start and deadline (monotonic seconds), what went wrong."""

    rid: int
    t0: float
    deadline: float
    retries: int = 0
    error: str | None = None
    missing: set = field(default_factory=set)


class Strategy:
    """One way to serve a model on the cluster (module doc). Subclasses set :attr:`name`."""

    #: The ``--strategy`` name.
    name: str = ""

    def __init__(self, d: "Dispatcher"):
        self.d = d

    async def place(self, nodes: list[str]) -> list[Slot]:
        """The slots for the live ``nodes`` (addresses, sorted by worker name)."""
        raise NotImplementedError

    async def start(self) -> None:
        """Set-up once the slots are loaded on their nodes."""

    async def serve(self, req: Req, xq: np.ndarray) -> np.ndarray | None:
        """The integer output of ``xq`` (None: failed)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop what :meth:`start` started."""

    def placement(self, slots: list[Slot]) -> dict[str, str]:
        """Part name -> node name of ``slots``."""
        return {s.part.name: self.d._name(s.addr) for s in slots}


#: Strategy name -> class, in registration order.
REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"strategy {cls.__name__}: name {cls.name!r} empty or taken")
    REGISTRY[cls.name] = cls
    return cls
