"""Certificates for a cluster: a private CA, one certificate per node, one per client.

    raftlib certs init DIR --nodes 3            # or: ensure_certs(Path(DIR), nodes=3)

Layout of DIR (the directory is 0700, every key file 0600)::

    ca.pem   ca.key            the cluster CA (keep ca.key offline in production)
    node-N.pem node-N.key      node N's certificate and key, for Raft peers AND its RESP port
    client.pem client.key      a client certificate (redis-cli --cert/--key, raftlib.client)

Identity. A node's identity is the URI subject alternative name ``raft://node/N``; exactly one
such name must be present. A client certificate carries ``raft://client/NAME`` instead, so it
can never pass as a node. Node certificates also name ``localhost``, ``node-N``, 127.0.0.1 and
::1 (plus any ``extra_names``) so ordinary TLS clients that check the host name (redis-cli,
``raftlib.client``) accept them on loopback.

Keys are ECDSA P-256: small, and handshakes are several times cheaper than RSA-2048 for the
same strength, which matters when a node reconnects to every peer after a restart.

Permissions. A key readable by group or others, or a certificate or CA file writable by them,
is refused when loaded (``CertificateError``, one line naming the file, its mode and the fix):
a leaked node key lets anyone join the cluster, and a replaceable CA file lets anyone mint one.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftlib.errors import ConfigError

NODE_URI_PREFIX: Final = "raft://node/"
CLIENT_URI_PREFIX: Final = "raft://client/"
CA_CERT: Final = "ca.pem"
CA_KEY: Final = "ca.key"
CLIENT_NAME_DEFAULT: Final = "client"
VALIDITY_DAYS_DEFAULT: Final = 825  # the longest lifetime common TLS clients still accept
NODES_MAX: Final = 1000
# Permission bits that make a file unsafe: keys must be private, certificates not replaceable.
_KEY_LOOSE_BITS: Final = stat.S_IRWXG | stat.S_IRWXO
_CERT_LOOSE_BITS: Final = stat.S_IWGRP | stat.S_IWOTH


class CertificateError(ConfigError):
    """A certificate or key file that cannot be used; the message is one line."""


def node_uri(node_id: int) -> str:
    return f"{NODE_URI_PREFIX}{node_id}"


def node_cert_path(directory: Path, node_id: int) -> Path:
    return directory / f"node-{node_id}.pem"


def node_key_path(directory: Path, node_id: int) -> Path:
    return directory / f"node-{node_id}.key"


def node_id_from_uris(uris: Sequence[str]) -> int | None:
    """The node id named by ``uris`` (URI SANs), ``None`` if there is none; more than one
    distinct node URI is an error (a certificate must not speak for two nodes)."""
    ids: set[int] = set()
    for uri in uris:
        if not uri.startswith(NODE_URI_PREFIX):
            continue
        text = uri[len(NODE_URI_PREFIX) :]
        # Digits only: "raft://node/+3" or "raft://node/03" must not alias node 3.
        if not text.isascii() or not text.isdigit() or text != str(int(text)) or int(text) < 1:
            raise CertificateError(f"certificate names a malformed node URI {uri[:80]!r}")
        ids.add(int(text))
    if len(ids) > 1:
        raise CertificateError(f"certificate names several nodes: {sorted(ids)}")
    return next(iter(ids), None)


@attrs.frozen
class NodeFiles:
    """Where one node's TLS material lives."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_directory(cls, directory: Path, node_id: int) -> NodeFiles:
        """The layout ``certs init`` writes."""
        return cls(directory / CA_CERT, node_cert_path(directory, node_id),
                   node_key_path(directory, node_id))


def check_file(path: Path, *, secret: bool) -> None:
    """Refuse a missing, non-regular or loosely-permitted file (see the module docstring)."""
    what = "key file" if secret else "certificate file"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CertificateError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise CertificateError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CertificateError(f"{what} {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if secret and mode & _KEY_LOOSE_BITS:
        raise CertificateError(
            f"{what} {path} is accessible by group or others (mode {mode:04o}); "
            f"run `chmod 600 {path}`"
        )
    if not secret and mode & _CERT_LOOSE_BITS:
        raise CertificateError(
            f"{what} {path} is writable by group or others (mode {mode:04o}); "
            f"run `chmod 644 {path}`"
        )


def check_node_files(files: NodeFiles) -> None:
    check_file(files.ca, secret=False)
    check_file(files.cert, secret=False)
    check_file(files.key, secret=True)


def certificate_node_id(cert_pem: bytes, *, where: str) -> int | None:
    """The node id a PEM certificate names (``None`` for a client certificate)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"{where} is not a PEM certificate: {exc}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    return node_id_from_uris(san.get_values_for_type(x509.UniformResourceIdentifier))


# --- generation ---------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (never briefly world-readable), replacing nothing.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write_public(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    # The umask may have removed bits we want (never added any): make the mode exact.
    os.chmod(path, 0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    check_file(cert_path, secret=False)
    check_file(key_path, secret=True)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"CA files in {directory} cannot be loaded: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"CA key {key_path} is not an ECDSA key")
    return cert, key


def _new_ca(directory: Path, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "raftlib cluster CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / CA_KEY, _key_pem(key))
    _write_public(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    common_name: str,
    names: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    days: int,
    cert_path: Path,
    key_path: Path,
) -> None:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _host_names(extra_names: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for text in ["localhost", "127.0.0.1", "::1", *extra_names]:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            names.append(x509.DNSName(text))
    return names


def ensure_certs(
    directory: Path,
    *,
    nodes: int,
    clients: Sequence[str] = (CLIENT_NAME_DEFAULT,),
    extra_names: Sequence[str] = (),
    days: int = VALIDITY_DAYS_DEFAULT,
) -> list[Path]:
    """Create whatever of the layout is missing for nodes 1..``nodes`` and ``clients``,
    reusing an existing CA; return the files written. Existing files are never replaced."""
    if not 1 <= nodes <= NODES_MAX:
        raise CertificateError(f"nodes must be 1..{NODES_MAX}, got {nodes}")
    if not 1 <= days <= 100 * 365:
        raise CertificateError(f"days must be 1..36500, got {days}")
    for client in clients:
        if not client or not all(c.isalnum() or c in "-_." for c in client) or client[0] == ".":
            raise CertificateError(f"client name {client!r} must be letters, digits, - _ .")
    if directory.exists() and not directory.is_dir():
        raise CertificateError(f"{directory} exists and is not a directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: list[Path] = []
    have_ca = (directory / CA_CERT).exists() or (directory / CA_KEY).exists()
    if have_ca:
        ca = _load_ca(directory)
    else:
        ca = _new_ca(directory, days)
        written += [directory / CA_CERT, directory / CA_KEY]
    for node_id in range(1, nodes + 1):
        cert_path, key_path = node_cert_path(directory, node_id), node_key_path(directory, node_id)
        if _present(cert_path, key_path):
            continue
        _issue(
            ca,
            common_name=f"node-{node_id}",
            names=[x509.UniformResourceIdentifier(node_uri(node_id)),
                   x509.DNSName(f"node-{node_id}"), *_host_names(extra_names)],
            usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            days=days, cert_path=cert_path, key_path=key_path,
        )
        written += [cert_path, key_path]
    for client in clients:
        cert_path, key_path = directory / f"{client}.pem", directory / f"{client}.key"
        if _present(cert_path, key_path):
            continue
        _issue(
            ca,
            common_name=client,
            names=[x509.UniformResourceIdentifier(f"{CLIENT_URI_PREFIX}{client}")],
            usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
            days=days, cert_path=cert_path, key_path=key_path,
        )
        written += [cert_path, key_path]
    return written


def _present(cert_path: Path, key_path: Path) -> bool:
    cert, key = cert_path.exists(), key_path.exists()
    if cert != key:
        missing = key_path if cert else cert_path
        raise CertificateError(f"{missing} is missing but its pair exists; remove both to "
                               "have them issued again")
    return cert
