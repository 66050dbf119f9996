"""Byte accounting of the cluster benchmark: bytes per link from the kernel's counters
(:mod:`lcp.sw.cluster.netcount` snapshots before and after a run's window), attributed to the
dispatcher and the nodes, and the payload the IR says a strategy must send (for reference)."""

from __future__ import annotations

from ..netcount import diff_connections
from ..parts import choose_cuts, stage_parts
from .families import Family

__all__ = ["owner_map", "links_from_tcp", "veth_delta", "expected_bytes"]


def owner_map(node_stats: dict, disp_conns: dict, names: dict) -> dict[str, str]:
    """Local endpoint ``ip:port`` -> owner (``dispatcher`` or a node name)."""
    own = {}
    for k in disp_conns:
        own[k.split("|")[0]] = "dispatcher"
    for name, st in node_stats.items():
        for k in st.get("tcp", {}):
            own[k.split("|")[0]] = name
        addr = st.get("address", "")
        if "://" in addr:
            own[addr.split("://", 1)[1]] = name
    return own


def links_from_tcp(d0: dict, d1: dict, n0: dict, n1: dict) -> dict:
    """Data-plane bytes per link and control bytes, from the snapshots before (0) and after (1).

    Dispatcher links come from the dispatcher's own counters (its windows hold no stats
    traffic); node-to-node links from the lower-named node's counters.
    """
    own = owner_map(n1, d1, {})
    own.update(owner_map(n0, d0, {}))
    links: dict[str, list] = {}
    control = 0
    lost = 0
    dd, lost_d = diff_connections(d0, d1)
    lost += lost_d
    for k, (s, r) in dd.items():
        peer = own.get(k.split("|")[1])
        if peer is None or peer == "dispatcher":
            control += s + r
            continue
        v = links.setdefault(f"dispatcher<->{peer}", [0, 0])
        v[0] += s
        v[1] += r
    for name in n1:
        nd, lost_n = diff_connections(n0.get(name, {}).get("tcp", {}), n1[name].get("tcp", {}))
        lost += lost_n
        for k, (s, r) in nd.items():
            peer = own.get(k.split("|")[1])
            if peer == "dispatcher":
                continue                    # counted from the dispatcher's side
            if peer is None:
                control += s + r
                continue
            if peer == name or name > peer:
                continue                    # counted once, from the lower name
            v = links.setdefault(f"{name}<->{peer}", [0, 0])
            v[0] += s
            v[1] += r
    return {"links": links, "control": control, "lost_connections": lost}


def veth_delta(c0: dict, c1: dict, devices: dict) -> dict:
    out = {}
    for dev, ifname in devices.items():
        a, b = c0[ifname], c1[ifname]
        # hub-side interface: rx = sent by the device, tx = delivered to the device
        out[dev] = {"sent": b["rx"] - a["rx"], "received": b["tx"] - a["tx"]}
    return out


def expected_bytes(fam: Family, nodes: int) -> dict:
    """Payload bytes per inference computed from the IR (labelled as computed, for reference)."""
    out = {}
    m8 = fam.models["split8"]
    inp = m8.tensors[m8.input.name].nbytes
    out["lcp-split8"] = inp * len(m8.branches) + sum(m8.tensors[b.output].nbytes
                                                     for b in m8.branches)
    mo = fam.models["original"]
    stages = stage_parts(mo, choose_cuts(mo, nodes))
    out["pipeline"] = sum(mo.tensors[s.input].nbytes for s in stages) + \
        mo.tensors[mo.output].nbytes
    out["pipeline_stages"] = [s.name + ":" + "+".join(l.op for l in s.model.layers())
                              for s in stages]
    return out
