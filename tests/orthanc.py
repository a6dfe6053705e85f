"""A real Orthanc (Debian package) as a test peer: remote PACS, DICOMweb client, move destination.

Start one with :func:`start_orthanc` (or the ``orthanc`` fixture in ``tests/conftest.py``); it
listens on free loopback ports, keeps its data in a temp folder and is stopped by process id.
Modalities and DICOMweb servers it should know are passed at start, so tests can register
dicomgate's receiver as a C-MOVE destination or dicomgate's ``/dicomweb`` as a DICOMweb server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: its AE title, ports, REST client and process."""

    ae_title: str
    dicom_port: int
    http_port: int
    work: Path
    proc: subprocess.Popen[bytes]
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Return the base URL of Orthanc's REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Return the root of Orthanc's own DICOMweb server (plugin)."""
        return f"{self.url}/dicom-web"

    def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call Orthanc's REST API and raise on an HTTP error."""
        response = httpx.request(method, self.url + path, timeout=120, **kwargs)
        response.raise_for_status()
        return response

    def upload(self, data: bytes) -> dict[str, Any]:
        """Store one DICOM file in Orthanc through its REST API."""
        result: dict[str, Any] = self.rest("POST", "/instances", content=data).json()
        return result

    def upload_folder(self, folder: Path) -> int:
        """Store every file under ``folder``; return how many Orthanc accepted."""
        count = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.upload(path.read_bytes())
            count += 1
        return count

    def instance_uids(self) -> set[str]:
        """Return the SOP Instance UIDs Orthanc holds."""
        uids = set()
        for orthanc_id in self.rest("GET", "/instances").json():
            tags = self.rest("GET", f"/instances/{orthanc_id}/simplified-tags").json()
            uids.add(tags["SOPInstanceUID"])
        return uids

    def stop(self) -> None:
        """Terminate by process id, then kill if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_orthanc(
    work: Path,
    *,
    ae_title: str = "ORTHANC",
    modalities: dict[str, tuple[str, str, int]] | None = None,
    dicomweb_servers: dict[str, str] | None = None,
    dicomweb: bool = False,
    extra: dict[str, Any] | None = None,
) -> Orthanc:
    """Start Orthanc on free loopback ports with its data under ``work``.

    Parameters
    ----------
    work
        An empty folder for Orthanc's config, storage and log.
    ae_title
        Orthanc's own AE title.
    modalities
        Peers Orthanc may send to (C-MOVE destinations, C-STORE targets):
        name -> (AE title, host, port).
    dicomweb_servers
        DICOMweb servers Orthanc's plugin may query and store to: name -> base URL.
    dicomweb
        Load the DICOMweb plugin (implied by ``dicomweb_servers``).
    extra
        More configuration keys, merged last.
    """
    work.mkdir(parents=True, exist_ok=True)
    http, dicom = _free_port(), _free_port()
    config: dict[str, Any] = {
        "Name": "dicomgate-test-peer",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "DicomAet": ae_title,
        "DicomPort": dicom,
        "HttpPort": http,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomModalities": {
            name: [ae, host, port] for name, (ae, host, port) in (modalities or {}).items()
        },
        "Plugins": [],
    }
    if dicomweb or dicomweb_servers:
        config["Plugins"] = [DICOMWEB_PLUGIN]
        config["DicomWeb"] = {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {name: [url] for name, url in (dicomweb_servers or {}).items()},
        }
    config.update(extra or {})
    path = work / "orthanc.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    with (work / "orthanc.log").open("wb") as log:
        proc = subprocess.Popen(
            [ORTHANC, str(path)], cwd=work, stdout=log, stderr=subprocess.STDOUT
        )
    peer = Orthanc(ae_title, dicom, http, work, proc, dict(modalities or {}))
    _wait_ready(peer)
    return peer


def _wait_ready(peer: Orthanc) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if peer.proc.poll() is not None:
            log = (peer.work / "orthanc.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Orthanc exited at start-up:\n{log}")
        try:
            if httpx.get(peer.url + "/system", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    peer.stop()
    raise RuntimeError("Orthanc did not answer within 60 s")
