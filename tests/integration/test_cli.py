"""The ``dicomgate`` command as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import PYDICOM_FILES


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomgate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DICOMGATE_DATA_DIR": str(cwd / "data")},
    )


def test_config_check_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("http_prot: 8080\n")
    done = _run("config", "check", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "http_prot" in done.stderr


def _mixed_folder(tmp_path: Path) -> Path:
    """Write ``in/nested/``: two good instances, a truncated one, a text file; return it."""
    source = tmp_path / "in" / "nested"
    source.mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm"):
        shutil.copy(PYDICOM_FILES / name, source / name)
    (source / "notes.txt").write_text("not DICOM")
    return source


def test_import_reports_each_outcome(tmp_path: Path) -> None:
    source = _mixed_folder(tmp_path)
    first = _run("import", str(tmp_path / "in"), cwd=tmp_path)
    assert first.returncode == 1
    assert "stored: 2" in first.stdout and "rejected: 2" in first.stdout
    assert "MR_truncated.dcm" in first.stdout and "incomplete" in first.stdout
    again = _run("import", str(source / "CT_small.dcm"), cwd=tmp_path)
    assert again.returncode == 0
    assert "already_stored: 1" in again.stdout
    assert len(list((tmp_path / "data" / "set-aside").rglob("*"))) > 0


def test_import_remove_imported_deletes_only_what_the_archive_has(tmp_path: Path) -> None:
    source = _mixed_folder(tmp_path)
    done = _run("import", "--remove-imported", str(tmp_path / "in"), cwd=tmp_path)
    assert done.returncode == 1 and "stored: 2" in done.stdout
    # What was refused stays where it was, for the user to see; the stored files are gone.
    assert sorted(p.name for p in source.iterdir()) == ["MR_truncated.dcm", "notes.txt"]
    only = tmp_path / "again"
    only.mkdir()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", only / "CT_small.dcm")
    again = _run("import", "--remove-imported", str(only), cwd=tmp_path)
    assert again.returncode == 0 and "already_stored: 1" in again.stdout
    assert not only.exists()  # emptied, so removed


def test_a_large_import_is_stored_by_processes_forked_from_the_command(tmp_path: Path) -> None:
    from tests.integration.sources.helpers import write_study

    uids = write_study(tmp_path / "in" / "study", 60)
    (tmp_path / "in" / "notes.txt").write_text("not DICOM")
    config = tmp_path / "config.yaml"
    config.write_text("sources: {import_processes: 2, import_processes_from: 20}\n")
    done = _run("import", "-c", str(config), str(tmp_path / "in"), cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # the text file is rejected, the rest stored
    assert "stored: 60" in done.stdout and "rejected: 1" in done.stdout, done.stdout
    again = _run("import", "-c", str(config), str(tmp_path / "in" / "study"), cwd=tmp_path)
    assert again.returncode == 0 and f"already_stored: {len(uids)}" in again.stdout


def test_import_remove_imported_refuses_dicomdir_media(tmp_path: Path) -> None:
    media = tmp_path / "cd"
    shutil.copytree(PYDICOM_FILES / "dicomdirtests", media)
    done = _run("import", "--remove-imported", str(media), cwd=tmp_path)
    assert done.returncode == 2 and "not supported for DICOMDIR media" in done.stderr
    assert (media / "DICOMDIR").exists()


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    assert _run("db", "upgrade", cwd=tmp_path).returncode == 0
    assert _run("db", "upgrade", cwd=tmp_path).returncode == 0


def test_the_entry_point_loads_the_command_line_only_when_called() -> None:
    # A spawned worker process runs the console script's imports again before its task.
    probe = "import sys, dicomgate.entry; assert 'dicomgate.cli' not in sys.modules"
    subprocess.run([sys.executable, "-c", probe], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "dicomgate", "--help"], capture_output=True, text=True, check=True
    )
    assert "research DICOM intake" in result.stdout
