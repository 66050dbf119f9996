"""Emulated edge links: network namespaces, veth pairs and ``tbf`` bandwidth limits.

Topology (a switched network, every device on its own link)::

    [dispatcher ns: scheduler + dispatcher]--veth--+
    [node00 ns: lcp worker]----------------veth--[hub ns: bridge]
    ...                                            |
    [nodeNN ns: lcp worker]----------------veth--+

Every veth end carries a ``tbf`` qdisc at ``bandwidth`` (both directions of every link), so a
device sends and receives at most ``bandwidth`` each way. Addresses are ``10.213.0.1``
(dispatcher) and ``10.213.0.10+i`` (node ``i``), only inside the namespaces created here; IPv6 is
off in them. The hub-side interface of each device counts the bytes of its link
(:func:`lcp.sw.cluster.netcount.link_counters`).

What this does **not** emulate (``tc netem`` is absent on the machine): propagation delay and
jitter (a fixed one-way delay can be added in the application, ``LCP_LINK_DELAY_MS``), packet
loss and reordering, and a shared half-duplex medium (WiFi shares its 62 Mbit/s among all
devices; here each device has its own full-duplex link). All namespaces share the host's CPU
cores, so compute on "different devices" is not truly parallel beyond the core count.

Needs root; :func:`check_root` raises :class:`~lcp.sw.cli.UsageError` with a clear message.
Everything created is removed by :meth:`Topology.close` (also on failure and on SIGTERM), and
:func:`cleanup_stale` removes namespaces left by a killed run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lcp.sw.cli import UsageError

from .procs import stop_processes

__all__ = ["SUBNET", "Topology", "check_root", "parse_rate", "cleanup_stale"]

#: The /24 used inside the namespaces.
SUBNET = "10.213.0"
_PREFIX = "lce"


def parse_rate(rate: str) -> int:
    """Bits per second of a tc rate such as ``62mbit``, ``1gbit``, ``500kbit``.

    Raises
    ------
    ValueError
        on anything else.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)\s*", str(rate).lower())
    if not m:
        raise ValueError(f"bandwidth {rate!r}: expected a number with bit, kbit, mbit or gbit "
                         f"(e.g. 62mbit)")
    mult = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[m.group(2)]
    bps = int(float(m.group(1)) * mult)
    if bps < 8000:
        raise ValueError(f"bandwidth {rate!r} is below 8kbit")
    return bps


def check_root() -> None:
    """Raise :class:`lcp.sw.cli.UsageError` unless root with ``ip`` and ``tc`` available."""
    if os.geteuid() != 0:
        raise UsageError("emulated links need root (network namespaces, veth pairs and tc); run "
                         "`lcp cluster emulate` as root, or `lcp cluster bench` for the "
                         "embedded cluster without link emulation")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise UsageError(f"emulated links need `{tool}` (iproute2), which is not on PATH")


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=check)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete namespaces of earlier runs whose process is gone; return their names."""
    res = _run("ip", "netns", "list", check=False)
    gone = []
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{_PREFIX}(\d+)[a-z]\d*", name)
        if m and not _pid_alive(int(m.group(1))):
            _run("ip", "netns", "del", name, check=False)
            gone.append(name)
    return gone


@dataclass
class Topology:
    """Namespaces, links and the processes started in them.

    Parameters
    ----------
    nodes : int
        Worker devices (1..200).
    bandwidth : str
        tc rate of every link, e.g. ``"62mbit"``.
    """

    nodes: int
    bandwidth: str = "62mbit"
    prefix: str = field(default_factory=lambda: f"{_PREFIX}{os.getpid()}")
    procs: list = field(default_factory=list)
    namespaces: list = field(default_factory=list)

    def __post_init__(self):
        if not 1 <= self.nodes <= 200:
            raise ValueError(f"nodes must be in 1..200, not {self.nodes}")
        self.bps = parse_rate(self.bandwidth)

    # -- names -----------------------------------------------------------------------------
    @property
    def hub(self) -> str:
        return f"{self.prefix}h"

    @property
    def dispatcher_ns(self) -> str:
        return f"{self.prefix}d"

    def node_ns(self, i: int) -> str:
        return f"{self.prefix}n{i}"

    @property
    def dispatcher_ip(self) -> str:
        return f"{SUBNET}.1"

    def node_ip(self, i: int) -> str:
        return f"{SUBNET}.{10 + i}"

    @staticmethod
    def node_name(i: int) -> str:
        return f"node{i:02d}"

    def devices(self) -> dict[str, str]:
        """Device name -> its hub-side interface (where its link is counted)."""
        out = {"dispatcher": f"{self.prefix}dh"}
        for i in range(self.nodes):
            out[self.node_name(i)] = f"{self.prefix}n{i}h"
        return out

    def links_info(self) -> dict:
        """JSON-able description for the benchmark (``--links``)."""
        return {"hub": self.hub, "devices": self.devices(), "bandwidth": self.bandwidth,
                "bps": self.bps, "dispatcher_ip": self.dispatcher_ip,
                "nodes": {self.node_name(i): self.node_ip(i) for i in range(self.nodes)}}

    # -- building -----------------------------------------------------------------------------
    def _tbf(self, ns: str, dev: str) -> None:
        burst = max(3200, self.bps // 8 // 250)        # at least rate / HZ
        _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate",
             f"{self.bps}bit", "burst", str(burst), "latency", "200ms")

    def set_rate(self, node: int, bandwidth: str) -> None:
        """Change node ``node``'s link (both directions) to ``bandwidth`` while it runs (a
        topology built by another process: ``Topology(n, prefix=its prefix)``, not built)."""
        bps = parse_rate(bandwidth)
        pre = self.prefix
        burst = max(3200, bps // 8 // 250)
        for ns, dev in ((f"{pre}n{node}", "eth0"), (f"{pre}h", f"{pre}n{node}h")):
            _run("tc", "-n", ns, "qdisc", "change", "dev", dev, "root", "tbf", "rate",
                 f"{bps}bit", "burst", str(burst), "latency", "200ms")

    def _add_ns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        _run("ip", "netns", "exec", name, "sysctl", "-q", "-w",
             "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
             check=False)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _attach(self, ns: str, hub_if: str, ip: str) -> None:
        tmp = f"{hub_if[:-1]}x"
        _run("ip", "link", "add", hub_if, "type", "veth", "peer", "name", tmp)
        _run("ip", "link", "set", hub_if, "netns", self.hub)
        _run("ip", "link", "set", tmp, "netns", ns)
        _run("ip", "-n", ns, "link", "set", tmp, "name", "eth0")
        _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", self.hub, "link", "set", hub_if, "master", "br0")
        _run("ip", "-n", self.hub, "link", "set", hub_if, "up")
        self._tbf(ns, "eth0")
        self._tbf(self.hub, hub_if)

    def build(self) -> "Topology":
        """Create the namespaces and links (undone by :meth:`close` if anything fails)."""
        check_root()
        cleanup_stale()
        try:
            self._add_ns(self.hub)
            _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.hub, "link", "set", "br0", "up")
            devs = self.devices()
            self._add_ns(self.dispatcher_ns)
            self._attach(self.dispatcher_ns, devs["dispatcher"], self.dispatcher_ip)
            for i in range(self.nodes):
                self._add_ns(self.node_ns(i))
                self._attach(self.node_ns(i), devs[self.node_name(i)], self.node_ip(i))
        except subprocess.CalledProcessError as e:
            self.close()
            raise OSError(f"building the emulated network failed: {' '.join(e.cmd)}: "
                          f"{e.stderr.strip()}") from None
        return self

    # -- processes -----------------------------------------------------------------------------
    def spawn(self, ns: str, args: list[str], env: dict | None = None, log: Path | None = None):
        """Start ``python -m lcp.sw.cli ARGS`` inside namespace ``ns``."""
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "lcp.sw.cli", *args]
        full_env = {**os.environ, **(env or {})}
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def close(self) -> None:
        """Stop every process started here, then delete every namespace (and so every link)."""
        stop_processes(self.procs)
        for ns in reversed(self.namespaces):
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    def __enter__(self):
        return self.build()

    def __exit__(self, *exc):
        self.close()

    def write_links(self, path: Path) -> Path:
        path.write_text(json.dumps(self.links_info(), indent=1))
        return path
