"""Shared fixtures: a fresh index per test on SQLite, and on a real PostgreSQL for ``postgres``."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.migrate import upgrade
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from tests.orthanc import Orthanc, start_orthanc

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Feature tests run dicomgate open on loopback (allowed there); tests of authentication turn
# it on explicitly (tests/integration/test_auth_*.py), and their servers inherit nothing.
os.environ.setdefault("DICOMGATE_AUTH__ENABLED", "false")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_throwaway_postgres(tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        pytest.fail("no PostgreSQL server answers on 127.0.0.1:5432 and none is installed")
    bindir, port = bindirs[-1], _free_port()
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    shutil.chown(tmp, "postgres") if os.geteuid() == 0 else None
    subprocess.run(
        [*user, bindir / "initdb", "-D", tmp / "data", "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [
            *user,
            bindir / "postgres",
            "-D",
            tmp / "data",
            "-p",
            str(port),
            "-k",
            str(tmp),
            "-c",
            "listen_addresses=127.0.0.1",
        ]
    )
    for _ in range(100):
        if _answers("127.0.0.1", port):
            return f"127.0.0.1:{port}", proc
        proc.poll()
        subprocess.run(["sleep", "0.1"], check=True)
    pytest.fail("the throwaway PostgreSQL did not start")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Return host:port of a PostgreSQL server: the local one, or a throwaway cluster."""
    if _answers("127.0.0.1", 5432):
        yield "127.0.0.1:5432"
        return
    tmp = Path(tempfile.mkdtemp(prefix="dicomgate-pg-"))
    address, proc = _start_throwaway_postgres(tmp)
    yield address
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture()
def postgres_url(postgres_server: str) -> Iterator[str]:
    """Create a fresh database for one test and drop it afterwards."""
    import psycopg

    name = f"dicomgate_test_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://postgres@{postgres_server}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@{postgres_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty index on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Database(url)
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture()
def intake(database: Database, tmp_path: Path) -> Intake:
    """Intake stores over a fresh index and data folder."""
    return Intake(
        database,
        FilesystemBlobStore(tmp_path / "blobs"),
        FilesystemBlobStore(tmp_path / "set-aside"),
    )


@pytest.fixture()
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A real Orthanc on free loopback ports, stopped by process id afterwards."""
    peer = start_orthanc(tmp_path / "orthanc")
    yield peer
    peer.stop()


HIGH_DESCRIPTOR = 1100  # above select()'s ceiling (FD_SETSIZE, 1024)


@pytest.fixture()
def high_descriptors() -> Iterator[None]:
    """Hold open files until the next descriptor the process opens is above 1024.

    A long-running server reaches such numbers; ``select()`` cannot watch them.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * HIGH_DESCRIPTOR:
        pytest.skip(f"the descriptor limit ({hard}) is too low to go past 1024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * HIGH_DESCRIPTOR), hard))
    held: list[int] = []
    try:
        while not held or held[-1] < HIGH_DESCRIPTOR:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_descriptors() -> dict[int, str]:
    """Return this process's open descriptors and what each one is (a path, a pipe, ...)."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed meanwhile
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found
