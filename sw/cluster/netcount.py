"""Bytes on the wire, counted by the kernel, not computed from tensor shapes.

Two sources:

* :func:`tcp_connections`: per TCP connection of *this process*, the kernel's
  ``tcpi_bytes_acked`` (payload bytes sent and acknowledged) and ``tcpi_bytes_received``
  (payload bytes received) from ``getsockopt(TCP_INFO)`` (Linux >= 4.2). This is TCP payload:
  Dask's framing, msgpack headers, TLS records included; IP/TCP headers and retransmissions
  excluded. Works on any network, including loopback.
* :func:`link_counters`: the byte counters of network interfaces in a network namespace
  (``ip -s -j link``), i.e. whole Ethernet frames with every header and every packet (also
  heartbeats and ARP), as the emulated links carry them.

A connection closed between two snapshots loses its bytes; :func:`diff_connections` reports how
many connections disappeared so that a caller can tell.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess

__all__ = ["tcp_connections", "diff_connections", "link_counters"]

_TCP_INFO_LEN = 232
_BYTES_ACKED_OFF = 120      # struct tcp_info: __u64 tcpi_bytes_acked, then tcpi_bytes_received


def _fmt(addr) -> str:
    return f"{addr[0]}:{addr[1]}"


def tcp_connections() -> dict[str, list]:
    """Established TCP connections of this process: ``"laddr|raddr" -> [sent, received]``.

    Returns an empty dict where TCP_INFO is not available (non-Linux).
    """
    import psutil

    if not hasattr(socket, "TCP_INFO"):
        return {}
    out: dict[str, list] = {}
    try:
        conns = psutil.Process().net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return {}
    for c in conns:
        if c.fd is None or c.fd < 0 or not c.raddr or c.status != psutil.CONN_ESTABLISHED:
            continue
        try:
            s = socket.socket(fileno=os.dup(c.fd))
        except OSError:
            continue
        try:
            info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except OSError:
            continue
        finally:
            s.close()
        if len(info) < _BYTES_ACKED_OFF + 16:
            continue
        acked, received = struct.unpack_from("QQ", info, _BYTES_ACKED_OFF)
        # the SYN and FIN each count one "byte" in bytes_acked; drop the SYN's
        out[f"{_fmt(c.laddr)}|{_fmt(c.raddr)}"] = [max(0, int(acked) - 1), int(received)]
    return out


def diff_connections(before: dict, after: dict) -> tuple[dict[str, list], int]:
    """Bytes per connection between two :func:`tcp_connections` snapshots, and the number of
    connections of ``before`` that no longer exist (their last bytes are lost)."""
    out = {}
    for k, (s, r) in after.items():
        s0, r0 = before.get(k, (0, 0))
        if s < s0 or r < r0:          # the same address pair on a new connection
            s0 = r0 = 0
        if s - s0 or r - r0:
            out[k] = [s - s0, r - r0]
    return out, sum(1 for k in before if k not in after)


def link_counters(netns: str | None, devices: list[str]) -> dict[str, dict]:
    """``{device: {"rx": bytes, "tx": bytes, "rx_packets", "tx_packets"}}`` of interfaces in
    network namespace ``netns`` (None: the current one), from ``ip -s -j link``."""
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-s", "-j", "link", "show"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True)
    out = {}
    for d in json.loads(res.stdout):
        if d.get("ifname") in devices:
            st = d["stats64"]
            out[d["ifname"]] = {"rx": st["rx"]["bytes"], "tx": st["tx"]["bytes"],
                                "rx_packets": st["rx"]["packets"],
                                "tx_packets": st["tx"]["packets"]}
    missing = set(devices) - set(out)
    if missing:
        raise OSError(f"interfaces not found in netns {netns}: {sorted(missing)}")
    return out
