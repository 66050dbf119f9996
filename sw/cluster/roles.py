"""What each peer of a TLS cluster may do, from the role its certificate states.

Dask checks every TLS peer against the cluster's authority and then trusts it fully: any
authenticated peer may call any handler (``run``, ``broadcast``, ``plugin-add`` execute
pickled code) and Dask's protocol unpickles parts of every message it reads (``__Pickled__``
objects and pickle-serialized frames, from the handshake on). With the per-role certificates of
:mod:`~lcp.sw.cluster.security` this module narrows that to what each role needs:

*Handlers* (:func:`guard`): a peer holding a worker certificate may call only the handlers
:data:`WORKER_MAY_CALL` lists for that kind of server (register and heartbeat at the scheduler,
a pipeline hop, an exchanged tensor or a data fetch at another node, a delivery at the dispatcher); anything else
(``register-client``, ``broadcast``, ``run``, ``plugin-add``, ``upload_file``, ...) is answered
with a :class:`RoleError` and the connection closed. Scheduler and client certificates may
call everything: the scheduler and the operator run code on the nodes by design.

*Decoding* (:func:`install`): every TLS connection whose peer holds neither a scheduler nor a
client certificate is read without deserializing (Dask's ``deserialize=False``) and without
unpickling anything (the unpickler raises :class:`PermissionError` for it), and what a reader
would unpickle later is dropped from its messages (serialized objects become a placeholder
text, the pickled exception of an error reply its text). Such a peer can send only plain msgpack
data, which is all the lcp runtime sends between nodes; Dask's own worker-to-worker data,
task results and ``client.run`` results arrive as placeholders on a TLS lcp cluster.
(``retire_workers`` and ``log_event`` are not open to workers: the first unpickles an argument,
the second relays to every client's ``warn`` handler, which unpickles. A worker can still log
``warn`` events on its own stream: :func:`lcp.sw.cluster.connect`'s client ignores them.)

Dask loads the preload module :data:`PRELOAD` in a server's constructor (``preload=`` of
:class:`~distributed.Scheduler` and :class:`~distributed.Worker`, ``preload_nanny=`` of
:class:`~distributed.Nanny`), before it listens: the import installs the decoding,
:func:`dask_setup` guards the server when it starts (before it handles any message). Plain TCP
(``--insecure``) has no roles and nothing is limited.
"""

from __future__ import annotations

import contextvars
import inspect
import logging

__all__ = ["TRUSTED_ROLES", "WORKER_MAY_CALL", "PRELOAD", "RoleError", "peer_role", "guard",
           "install", "dask_setup"]

#: Roles that may call every handler and send pickled data.
TRUSTED_ROLES = ("scheduler", "client")
#: Handlers a peer with a worker certificate may call, per kind of server: what Dask's worker
#: and nanny call at the scheduler, a data fetch and the lcp pipeline hop
#: (:mod:`~lcp.sw.cluster.node`) at another worker, the worker's own close at its nanny, a
#: pipeline delivery at the dispatcher (:mod:`~lcp.sw.cluster.dispatcher`).
WORKER_MAY_CALL = {
    "scheduler": frozenset({"register-worker", "heartbeat_worker", "who_has", "unregister",
                            "register_nanny"}),
    "worker": frozenset({"get_data", "ping", "lcp_forward", "lcp_xput"}),
    "nanny": frozenset({"close_gracefully"}),
    "dispatcher": frozenset({"lcp_deliver"}),
}


class RoleError(RuntimeError):
    """A peer called a handler its certificate's role does not allow (not an OSError, which
    Dask's client would take for a network failure and retry)."""


#: Module Dask preloads on every server of a TLS lcp cluster.
PRELOAD = "lcp.sw.cluster._preload"

logger = logging.getLogger(__name__)

#: Peer address of the message being read when the peer is untrusted (else None).
_UNTRUSTED: contextvars.ContextVar[str | None] = contextvars.ContextVar("lcp_untrusted",
                                                                        default=None)
_installed = False


def _cert_role(peercert) -> str | None:
    """The ``OU`` of a peer certificate as :meth:`ssl.SSLSocket.getpeercert` returns it."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "organizationalUnitName":
                return value
    return None


def peer_role(comm) -> str | None:
    """The role of the peer of a Dask comm: its certificate's role, None without TLS."""
    info = getattr(comm, "extra_info", None) or {}
    return _cert_role(info.get("peercert"))


# -- handlers --------------------------------------------------------------------------------

async def _refuse(comm, op: str, role: str | None, kind: str):
    from distributed.core import Status, error_message

    who = f"a {role} certificate" if role else "a certificate without an lcp role"
    err = RoleError(f"the {kind} refuses {op!r} from {comm.peer_address}: it holds {who}; "
                    f"only {' and '.join(TRUSTED_ROLES)} certificates may call it")
    logger.warning("lcp: %s", err)
    try:
        await comm.write(error_message(err, status="uncaught-error"))
    except Exception:       # the peer left already
        pass
    comm.abort()
    return Status.dont_reply


def _wrap(op: str, handler, kind: str, allowed: frozenset):
    from distributed.core import _expects_comm

    expects = _expects_comm(handler)

    def guarded(comm, *args, **kwargs):
        role = peer_role(comm)
        if role not in TRUSTED_ROLES and op not in allowed:
            return _refuse(comm, op, role, kind)
        return handler(comm, *args, **kwargs) if expects else handler(*args, **kwargs)

    try:        # keep the handler's keywords visible (Dask looks for "serializers")
        params = list(inspect.signature(handler).parameters.values())[1 if expects else 0:]
        guarded.__signature__ = inspect.Signature(
            [inspect.Parameter("comm", inspect.Parameter.POSITIONAL_ONLY), *params])
    except (TypeError, ValueError):
        pass
    guarded.__name__ = f"lcp_guarded_{getattr(handler, '__name__', op)}"
    return guarded


class _GuardedHandlers(dict):
    """A server's handler table whose lookups return role-checking wrappers."""

    def __init__(self, handlers: dict, kind: str, allowed: frozenset):
        super().__init__(handlers)
        self.kind, self.allowed = kind, allowed
        self._wrapped: dict[str, tuple] = {}

    def __getitem__(self, op):
        handler = super().__getitem__(op)
        got = self._wrapped.get(op)
        if got is None or got[0] is not handler:
            got = self._wrapped[op] = (handler, _wrap(op, handler, self.kind, self.allowed))
        return got[1]


def _kind(server) -> str:
    from distributed import Nanny, Scheduler, Worker

    for cls, kind in ((Scheduler, "scheduler"), (Nanny, "nanny"), (Worker, "worker")):
        if isinstance(server, cls):
            return kind
    return "dispatcher"


def guard(server, kind: str | None = None) -> None:
    """Limit what peers holding a worker certificate may call on ``server`` (a Dask
    :class:`~distributed.core.Server`); ``kind`` one of :data:`WORKER_MAY_CALL` (default: from
    the server's class). Idempotent."""
    kind = kind or _kind(server)
    if not isinstance(server.handlers, _GuardedHandlers):
        server.handlers = _GuardedHandlers(server.handlers, kind, WORKER_MAY_CALL[kind])


# -- decoding --------------------------------------------------------------------------------

def install() -> None:
    """Make TLS connections from untrusted peers decode without unpickling (idempotent;
    process-wide: Dask's TLS connector and listener create :class:`_RoleTLS` comms)."""
    global _installed
    if _installed:
        return
    from distributed.comm import tcp
    from distributed.protocol import pickle as dask_pickle
    from distributed.protocol.serialize import Serialized

    original = dask_pickle.loads

    def loads(*args, **kwargs):
        peer = _UNTRUSTED.get()
        if peer is not None:
            raise PermissionError(f"refused to unpickle data from {peer}: it holds no "
                                  f"scheduler or client certificate")
        return original(*args, **kwargs)

    def sanitize(msg, peer: str):
        """``msg`` without what a trusted reader would unpickle later: opaque pickled objects
        (kept by servers that do not deserialize) and the pickled exception of an error."""
        if isinstance(msg, Serialized):
            return f"<data from {peer} dropped: pickled>"
        if isinstance(msg, dict):
            out = {k: sanitize(v, peer) for k, v in msg.items()}
            if isinstance(out.get("exception"), (bytes, bytearray, memoryview)):
                out["exception"] = str(out.get("exception_text") or f"error at {peer}")
            if isinstance(out.get("traceback"), (bytes, bytearray, memoryview)):
                out["traceback"] = None
            return out
        if isinstance(msg, (list, tuple)):
            return type(msg)(sanitize(v, peer) for v in msg)
        return msg

    class _RoleTLS(tcp.TLS):
        """A TLS comm that reads messages from an untrusted peer without unpickling."""

        lcp_role: str | None = None
        lcp_trusted = False

        def _read_extra(self):
            super()._read_extra()
            self.lcp_role = _cert_role(self._extra.get("peercert"))
            self.lcp_trusted = self.lcp_role in TRUSTED_ROLES

        @property
        def allow_offload(self):        # decoding must stay in the task that reads
            return self.__dict__.get("_allow_offload", True) and self.lcp_trusted

        @allow_offload.setter
        def allow_offload(self, value):
            self.__dict__["_allow_offload"] = value

        @property
        def deserialize(self):          # serialized objects stay opaque, then are dropped
            return self.__dict__.get("_deserialize", True) and self.lcp_trusted

        @deserialize.setter
        def deserialize(self, value):
            self.__dict__["_deserialize"] = value

        async def read(self, deserializers=None):
            if self.lcp_trusted:
                return await super().read(deserializers)
            token = _UNTRUSTED.set(self.peer_address)
            try:
                return sanitize(await super().read(deserializers), self.peer_address)
            finally:
                _UNTRUSTED.reset(token)

    dask_pickle.loads = loads
    tcp.TLSConnector.comm_class = _RoleTLS
    tcp.TLSListener.comm_class = _RoleTLS
    _installed = True


def dask_setup(server) -> None:
    """Dask preload hook: guard ``server`` when it uses TLS."""
    install()
    sec = getattr(server, "security", None)
    if sec is not None and sec.require_encryption:
        guard(server)
