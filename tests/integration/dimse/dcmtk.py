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


def keys(**values: str) -> list[str]:
    """Return ``-k Keyword=value`` arguments (an empty value asks for the attribute back)."""
    args: list[str] = []
    for keyword, value in values.items():
        args += ["-k", f"{keyword}={value}" if value else keyword]
    return args


def findscu(
    port: int, out: Path, root: str = "-S", **values: str
) -> tuple[subprocess.CompletedProcess[str], list[pydicom.Dataset]]:
    """Run a C-FIND and return the process and the response identifiers, in order."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    done = run("findscu", port, root, "-X", "-od", str(out), *keys(**values))
    responses = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    return done, responses
