"""What importing dicomgate sets up for every process it runs in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = (
    "import dicomgate, numpy, os, time; time.sleep(0.2); "
    "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))"
)


def _run(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if env_value is not None:
        env["OPENBLAS_NUM_THREADS"] = env_value
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_numpy_starts_no_blas_threads_under_dicomgate() -> None:
    # OpenBLAS threads spin for about 0.1 s of CPU in every process that imports numpy.
    assert _run(None) == ["1", "1"]


def test_a_users_blas_threads_setting_is_kept() -> None:
    assert _run("2")[0] == "2"
