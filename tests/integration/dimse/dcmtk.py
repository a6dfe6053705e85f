"""Run dcmtk's query/retrieve clients against a test SCP (TCP_NODELAY on, as the brief says)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pydicom

ENV = {**os.environ, "TCP_NODELAY": "1"}
AE_TITLE = "DGTEST"


def run(tool: str, port: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``tool -v -aec DGTEST ... 127.0.0.1 port`` and return the finished process."""
    return subprocess.run(
        [tool, "-v", "-aec", AE_TITLE, *args, "127.0.0.1", str(port)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def storescu(port: int, calling: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``storescu -aet calling ... 127.0.0.1 port files`` (``args``: options, then the
    ``.dcm`` files)."""
    first = next((i for i, a in enumerate(args) if a.endswith(".dcm")), len(args))
    options, files = args[:first], args[first:]
    command = ["storescu", "-v", "-aet", calling, "-aec", AE_TITLE, *options]
    return subprocess.run(
        [*command, "127.0.0.1", str(port), *files],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def keys(**values: str) -> list[str]:
    """Return ``-k Keyword=value`` arguments (an empty value asks for the attribute back)."""
    args: list[str] = []
    for keyword, value in values.items():
        args += ["-k", f"{keyword}={value}" if value else keyword]
    return args


def findscu(
    port: int, out: Path, root: str = "-S", calling: str = "", **values: str
) -> tuple[subprocess.CompletedProcess[str], list[pydicom.Dataset]]:
    """Run a C-FIND (as AE ``calling``, if given) and return the process and the response
    identifiers, in order."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    aet = ["-aet", calling] if calling else []
    done = run("findscu", port, root, *aet, "-X", "-od", str(out), *keys(**values))
    responses = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    return done, responses


class StoreSCP:
    """A dcmtk ``storescp`` writing what it receives, bit-preserving, into a folder."""

    def __init__(self, folder: Path, ae_title: str = "STORESCP", *options: str) -> None:
        from tests.conftest import _free_port

        self.folder, self.ae_title, self.port = folder, ae_title, _free_port()
        folder.mkdir(parents=True, exist_ok=True)
        command = ["storescp", "-aet", ae_title, "+B", *options, "-od", str(folder)]
        self.proc = subprocess.Popen([*command, str(self.port)], env=ENV)
        self._wait()

    def _wait(self) -> None:
        import socket
        import time

        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("storescp did not start")

    def received(self) -> dict[str, bytes]:
        """Return SOP Instance UID -> file bytes of everything received."""
        files = {}
        for path in self.folder.iterdir():
            if path.is_file():
                uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
                files[str(uid)] = path.read_bytes()
        return files

    def destination(self) -> dict[str, object]:
        """Return this peer as a dicomgate move destination."""
        return {"ae_title": self.ae_title, "host": "127.0.0.1", "port": self.port}

    def stop(self) -> None:
        """Terminate by process id."""
        self.proc.terminate()
        self.proc.wait(timeout=30)
