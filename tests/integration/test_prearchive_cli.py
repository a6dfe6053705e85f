"""``dicomgate rules test``, ``prearchive``, ``quarantine`` and ``projects`` as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import select

from dicomgate.archive.session_models import ArchivedSession
from dicomgate.db import Database
from tests.integration.prearchive_support import ct, dicomgate, part10
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


_run = dicomgate


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


def _import(tmp: Path, name: str, ds: Dataset) -> None:
    """Import one instance on its own (one import job: one staging session, ids in order)."""
    folder = tmp / "in" / name
    folder.mkdir(parents=True)
    (folder / "x.dcm").write_bytes(part10(ds))
    done = _run(tmp, "import", str(folder))
    assert done.returncode == 0, done.stderr


def _show(tmp: Path, staging_id: str) -> dict[str, object]:
    shown = _run(tmp, "prearchive", "show", staging_id)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def _refused(done: subprocess.CompletedProcess[str], why: str) -> bool:
    return done.returncode == 1 and "refused:" in done.stderr and why in done.stderr


def test_rename_move_and_merge_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "stable_after: 0\ndefault_project: LUNG\n"
        "projects: [{id: LUNG, archive_policy: manual}, {id: OPEN, archive_policy: manual}]\n"
    )
    first = ct()
    _import(tmp_path, "a", first)  # staging session 1
    _import(tmp_path, "b", ct(PatientID="P2"))  # 2
    assert _run(tmp_path, "prearchive", "check").returncode == 0
    renamed = _run(tmp_path, "prearchive", "rename", "1", "--subject", "S 1", "--session", "V1")
    assert renamed.returncode == 0 and "renamed: READY" in renamed.stdout, renamed.stderr
    assert (_show(tmp_path, "1")["subject"], _show(tmp_path, "1")["session"]) == ("S_1", "V1")
    nothing = _run(tmp_path, "prearchive", "rename", "1")
    assert _refused(nothing, "give a subject or a session label")
    moved = _run(tmp_path, "prearchive", "move", "2", "OPEN")
    assert moved.returncode == 0 and "moved to OPEN: READY" in moved.stdout, moved.stderr
    assert _show(tmp_path, "2")["target_project"] == "OPEN"
    assert _refused(_run(tmp_path, "prearchive", "move", "2", "NOPE"), "NOPE")
    assert _run(tmp_path, "prearchive", "archive", "1").returncode == 0
    archived_already = "archived already"
    assert _refused(_run(tmp_path, "prearchive", "rename", "1", "--session", "X"), archived_already)
    assert _refused(_run(tmp_path, "prearchive", "move", "1", "OPEN"), archived_already)
    _import(tmp_path, "c", ct(study=first.StudyInstanceUID))  # 3: more of session V1's study
    assert _run(tmp_path, "prearchive", "check").returncode == 0
    assert _show(tmp_path, "3")["status"] == "CONFLICT"
    other_study = _run(tmp_path, "prearchive", "merge", "2", "LUNG", "V1")
    assert _refused(other_study, "another study")
    merged = _run(tmp_path, "prearchive", "merge", "3", "LUNG", "V1")
    assert merged.returncode == 0 and "merged into LUNG/V1" in merged.stdout, merged.stderr
    assert _show(tmp_path, "3")["status"] == "ARCHIVED"
    assert _refused(_run(tmp_path, "prearchive", "merge", "3", "LUNG", "V1"), archived_already)


def _carded(tmp: Path, scan_type: str) -> None:
    assign = f"{{attribute: SeriesDescription, regex: 'lung.*', set: {{scan_type: {scan_type}}}}}"
    card = f"{{name: acme, match: {{Manufacturer: ACME}}, assign: [{assign}]}}"
    (tmp / "config.yaml").write_text(
        "stable_after: 0\ndefault_project: CARDED\n"
        f"projects: [{{id: CARDED, study_cards: {{required: true, cards: [{card}]}}}}]\n"
    )


def _scan_types(tmp: Path) -> list[object]:
    db = Database(f"sqlite:///{tmp / 'data' / 'index.sqlite3'}")
    try:
        with db.reader() as session:
            rows = session.scalars(
                select(ArchivedSession).where(ArchivedSession.project_id == "CARDED")
            )
            return [scan.get("scan_type") for row in rows for scan in (row.scans or {}).values()]
    finally:
        db.dispose()


def test_quarantine_delete_and_apply_cards_from_the_command_line(tmp_path: Path) -> None:
    _carded(tmp_path, "CT")
    _import(tmp_path, "a", ct())  # no card matches its equipment: quarantined
    _import(tmp_path, "b", ct(Manufacturer="ACME", PatientID="P2", SeriesDescription="lung 1mm"))
    assert _run(tmp_path, "prearchive", "check").returncode == 0
    listed = _run(tmp_path, "quarantine", "ls").stdout
    assert "P001" in listed and "equipment_not_compatible" in listed
    deleted = _run(tmp_path, "quarantine", "delete", "P001")
    assert deleted.returncode == 0 and "P001 deleted (1 instances)" in deleted.stdout
    assert "P001" not in _run(tmp_path, "quarantine", "ls").stdout
    assert _refused(_run(tmp_path, "quarantine", "delete", "P001"), "no session P001")
    assert _scan_types(tmp_path) == ["CT"]
    _carded(tmp_path, "CT_LUNG")  # the card now assigns another scan type
    applied = _run(tmp_path, "projects", "apply-cards", "CARDED")
    assert applied.returncode == 0, applied.stderr
    assert "study cards applied to 1 session(s) of CARDED" in applied.stdout
    assert _scan_types(tmp_path) == ["CT_LUNG"]
    assert _refused(_run(tmp_path, "projects", "apply-cards", "NOPE"), "has no study cards")
