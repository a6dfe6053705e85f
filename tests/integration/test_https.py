"""``dicomgate serve`` over HTTPS when ``auth.https_certificate``/``https_key`` are set."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import _free_port
from tests.pki import make_pki


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMGATE_")}
    return env | {"DICOMGATE_AUTH__ENABLED": "true"}


def _config(tmp: Path, port: int, cert: Path, key: Path) -> Path:
    config = tmp / "config.yaml"
    config.write_text(
        f"data_dir: {tmp / 'data'}\nhttp_port: {port}\ndicom_port: {_free_port()}\n"
        "auth:\n  admin_password: admin password for tests\n"
        f"  https_certificate: {cert}\n  https_key: {key}\n"
    )
    return config


def test_serve_speaks_https_with_the_configured_certificate(tmp_path: Path) -> None:
    pki, port = make_pki(tmp_path / "pki"), _free_port()
    config = _config(tmp_path, port, *pki.server)
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dicomgate", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline:
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/api/health", verify=trusted)
            except httpx.ConnectError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200
        studies = httpx.get(f"https://localhost:{port}/api/studies", verify=trusted)
        assert studies.status_code == 401  # HTTPS changes the transport, not the rules
        # A client that trusts only the system CAs refuses the test CA's certificate.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/api/health")
        # Plain HTTP on the HTTPS port gets no API answer.
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/api/health").status_code
        except httpx.HTTPError:
            plain = None
        assert plain != 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_serve_refuses_an_unloadable_https_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    config = _config(tmp_path, _free_port(), pki.server[0], pki.client[1])  # key of another cert
    done = subprocess.run(
        [sys.executable, "-m", "dicomgate", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert done.returncode == 2
    assert "auth.https_certificate" in done.stderr
