"""Mutual TLS: the certificate helper, a cluster that only speaks TLS, strangers refused."""

import asyncio
import stat

import numpy as np
import pytest

from lcp.golden import Golden
from lcp.sw.cluster import Dispatcher, connect
from lcp.sw.cluster.security import load_security, make_certificates

from .conftest import arun, int_inputs


def test_certificates_are_signed_by_the_ca_and_keys_private(tmp_path):
    from cryptography import x509
    paths = make_certificates(tmp_path / "c", days=2)
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    for role in ("scheduler", "worker", "client"):
        cert = x509.load_pem_x509_certificate(paths[role].read_bytes())
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert stat.S_IMODE(paths[f"{role}_key"].stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        make_certificates(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="lcp cluster certs"):
        load_security(tmp_path / "missing")


def test_tls_cluster_serves_lcp_and_pipeline_and_refuses_strangers(tmp_path, zoo):
    make_certificates(tmp_path / "ok")
    make_certificates(tmp_path / "other")
    sec = load_security(tmp_path / "ok")
    m4, m1 = zoo["lenet5_s4"], zoo["lenet5_s1"]

    async def main():
        from distributed import Client
        out = {}
        async with connect(n_workers=2, security=sec) as client:
            addr = client.scheduler.address
            assert addr.startswith("tls://")
            for m, strategy in ((m4, "lcp"), (m1, "pipeline")):
                x = int_inputs(m, 2)
                async with Dispatcher(client, m, strategy) as d:
                    r = await d.infer(x)
                    out[strategy] = (r, Golden(m).run_int(x))
            for name, kw in (("foreign CA", {"security": load_security(tmp_path / "other")}),
                             ("no certificate", {})):
                with pytest.raises(Exception):
                    c = await asyncio.wait_for(Client(addr, asynchronous=True, timeout=3, **kw),
                                               15)
                    await c.close()
                    raise AssertionError(f"{name} connected")
        return out

    for strategy, (r, ref) in arun(main()).items():
        assert r.status == "exact"
        np.testing.assert_array_equal(r.y, ref)
