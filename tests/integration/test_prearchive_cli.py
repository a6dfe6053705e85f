"""``dicomgate rules test``, ``prearchive``, ``quarantine`` and ``projects`` as a user runs them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.integration.prearchive_support import ct, part10
from tests.unit.rules.rt_builders import build_rt_session

PROTOCOL = """
version: 1
rules:
  - name: phantoms
    when: {StudyDescription: {regex: "(?i)phantom.*"}}
    quarantine: phantom studies are reviewed
  - name: ct
    when: {Modality: [CT, RTSTRUCT]}
    archive: LUNG
"""


def _run(tmp: Path, *args: str, config: bool = True) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(tmp / "config.yaml")] if config else []
    return subprocess.run(
        [sys.executable, "-m", "dicomgate.cli", *args, *extra],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "DICOMGATE_DATA_DIR": str(tmp / "data")},
    )


def _setup(tmp: Path, protocol: str = PROTOCOL) -> Path:
    (tmp / "protocol.yaml").write_text(protocol)
    (tmp / "config.yaml").write_text(
        "stable_after: 0\nprojects: [{id: LUNG, archive_policy: manual}]\n"
        f"prearchive: {{protocol: {tmp / 'protocol.yaml'}}}\n"
    )
    folder = tmp / "in"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(part10(ct(StudyDescription="lung")))
    (folder / "b.dcm").write_bytes(part10(ct(StudyDescription="Phantom QA", PatientID="P2")))
    (folder / "notes.txt").write_text("not DICOM")
    return folder


def test_rules_test_dry_run_reports_each_session_and_writes_nothing(tmp_path: Path) -> None:
    folder = _setup(tmp_path)
    done = _run(tmp_path, "rules", "test", str(folder))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "archive -> LUNG as DOE_JANE/P001" in out and "rule 'ct' (rules[1])" in out
    assert "quarantine -> QUARANTINE" in out and "phantom studies are reviewed" in out
    assert "not read:" in out and "notes.txt" in out
    assert not (tmp_path / "data").exists()


def test_malformed_protocol_names_rule_and_key(tmp_path: Path) -> None:
    _setup(tmp_path, "rules:\n  - name: bad\n    when: {Modality: {near: CT}}\n    archive: X\n")
    done = _run(tmp_path, "config", "check", str(tmp_path / "config.yaml"), config=False)
    assert done.returncode == 2
    assert "rule 'bad' (rules[0])" in done.stderr and "near" in done.stderr


def _session_id(listing: str, status: str) -> str:
    for line in listing.splitlines():
        if status in line:
            return next(word for word in re.split(r"[\s│|]+", line) if word.isdigit())
    raise AssertionError(f"no {status} session in:\n{listing}")


def test_review_from_the_command_line(tmp_path: Path) -> None:
    folder = _setup(tmp_path)
    (folder / "c.dcm").write_bytes(part10(build_rt_session("cli").struct))
    assert _run(tmp_path, "import", str(folder)).returncode == 1  # notes.txt is rejected
    assert _run(tmp_path, "prearchive", "check").returncode == 0
    listed = _run(tmp_path, "prearchive", "ls").stdout
    assert "READY" in listed and "ERROR" in listed and "rt_references_missing" in listed
    # Session ids follow the order the import job's workers took the files in.
    ready, held = _session_id(listed, "READY"), _session_id(listed, "ERROR")
    refused = _run(tmp_path, "prearchive", "archive", held)
    assert refused.returncode == 1 and "rt_references_missing" in refused.stderr
    assert _run(tmp_path, "prearchive", "archive", ready, "--session", "V1").returncode == 0
    shown = _run(tmp_path, "prearchive", "show", ready).stdout
    assert '"status": "ARCHIVED"' in shown and '"quarantined": false' in shown
    quarantine = _run(tmp_path, "quarantine", "ls").stdout
    assert "P2" in quarantine and "rule_quarantine" in quarantine
    released = _run(tmp_path, "quarantine", "release", "P2", "LUNG")
    assert released.returncode == 0, released.stderr
    projects = _run(tmp_path, "projects", "ls").stdout
    assert "LUNG" in projects and "manual" in projects
    deleted = _run(tmp_path, "prearchive", "delete", held)
    assert deleted.returncode == 0 and "1 instances" in deleted.stdout
