"""TLS contexts of the listeners: DICOM TLS with client certificates, and HTTPS.

The DICOM listener refuses anything older than TLS 1.2 (HTTPS is uvicorn's context over the
system OpenSSL, whose minimum is TLS 1.2 on Debian) and requires a client certificate that
chains to ``auth.dicom_tls.ca_certificates``: a missing, self-signed or foreign one fails the
handshake, before any DICOM byte is read. Unreadable or mismatched files raise
``ConfigError`` naming the option, at start.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from dicomgate.auth.settings import AuthSettings, DicomTlsSettings
from dicomgate.errors import ConfigError


def _load_chain(context: ssl.SSLContext, key: str, certificate: Path, private: Path) -> None:
    try:
        context.load_cert_chain(certfile=certificate, keyfile=private)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{key}: cannot load certificate {certificate} with key {private}: {exc}"
        ) from exc


def dicom_server_context(tls: DicomTlsSettings) -> ssl.SSLContext:
    """Return the server context of the DICOM TLS listener (client certificates required)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    _load_chain(context, "auth.dicom_tls.certificate", tls.certificate, tls.key)
    try:
        context.load_verify_locations(cafile=tls.ca_certificates)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"auth.dicom_tls.ca_certificates: cannot load {tls.ca_certificates}: {exc}"
        ) from exc
    return context


def check_https(settings: AuthSettings) -> tuple[str, str] | None:
    """Return the HTTPS certificate and key paths after checking they load (None: plain HTTP)."""
    if settings.https_certificate is None or settings.https_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(context, "auth.https_certificate", settings.https_certificate, settings.https_key)
    return str(settings.https_certificate), str(settings.https_key)
