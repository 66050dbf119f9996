"""Emulated links (root only): namespaces, veth pairs and tbf limits are built, limit the
bandwidth, count bytes, and are always removed; the emulated benchmark end to end (slow)."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from lcp.sw.cluster.emulate import Topology, parse_rate
from lcp.sw.cluster.netcount import link_counters

root = pytest.mark.skipif(os.geteuid() != 0, reason="emulated links need root (network "
                                                     "namespaces, veth pairs, tc)")


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_parse_rate():
    assert parse_rate("62mbit") == 62_000_000
    assert parse_rate("1.5gbit") == 1_500_000_000
    for bad in ("62", "fast", "62mbps", "1bit"):
        with pytest.raises(ValueError):
            parse_rate(bad)


_SERVER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(); s.bind((sys.argv[1], 5555)); s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept(); n = 0; t0 = None
    while True:
        b = c.recv(65536)
        if not b:
            break
        t0 = t0 or time.perf_counter(); n += len(b)
    print(n, time.perf_counter() - t0, flush=True)
""")
_CLIENT = textwrap.dedent("""
    import socket, sys
    c = socket.create_connection((sys.argv[1], 5555)); c.sendall(bytes(2_000_000)); c.close()
""")


@root
def test_links_limit_bandwidth_count_bytes_and_are_removed():
    topo = Topology(2, "62mbit")
    with topo:
        names = _namespaces()
        assert topo.hub in names and topo.node_ns(1) in names
        qd = subprocess.run(["tc", "-n", topo.node_ns(0), "qdisc", "show", "dev", "eth0"],
                            capture_output=True, text=True).stdout
        assert "tbf" in qd and "62Mbit" in qd
        devs = topo.devices()
        c0 = link_counters(topo.hub, list(devs.values()))
        srv = subprocess.Popen(["ip", "netns", "exec", topo.node_ns(0), sys.executable, "-c",
                                _SERVER, topo.node_ip(0)], stdout=subprocess.PIPE, text=True)
        try:
            assert srv.stdout.readline().strip() == "ready"
            subprocess.run(["ip", "netns", "exec", topo.dispatcher_ns, sys.executable, "-c",
                            _CLIENT, topo.node_ip(0)], check=True, timeout=30)
            n, seconds = srv.stdout.readline().split()
        finally:
            srv.kill()
            srv.wait()
        c1 = link_counters(topo.hub, list(devs.values()))
    assert int(n) == 2_000_000
    mbit = 8 * 2_000_000 / float(seconds) / 1e6
    assert mbit < 62 * 1.15, f"{mbit:.1f} Mbit/s through a 62 Mbit/s link"
    sent = c1[devs["dispatcher"]]["rx"] - c0[devs["dispatcher"]]["rx"]
    got = c1[devs["node00"]]["tx"] - c0[devs["node00"]]["tx"]
    assert 2_000_000 < sent < 2_200_000 and 2_000_000 < got < 2_200_000   # frames with headers
    assert topo.prefix not in _namespaces()


@root
def test_topology_is_removed_when_building_fails(monkeypatch):
    topo = Topology(1, "62mbit")
    import lcp.sw.cluster.emulate as E
    real = E.Topology._tbf

    def boom(self, ns, dev):
        if ns == self.node_ns(0):
            raise subprocess.CalledProcessError(2, ["tc"], stderr="injected")
        return real(self, ns, dev)
    monkeypatch.setattr(E.Topology, "_tbf", boom)
    with pytest.raises(OSError, match="injected"):
        topo.build()
    assert topo.prefix not in _namespaces()


@root
@pytest.mark.slow
def test_emulated_benchmark_end_to_end(tmp_path):
    """``lcp cluster emulate`` on 4 nodes at 62 Mbit/s: every answer exact, bytes counted on
    the links, the namespaces gone afterwards."""
    from lcp.sw.cli import main
    cache = os.environ.get("LCP_TEST_CACHE")
    args = ["cluster", "emulate", "--nodes", "4", "--family", "cifarnet", "--quick",
            "-o", str(tmp_path / "out")]
    if cache:
        args += ["--cache", cache]
    t0 = time.monotonic()
    assert main(args) == 0
    res = json.loads((tmp_path / "out" / "bench.json").read_text())
    rows = res["families"]["cifarnet"]["rows"]
    assert {r["label"] for r in rows} >= {"original@1", "lcp-split4/packed", "pipeline/packed",
                                          "pipeline/zfp-lz4"}
    for r in rows:
        assert r["wrong"] == 0 and r["answers"] > 0
        assert r["link_bytes_per_inference"]["total_net"] > 0
    assert "lce" + str(os.getpid()) not in _namespaces()
    assert (tmp_path / "out" / "cifarnet_bytes.png").is_file()
    print(f"emulated benchmark: {time.monotonic() - t0:.0f} s")
