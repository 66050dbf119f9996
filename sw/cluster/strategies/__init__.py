"""The cluster's strategies: one :class:`~.base.Strategy` subclass per file, registered under
its ``--strategy`` name (:mod:`.base` says what a strategy does and what it may use of the
dispatcher).

To add one: a file here with a ``@register``-ed subclass of :class:`~.base.Strategy` (or of
:class:`~.fanout.FanOut` when the input goes to every node and the dispatcher merges), its
import below (the order is the command line's), and a test in ``tests/sw/cluster/`` that every
answer equals golden.
"""

from . import single, lcp, data, pipeline, hidp, exchange  # noqa: F401  (each registers)
from .base import NET_ERRORS, REGISTRY, Req, Slot, Strategy, register

__all__ = ["STRATEGIES", "REGISTRY", "Strategy", "Slot", "Req", "NET_ERRORS", "register"]

#: Strategy names, in the command line's order.
STRATEGIES = tuple(REGISTRY)
