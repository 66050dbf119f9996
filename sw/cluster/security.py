"""Per-node certificates for mutual TLS in the cluster (Dask's :class:`distributed.Security`).

:func:`make_certificates` writes a small private certificate authority and one folder per
node, each holding only the authority's certificate and the node's own key pair::

    ca.pem  ca-key.pem                         the authority: stays with the administrator
    scheduler/  ca.pem scheduler.pem scheduler-key.pem
    <worker>/   ca.pem worker.pem    worker-key.pem      one folder per worker (--worker NAME)
    <client>/   ca.pem client.pem    client-key.pem      the dispatcher (--client NAME)

A certificate states its role three ways, all signed by the authority: the subject
(``O=lcp cluster, OU=<role>, CN=lcp <role> <name>``), an extended key usage from the
:data:`ROLE_OIDS` arc next to ``serverAuth``/``clientAuth`` (every role both listens and
connects: the scheduler calls workers, workers call each other for pipeline hops, the
dispatcher receives pipeline deliveries), and the file names. :mod:`~lcp.sw.cluster.roles`
reads the peer's role from the certificate of every TLS connection and limits what it may do.

:func:`load_security` builds the :class:`~distributed.Security` of one role from a node folder
(``require_encryption=True``: plain ``tcp://`` is refused; a node without a client key cannot
act as a client). Dask checks every peer's certificate against ``ca.pem`` on both ends
(``CERT_REQUIRED``); host names are not checked, the authority is the trust anchor.
:func:`local_security` gives all three roles at once, for an embedded cluster on one machine.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from .roles import install

__all__ = ["ROLES", "ROLE_OIDS", "make_certificates", "node_folder", "cert_role",
           "load_security", "local_security"]

#: Certificate roles.
ROLES = ("scheduler", "worker", "client")
#: Extended key usage OID of each role, under the UUID arc 2.25.<uuid> (ITU-T X.667; UUID
#: 169a1490-3fcf-4727-97b0-25acce29c6a8, drawn for this project).
_ARC = "2.25.30043046700278127027929092084281755304"
ROLE_OIDS = {role: f"{_ARC}.{i + 1}" for i, role in enumerate(ROLES)}
_ORG = "lcp cluster"


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


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _check_name(name: str) -> str:
    if (not name or name in ("ca", ".", "..") or "/" in name or "\\" in name
            or name.startswith(".")):
        raise ValueError(f"node name {name!r}: a plain folder name is needed")
    return name


def _new_ca(folder: Path, start, end):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, "lcp cluster CA")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(key, hashes.SHA256()))
    _write_key(folder / "ca-key.pem", key)
    (folder / "ca.pem").write_bytes(_pem(ca))
    return ca, key


def _load_ca(folder: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), None)
    return ca, key


def _issue(folder: Path, role: str, name: str, ca, ca_key, start, end, sans) -> Path:
    """Write ``folder/<name>/`` with ``ca.pem`` and the node's ``<role>.pem`` key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"lcp {role} {name}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=True,
                                         key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([
                ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH,
                x509.ObjectIdentifier(ROLE_OIDS[role])]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    d = folder / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.pem").write_bytes(_pem(ca))
    _write_key(d / f"{role}-key.pem", key)
    (d / f"{role}.pem").write_bytes(_pem(cert))
    return d


def make_certificates(folder, *, workers=("worker",), clients=("client",), days: int = 365,
                      hosts: list[str] | None = None, overwrite: bool = False) -> dict[str, Path]:
    """Issue node certificates into ``folder`` (see the module docstring for the layout).

    A new folder gets a new authority, the ``scheduler`` folder and the ``workers`` and
    ``clients`` folders. A folder that already holds an authority (``ca.pem`` and
    ``ca-key.pem``) keeps it and gets only the ``workers`` and ``clients`` named: a node added
    later joins the same cluster.

    Parameters
    ----------
    folder : path
        Created if missing.
    workers, clients : iterable of str
        Node names, one folder each.
    days : int
        Validity of every new certificate.
    hosts : list of str, optional
        Extra DNS names or IP addresses for the subject alternative names (informative: Dask
        does not check host names).
    overwrite : bool
        Replace existing node folders (else :class:`FileExistsError`).

    Returns
    -------
    dict
        ``{"ca": path of ca.pem, "<node name>": node folder, ...}``.
    """
    from cryptography import x509

    if days < 1:
        raise ValueError(f"days must be >= 1, not {days}")
    folder = Path(folder)
    workers = [_check_name(w) for w in workers]
    clients = [_check_name(c) for c in clients]
    names = workers + clients
    if len(set(names)) != len(names) or "scheduler" in names:
        raise ValueError(f"node names must be unique and not 'scheduler': {names}")
    new_ca = not (folder / "ca.pem").is_file()
    nodes = ([("scheduler", "scheduler")] if new_ca else []) + \
        [("worker", w) for w in workers] + [("client", c) for c in clients]
    if not nodes:
        raise ValueError(f"{folder} already holds an authority: name the nodes to add")
    if new_ca and (folder / "ca-key.pem").exists():
        raise FileExistsError(f"{folder / 'ca-key.pem'} exists without ca.pem")
    if not new_ca and not (folder / "ca-key.pem").is_file():
        raise FileNotFoundError(f"{folder / 'ca-key.pem'}: missing; the authority's key is "
                                f"needed to issue more certificates")
    existing = [folder / n for _, n in nodes if (folder / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (pass overwrite=True / --force)")

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _new_ca(folder, start, end) if new_ca else _load_ca(folder)
    end = min(end, ca.not_valid_after_utc)
    sans: list = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for h in hosts or []:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    out = {"ca": folder / "ca.pem"}
    for role, name in nodes:
        out[name] = _issue(folder, role, name, ca, ca_key, start, end, sans)
    return out


def _pair_role(d: Path) -> str | None:
    """The role of the one key pair in node folder ``d`` (None: not a node folder)."""
    if not (d / "ca.pem").is_file():
        return None
    found = [r for r in ROLES if (d / f"{r}.pem").is_file() and (d / f"{r}-key.pem").is_file()]
    return found[0] if len(found) == 1 else None


def node_folder(folder, role: str, name: str | None = None) -> Path:
    """The node folder of ``role`` under ``folder``: ``folder`` itself when it is a node
    folder, else ``folder/<name>``, ``folder/<role>``, or its only folder of that role."""
    folder = Path(folder)
    if role not in ROLES:
        raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (make the certificates with "
                                f"`lcp cluster certs {folder}`)")
    if _pair_role(folder) is not None:
        return folder
    for cand in ([folder / name] if name else []) + [folder / role]:
        if _pair_role(cand) == role:
            return cand
    same = sorted(d for d in folder.iterdir() if d.is_dir() and _pair_role(d) == role)
    if len(same) == 1:
        return same[0]
    if same:
        raise FileNotFoundError(f"{folder}: {len(same)} {role} certificates "
                                f"({', '.join(d.name for d in same)}); pass the node's own "
                                f"folder")
    raise FileNotFoundError(f"{folder}: no {role} certificate (make one with "
                            f"`lcp cluster certs {folder} --{role} NAME`)")


def cert_role(path) -> tuple[str, str]:
    """``(role, node name)`` of a certificate file: its subject ``OU`` and ``CN``, which must
    agree with its role key usage."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID, NameOID

    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    role = ous[0].value if ous else None
    try:
        eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
        eku_roles = [r for r, oid in ROLE_OIDS.items() if x509.ObjectIdentifier(oid) in eku]
    except x509.ExtensionNotFound:
        eku_roles = []
    if role not in ROLES or eku_roles != [role]:
        raise ValueError(f"{path}: not an lcp node certificate (subject role {role!r}, key "
                         f"usage roles {eku_roles}); issue it with `lcp cluster certs`")
    cn = str(cns[0].value) if cns else ""
    return role, cn.split(" ", 2)[2] if cn.count(" ") >= 2 else ""


def _verify(d: Path, role: str) -> tuple[Path, Path, Path]:
    """Check the pair of node folder ``d``: role, signed by its ``ca.pem``, in its validity
    period, key matching. Returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    held = _pair_role(d)
    if held != role:
        raise ValueError(f"{d}: holds a {held} certificate, a {role} is needed here")
    ca_p, cert_p, key_p = d / "ca.pem", d / f"{role}.pem", d / f"{role}-key.pem"
    got, _ = cert_role(cert_p)
    if got != role:
        raise ValueError(f"{cert_p}: a {got} certificate, a {role} is needed here")
    ca = x509.load_pem_x509_certificate(ca_p.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_p.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:
        raise ValueError(f"{cert_p}: not issued by {ca_p}") from None
    now = datetime.datetime.now(datetime.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ValueError(f"{cert_p}: valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                         f"{cert.not_valid_after_utc:%Y-%m-%d}, not now")
    key = serialization.load_pem_private_key(key_p.read_bytes(), None)
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise ValueError(f"{key_p}: does not match {cert_p}")
    return ca_p, cert_p, key_p


def load_security(folder, role: str, name: str | None = None):
    """The :class:`distributed.Security` of one node: TLS required, only ``role``'s key pair.

    ``folder`` is the node's folder (``ca.pem`` and one key pair) or the folder written by
    :func:`make_certificates` (then :func:`node_folder` picks the node's).

    Raises
    ------
    FileNotFoundError
        no certificate of that role there.
    ValueError
        a certificate of another role, not issued by the folder's authority, expired, or a
        key that does not match.
    """
    from distributed import Security

    ca, cert, key = _verify(node_folder(folder, role, name), role)
    install()
    return Security(tls_ca_file=str(ca), require_encryption=True,
                    **{f"tls_{role}_cert": str(cert), f"tls_{role}_key": str(key)})


def local_security(folder):
    """A :class:`distributed.Security` with the scheduler, a worker and a client pair of
    ``folder`` (written by :func:`make_certificates`): an embedded cluster on one machine."""
    from distributed import Security

    folder = Path(folder)
    kw = {}
    for role in ROLES:
        same = sorted(d for d in folder.iterdir() if d.is_dir() and _pair_role(d) == role) \
            if folder.is_dir() else []
        d = folder / role if _pair_role(folder / role) == role else (same or [None])[0]
        if d is None:
            raise FileNotFoundError(f"{folder}: no {role} certificate (an embedded cluster "
                                    f"needs the folder `lcp cluster certs` wrote)")
        ca, cert, key = _verify(d, role)
        kw[f"tls_{role}_cert"], kw[f"tls_{role}_key"] = str(cert), str(key)
    install()
    return Security(tls_ca_file=str(ca), require_encryption=True, **kw)
