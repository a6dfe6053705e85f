"""The shared Orthanc peer starts, stores, and answers C-ECHO from dcmtk."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import PYDICOM_FILES
from tests.orthanc import Orthanc


def test_orthanc_peer_stores_and_echoes(orthanc: Orthanc) -> None:
    orthanc.upload((PYDICOM_FILES / "CT_small.dcm").read_bytes())
    assert len(orthanc.instance_uids()) == 1
    echo = subprocess.run(
        ["echoscu", "-aec", orthanc.ae_title, "127.0.0.1", str(orthanc.dicom_port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        capture_output=True,
        timeout=30,
    )
    assert echo.returncode == 0, echo.stderr
