"""Connect to a cluster: an asynchronous Dask client with the lcp node plugin registered on
every worker, to a running scheduler or to an embedded local cluster (:func:`connect`)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from . import roles
from .node import NodePlugin, PLUGIN_NAME

__all__ = ["connect"]

logger = logging.getLogger(__name__)


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
