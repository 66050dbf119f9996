"""TLS with mutual certificates for the cluster (Dask's :class:`distributed.Security`).

:func:`make_certificates` writes a small private certificate authority and one certificate per
role into a folder::

    ca.pem  ca-key.pem                 the authority (keep ca-key.pem off the nodes)
    scheduler.pem  scheduler-key.pem
    worker.pem     worker-key.pem
    client.pem     client-key.pem      the dispatcher

Every leaf certificate is signed by the authority and valid for both TLS server and client
authentication. Dask verifies the peer's certificate against ``ca.pem`` on both ends of every
connection (``CERT_REQUIRED``), so a peer without a certificate from this authority is refused;
host names are not checked by Dask, the authority is the trust anchor.
:func:`load_security` builds the :class:`~distributed.Security` that uses them, with
``require_encryption=True`` (plain ``tcp://`` is refused).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

__all__ = ["ROLES", "make_certificates", "load_security"]

#: Certificate roles written by :func:`make_certificates`.
ROLES = ("scheduler", "worker", "client")


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert) -> None:
    from cryptography.hazmat.primitives import serialization
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_certificates(folder, *, days: int = 365, hosts: list[str] | None = None,
                      overwrite: bool = False) -> dict[str, Path]:
    """Write a certificate authority and the scheduler/worker/client certificates.

    Parameters
    ----------
    folder : path
        Created if missing.
    days : int
        Validity of every certificate.
    hosts : list of str, optional
        Extra DNS names or IP addresses for the subject alternative names (informative: Dask
        does not check host names).
    overwrite : bool
        Replace existing files (else :class:`FileExistsError`).

    Returns
    -------
    dict
        ``{"ca": path, "ca_key": path, "<role>": cert path, "<role>_key": key path}``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1:
        raise ValueError(f"days must be >= 1, not {days}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"ca": folder / "ca.pem", "ca_key": folder / "ca-key.pem"}
    for r in ROLES:
        paths[r] = folder / f"{r}.pem"
        paths[f"{r}_key"] = folder / f"{r}-key.pem"
    existing = [p for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (pass overwrite=True / --force)")

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lcp cluster CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_key(paths["ca_key"], ca_key)
    _write_cert(paths["ca"], ca)

    sans: list = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for h in hosts or []:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    for role in ROLES:
        key = _key()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"lcp {role}")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write_key(paths[f"{role}_key"], key)
        _write_cert(paths[role], cert)
    return paths


def load_security(folder):
    """A :class:`distributed.Security` using the certificates of ``folder`` (every role, TLS
    required).

    Raises
    ------
    FileNotFoundError
        naming the first missing file.
    """
    from distributed import Security

    folder = Path(folder)
    files = {"ca": folder / "ca.pem"}
    for r in ROLES:
        files[r] = folder / f"{r}.pem"
        files[f"{r}_key"] = folder / f"{r}-key.pem"
    for p in files.values():
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (make the certificates with "
                                    f"`lcp cluster certs {folder}`)")
    return Security(tls_ca_file=str(files["ca"]),
                    tls_scheduler_cert=str(files["scheduler"]),
                    tls_scheduler_key=str(files["scheduler_key"]),
                    tls_worker_cert=str(files["worker"]), tls_worker_key=str(files["worker_key"]),
                    tls_client_cert=str(files["client"]), tls_client_key=str(files["client_key"]),
                    require_encryption=True)
