"""Mutual TLS with per-role certificates: per-node folders, a cluster that only speaks TLS,
strangers refused, and a worker's key that can neither act as a client nor make another
process unpickle anything."""

import asyncio
import os
import stat

import numpy as np
import pytest
from distributed import Client, Security
from distributed.core import rpc
from distributed.protocol.serialize import ToPickle

from lcp.golden import Golden
from lcp.sw.cluster import Dispatcher, connect
from lcp.sw.cluster.roles import RoleError
from lcp.sw.cluster.security import (cert_role, load_security, local_security,
                                     make_certificates)

from .conftest import arun, int_inputs


def test_each_node_folder_holds_the_ca_and_its_own_pair(tmp_path):
    from cryptography import x509
    paths = make_certificates(tmp_path / "c", workers=["node00", "node01"],
                              clients=["dispatcher"], days=2)
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    roles = {"scheduler": "scheduler", "node00": "worker", "node01": "worker",
             "dispatcher": "client"}
    for name, role in roles.items():
        d = paths[name]
        assert sorted(p.name for p in d.iterdir()) == sorted(["ca.pem", f"{role}.pem",
                                                             f"{role}-key.pem"])
        assert (d / "ca.pem").read_bytes() == paths["ca"].read_bytes()
        cert = x509.load_pem_x509_certificate((d / f"{role}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert_role(d / f"{role}.pem") == (role, name)
        assert stat.S_IMODE((d / f"{role}-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "c" / "ca-key.pem").stat().st_mode) == 0o600

    # a node added later joins the same authority; an existing node is not overwritten
    more = make_certificates(tmp_path / "c", workers=["node02"], clients=[])
    assert set(more) == {"ca", "node02"}
    x509.load_pem_x509_certificate((more["node02"] / "worker.pem").read_bytes()) \
        .verify_directly_issued_by(ca)
    with pytest.raises(FileExistsError):
        make_certificates(tmp_path / "c", workers=["node00"], clients=[])

    # a folder gives only its own role
    load_security(tmp_path / "c" / "node00", "worker")
    with pytest.raises(ValueError, match="holds a worker certificate, a scheduler is needed"):
        load_security(tmp_path / "c" / "node00", "scheduler")
    with pytest.raises(FileNotFoundError, match="3 worker certificates"):
        load_security(tmp_path / "c", "worker")
    sec = load_security(tmp_path / "c", "worker", "node01")
    assert sec.tls_client_cert is None and sec.tls_scheduler_cert is None
    with pytest.raises(FileNotFoundError, match="lcp cluster certs"):
        load_security(tmp_path / "missing", "client")

    # a pair from another authority is refused
    other = make_certificates(tmp_path / "other")
    for f in ("client.pem", "client-key.pem"):
        (paths["dispatcher"] / f).write_bytes((other["client"] / f).read_bytes())
    with pytest.raises(ValueError, match="not issued by"):
        load_security(paths["dispatcher"], "client")


class _Touch:
    """Unpickling this creates ``path``: proof that a process unpickled what a peer sent."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_tls_cluster_serves_and_refuses_strangers_and_worker_keys(tmp_path, zoo):
    make_certificates(tmp_path / "ok")
    make_certificates(tmp_path / "other")
    sec = local_security(tmp_path / "ok")
    worker = tmp_path / "ok" / "worker"
    as_client = Security(tls_ca_file=str(worker / "ca.pem"),
                         tls_client_cert=str(worker / "worker.pem"),
                         tls_client_key=str(worker / "worker-key.pem"), require_encryption=True)
    m4, m1 = zoo["lenet5_s4"], zoo["lenet5_s1"]

    async def refused(make, timeout=3):
        try:
            c = await asyncio.wait_for(make(timeout), 15)
        except Exception as e:       # noqa: BLE001 (what matters is that it did not connect)
            return e
        await c.close()
        return None

    async def main():
        out = {}
        async with connect(n_workers=2, security=sec) as client:
            addr = client.scheduler.address
            assert addr.startswith("tls://")
            for m, strategy in ((m4, "lcp"), (m1, "pipeline")):
                x = int_inputs(m, 2)
                async with Dispatcher(client, m, strategy) as d:
                    r = await d.infer(x)
                    out[strategy] = (r, Golden(m).run_int(x))
                    node = d.slots[0][2]

            # strangers: another authority, no certificate, plain TCP to the TLS port
            for name, make in (
                    ("foreign CA", lambda t: Client(addr, asynchronous=True, timeout=t,
                                                    security=load_security(tmp_path / "other",
                                                                           "client"))),
                    ("no certificate", lambda t: Client(addr, asynchronous=True, timeout=t)),
                    ("plain TCP", lambda t: Client(addr.replace("tls://", "tcp://"),
                                                   asynchronous=True, timeout=t))):
                assert await refused(make) is not None, f"{name} connected"

            # a worker's key used as a client: refused by the scheduler, by the nodes
            err = await refused(lambda t: Client(addr, asynchronous=True, timeout=t,
                                                 security=as_client))
            assert isinstance(err, RoleError) and "worker certificate" in str(err), err
            args = as_client.get_connection_args("client")
            with pytest.raises(RoleError, match="refuses 'broadcast'"):
                async with rpc(addr, connection_args=args) as r:
                    await r.broadcast(msg={"op": "ping"})
            async with rpc(node, connection_args=args) as r:
                for op in ("run", "lcp_run", "lcp_load", "plugin-add"):
                    with pytest.raises(Exception, match=f"the worker refuses '{op}'"):
                        await getattr(r, op)()
            # ... and what it sends is never unpickled, while the client's is (by design)
            for conn, marker in ((args, tmp_path / "by-worker"),
                                 (sec.get_connection_args("client"), tmp_path / "by-client")):
                for target in (addr, node):
                    async with rpc(target, connection_args=conn) as r:
                        try:
                            await r.ping(payload=ToPickle(_Touch(marker)))
                        except Exception:       # noqa: BLE001
                            pass
            out["unpickled"] = (os.path.exists(tmp_path / "by-worker"),
                                os.path.exists(tmp_path / "by-client"))
        return out

    out = arun(main())
    for strategy in ("lcp", "pipeline"):
        r, ref = out[strategy]
        assert r.status == "exact"
        np.testing.assert_array_equal(r.y, ref)
    assert out["unpickled"] == (False, True)


def test_cli_servers_with_node_folders(tmp_path, zoo):
    """``lcp cluster scheduler`` and ``lcp worker`` processes, each given its own folder (two
    workers sharing node00's here), serve an exact answer to the dispatcher's key and refuse a
    worker's."""
    from lcp.sw.cluster.procs import ProcessCluster

    paths = make_certificates(tmp_path / "c", workers=["node00"], clients=["dispatcher"])
    m = zoo["lenet5_s4"]
    x = int_inputs(m, 3)
    worker = paths["node00"]
    as_client = Security(tls_ca_file=str(worker / "ca.pem"),
                         tls_client_cert=str(worker / "worker.pem"),
                         tls_client_key=str(worker / "worker-key.pem"), require_encryption=True)

    async def main(address):
        async with connect(address, security=load_security(paths["dispatcher"], "client")) as c:
            await c.wait_for_workers(2, timeout=120)
            async with Dispatcher(c, m, "lcp") as d:
                r = await d.infer(x)
        with pytest.raises(RoleError, match="worker certificate"):
            c2 = await Client(address, asynchronous=True, timeout=10, security=as_client)
            await c2.close()
        return r

    with ProcessCluster(2, tls_dir=tmp_path / "c", log_dir=tmp_path / "logs") as pc:
        assert pc.address.startswith("tls://127.0.0.1:")
        r = arun(main(pc.address))
    assert r.status == "exact"
    np.testing.assert_array_equal(r.y, Golden(m).run_int(x))
