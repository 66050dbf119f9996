"""A cluster of separate processes: ``lcp cluster scheduler`` and ``lcp worker`` subprocesses.

The benchmark uses it instead of an in-process :class:`distributed.LocalCluster` so that the
dispatcher's process holds only the dispatcher's connections (the kernel byte counters of its
sockets are then the dispatcher's data plane plus its own scheduler connection, nothing of the
scheduler's). With a :class:`~lcp.sw.cluster.emulate.Topology` the scheduler runs in the
dispatcher's namespace and every worker in its own node namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["ProcessCluster", "stop_processes"]


def stop_processes(procs: list, timeout: float = 10.0) -> None:
    """Stop the process groups of ``procs`` (each started with ``start_new_session``):
    SIGTERM to all, then SIGKILL to a group still running after ``timeout`` seconds in all;
    ``procs`` is emptied."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)
    procs.clear()


class ProcessCluster:
    """Start a scheduler and ``n_workers`` nanny-supervised workers as subprocesses.

    Parameters
    ----------
    n_workers : int
        Worker processes, named ``node00``, ``node01``, ...
    topology : Topology, optional
        Run every process in its namespace of this (already built) topology.
    tls_dir : path, optional
        Certificates (the folder :func:`lcp.sw.cluster.security.make_certificates` wrote):
        TLS everywhere, the scheduler with its folder, worker ``nodeNN`` with folder ``nodeNN``
        when there is one (else the only worker folder). Without TLS the processes listen on
        loopback, or, with a ``topology``, on its private namespace addresses (``--insecure``:
        only this machine reaches them).
    nthreads : int
        Threads per worker.
    env : dict, optional
        Extra environment of every worker (e.g. ``LCP_LINK_DELAY_MS``).
    worker_env : list of dict, optional
        Per-worker extra environment (e.g. ``LCP_NODE_SLOWDOWN`` for heterogeneous nodes).
    log_dir : path, optional
        Where the processes' output goes (default: discarded).
    timeout : float
        Seconds to wait for the scheduler to come up.
    """

    def __init__(self, n_workers: int, *, topology=None, tls_dir=None, nthreads: int = 1,
                 env: dict | None = None, worker_env: list[dict] | None = None,
                 log_dir=None, timeout: float = 60.0):
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, not {n_workers}")
        self.n_workers = n_workers
        self.topology = topology
        self.tls_dir = tls_dir
        self.nthreads = nthreads
        self.env = dict(env or {})
        self.worker_env = worker_env or [{}] * n_workers
        self.log_dir = Path(log_dir) if log_dir else None
        self.timeout = timeout
        self.procs: list[subprocess.Popen] = []
        self.address: str | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="lcp-procs-")

    def _popen(self, ns: str | None, args: list[str], env: dict, log: str):
        out = subprocess.DEVNULL
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / log, "ab")
        if ns is not None:
            p = self.topology.spawn(ns, args, env=env, log=self.log_dir / log
                                    if self.log_dir else None)
        else:
            p = subprocess.Popen([sys.executable, "-m", "lcp.sw.cli", *args],
                                 env={**os.environ, **env}, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            self.procs.append(p)
        return p

    def start(self) -> "ProcessCluster":
        """Start the scheduler, wait for its address, start the workers."""
        topo = self.topology
        host = topo.dispatcher_ip if topo else "127.0.0.1"
        sfile = Path(self._tmp.name) / "scheduler.json"
        tls = ["--tls-dir", str(self.tls_dir)] if self.tls_dir else []
        if topo is not None and not self.tls_dir:
            tls = ["--insecure"]
        self._popen(topo.dispatcher_ns if topo else None,
                    ["cluster", "scheduler", "--host", host, "--port", "0",
                     "--scheduler-file", str(sfile), *tls], self.env, "scheduler.log")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if sfile.is_file():
                try:
                    self.address = json.loads(sfile.read_text())["address"]
                    break
                except (json.JSONDecodeError, KeyError):
                    pass
            if any(p.poll() is not None for p in self._all()):
                break
            time.sleep(0.1)
        if self.address is None:
            self.close()
            raise RuntimeError("the scheduler did not start (see its log with log_dir=)")
        for i in range(self.n_workers):
            name = f"node{i:02d}"
            ns = topo.node_ns(i) if topo else None
            whost = topo.node_ip(i) if topo else "127.0.0.1"
            self._popen(ns, ["worker", "--scheduler", self.address, "--name", name,
                             "--host", whost, "--nthreads", str(self.nthreads), *tls],
                        {**self.env, **self.worker_env[i]}, f"{name}.log")
        return self

    def _all(self) -> list:
        return self.procs + (self.topology.procs if self.topology else [])

    def close(self) -> None:
        """Terminate every process started here (the topology stops its own)."""
        stop_processes(self.procs)
        self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
