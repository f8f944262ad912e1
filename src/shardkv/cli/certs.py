"""``shardkv certs init`` and ``shardkv certs issue``: a cluster CA and node certificates
for mutual TLS between nodes, made with ``cryptography`` (no openssl command needed).

``init DIR`` writes ``ca.crt`` and ``ca.key`` (mode 0600); the CA's organisation is the
cluster id, so ``issue`` reads it from there. ``issue DIR --node-id N`` writes
``node-N.crt`` and ``node-N.key``, valid for the hosts given (IP addresses or DNS names,
what peers dial) and naming the node with the URI ``spiffe://<cluster id>/node/<N>``
(`shardkv.transport.identity`), which peers check on every call. Start node N with
``--peer-tls-cert DIR/node-N.crt --peer-tls-key DIR/node-N.key --peer-tls-ca DIR/ca.crt``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shardkv.transport.identity import node_uri, valid_cluster_id

_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


class CertError(ValueError):
    """What cannot be made, and why (the CLI prints it)."""


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def init_ca(directory: str | Path, cluster_id: str, days: int = 3650) -> Path:
    """Make ``ca.crt``/``ca.key`` in ``directory``; refuses to overwrite an existing CA."""
    if not valid_cluster_id(cluster_id):
        raise CertError(f"cluster id {cluster_id!r}: use 1-63 letters, digits, '_', '.', '-'")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.key").exists():
        raise CertError(f"{out / 'ca.key'} exists: a CA is made once (issue certificates with it)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"ShardKV CA {cluster_id}"),
        ]
    )
    start, end = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(out / "ca.key", key)
    (out / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out / "ca.crt"


def issue_node(
    directory: str | Path,
    node_id: int,
    hosts: list[str],
    cluster_id: str | None = None,
    days: int = 825,
) -> tuple[Path, Path]:
    """Make ``node-<id>.crt``/``.key`` in ``directory``, signed by its CA, valid for
    ``hosts`` and naming node ``node_id`` of the CA's cluster (or ``cluster_id``)."""
    out = Path(directory)
    try:
        ca_cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise CertError(f"no usable CA in {out} (run shardkv certs init first): {exc}") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{out / 'ca.key'} is not an EC key made by shardkv certs init")
    if cluster_id is None:
        names = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        if not names:
            raise CertError("the CA names no cluster: give --cluster-id")
        cluster_id = str(names[0].value)
    if node_id <= 0:
        raise CertError(f"node id must be positive, got {node_id}")
    if not hosts:
        raise CertError("give at least one --host (what peers dial: an IP or a DNS name)")
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(node_uri(cluster_id, node_id))]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"shardkv node {node_id}"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = out / f"node-{node_id}.crt", out / f"node-{node_id}.key"
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
