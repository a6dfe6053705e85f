"""A throwaway PKI for TLS tests: a CA, a server and client certificates it signs, and a
self-signed client certificate it does not. Generated per test with ``cryptography``; nothing
is committed."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(folder: Path, stem: str, key: Key, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path, cert_path = folder / f"{stem}.key", folder / f"{stem}.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _certificate(
    subject: str,
    key: Key,
    issuer: x509.Name,
    signer: Key,
    *,
    ca: bool,
    usage: list[x509.ObjectIdentifier],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if not ca:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files (certificate, key)."""

    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    self_signed: tuple[Path, Path]


def make_pki(folder: Path) -> Pki:
    """Write a CA, a server and a client certificate it signed, and a self-signed client."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(
        "dicomgate test CA", ca_key, _name("dicomgate test CA"), ca_key, ca=True, usage=[]
    )
    ca_path, _ = _write(folder, "ca", ca_key, ca_cert)
    made: dict[str, tuple[Path, Path]] = {}
    for stem, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(stem, key, ca_cert.subject, ca_key, ca=False, usage=[usage])
        made[stem] = _write(folder, stem, key, cert)
    rogue = ec.generate_private_key(ec.SECP256R1())
    rogue_cert = _certificate(
        "client", rogue, _name("client"), rogue, ca=False, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    return Pki(
        ca_path, made["server"], made["client"], _write(folder, "self-signed", rogue, rogue_cert)
    )
