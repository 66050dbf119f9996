"""Remote calls between the dispatcher and the nodes that fail fast on a dead peer.

Dask's :func:`distributed.comm.connect` retries a refused connection until its timeout (to ride
over a peer that is still starting), so a call to a node that has just died waits out the whole
call timeout although the kernel refused the connection at once. :class:`FastRPC` connects with
one attempt: a refused or reset connection raises :class:`ConnectionError` (an ``OSError``) at
once, and the caller moves the request to a live node. A silent node (stopped, partitioned)
accepts or hangs and is bounded only by the caller's timeout, as before.

Connections are pooled per address (a few idle ones kept); a connection that failed, timed out
or was cancelled mid-call is dropped, never reused. Calls use Dask's comm layer (TLS, msgpack
framing, the handshake of :func:`distributed.comm.connect`), so the peer's handlers see an
ordinary Dask connection.
"""

from __future__ import annotations

import asyncio

from distributed.comm import registry
from distributed.comm.addressing import parse_address
from distributed.comm.core import CommClosedError
from distributed.core import send_recv

__all__ = ["FastRPC", "connect_once"]


async def connect_once(addr: str, **connection_args):
    """A Dask comm to ``addr`` after a single connection attempt (no retry loop), with Dask's
    handshake. Raises :class:`ConnectionError` when the peer refuses or resets."""
    scheme, loc = parse_address(addr)
    connector = registry.get_backend(scheme).get_connector()
    try:
        comm = await connector.connect(loc, deserialize=True, **connection_args)
    except CommClosedError as e:           # Dask wraps ConnectionRefusedError and resets
        raise ConnectionError(f"{addr}: {e}") from e
    try:     # the handshake of distributed.comm.core.connect
        local_info = dict(comm.handshake_info())
        await comm.write(local_info)
        remote_info = await comm.read()
        comm.remote_info = remote_info
        comm.remote_info["address"] = comm.peer_address
        comm.local_info = local_info
        comm.local_info["address"] = comm.local_address
        comm.handshake_options = comm.handshake_configuration(comm.local_info,
                                                              comm.remote_info)
    except BaseException:
        comm.abort()
        raise
    comm.name = "lcp-rpc"
    return comm


class FastRPC:
    """Pooled one-attempt remote calls (see the module docstring).

    Parameters
    ----------
    connection_args : dict
        Dask connection arguments (``security.get_connection_args(role)``: TLS context).
    idle : int
        Idle connections kept per address.
    """

    def __init__(self, connection_args: dict | None = None, *, idle: int = 8):
        self.connection_args = dict(connection_args or {})
        self.idle = idle
        self._pool: dict[str, list] = {}

    async def call(self, addr: str, op: str, *, reply: bool = True, check=None, **msg):
        """Send ``{"op": op, **msg}`` to ``addr`` and return the reply (None if ``reply`` is
        False). ``check(comm)``, if given, vets a connection before anything is sent (e.g. the
        role of the peer's certificate) and raises to refuse it."""
        comm = None
        idle = self._pool.get(addr)
        while idle:
            c = idle.pop()
            if not c.closed():
                comm = c
                break
        if comm is None:
            comm = await connect_once(addr, **self.connection_args)
        try:
            if check is not None:
                check(comm)
            result = await send_recv(comm, op=op, reply=reply, **msg)
        except BaseException:
            comm.abort()
            raise
        pool = self._pool.setdefault(addr, [])
        if not comm.closed() and len(pool) < self.idle:
            pool.append(comm)
        else:
            comm.abort()
        return result

    def forget(self, addr: str) -> None:
        """Drop the idle connections to ``addr`` (a node found dead)."""
        for c in self._pool.pop(addr, []):
            c.abort()

    async def close(self) -> None:
        for addr in list(self._pool):
            self.forget(addr)
        await asyncio.sleep(0)
