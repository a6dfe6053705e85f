"""``dicomgate serve`` as a real process on free loopback ports, for whole-service tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

from tests.conftest import PYDICOM_FILES, _free_port


class ServeProcess:
    """One ``dicomgate serve`` with a YAML config built from ``lines`` (ports and data dir added).

    Parameters
    ----------
    tmp : Path
        Folder for the config, the data dir and the server log.
    lines : Sequence[str]
        Further YAML lines of the config.
    env : Mapping[str, str] | None
        The server's environment (default: this process's).
    log : bool
        Write the server's stdout and stderr to ``<tmp>/server.log`` (for log inspection tests).
    """

    def __init__(
        self,
        tmp: Path,
        lines: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        log: bool = False,
    ) -> None:
        self.tmp = tmp
        self.http, self.dicom = _free_port(), _free_port()
        self.config = tmp / "config.yaml"
        head = [f"data_dir: {tmp / 'data'}", f"http_port: {self.http}", f"dicom_port: {self.dicom}"]
        self.config.write_text("\n".join([*head, *lines]) + "\n")
        self.env = dict(env) if env is not None else None
        self.log = tmp / "server.log" if log else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start the process and wait until ``/api/health`` answers."""
        cmd = [sys.executable, "-m", "dicomgate", "serve", "--config", str(self.config)]
        if self.log is None:
            self.proc = subprocess.Popen(cmd, env=self.env)
        else:
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dicomgate serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url("/api/health"), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("dicomgate serve did not answer on /api/health")

    def url(self, path: str) -> str:
        """The full URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.http}{path}"

    def kill(self) -> None:
        """SIGKILL the process (a crash), then reap it."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Terminate the process politely and reap it."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def corpus(folder: Path, count: int) -> list[str]:
    """Write ``count`` CT instances of one new study into ``folder``; return their UIDs."""
    template = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    folder.mkdir(parents=True, exist_ok=True)
    template.StudyInstanceUID, template.SeriesInstanceUID = generate_uid(), generate_uid()
    uids = []
    for number in range(count):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        template.save_as(folder / f"{number:05d}.dcm", enforce_file_format=True)
        uids.append(str(template.SOPInstanceUID))
    return uids
