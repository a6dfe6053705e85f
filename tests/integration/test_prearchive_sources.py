"""Each prearchive state and each typed reason, reached through a real source.

The sources are the ones a site uses: ``dicomgate import PATH --config CONFIG`` run as a
subprocess (an import job, as a user runs it) and dcmtk's storescu pushing to a running
receiver. The result is observed as a user observes it: ``dicomgate prearchive ls`` (state,
target and reason codes), or the index for the receiver run in this process.

One import holds one study per case (one staging session each), so a single job reaches most
states and reasons; the reasons that need something archived first come from a second import.
ARCHIVING is transient (held only while one session is being archived) and is left to
``test_prearchive_states.py::test_archiving_left_by_a_crash_is_checked_again``.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select

from dicomgate.archive.models import StagingSession
from dicomgate.intake.receive import Intake
from dicomgate.pipeline import advance
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.integration.prearchive_support import (
    codes,
    ct,
    dicomgate,
    make_review,
    manual,
    prearchive_ls,
    storescu,
    write_folder,
)
from tests.unit.deid.deid_builders import ct_slice
from tests.unit.rules.rt_builders import build_rt_session

PROTOCOL = """
version: 1
rules:
  - {name: no-sc, when: {Modality: OT}, reject: secondary capture not accepted}
  - {name: phantoms, when: {StudyDescription: {regex: "(?i)phantom.*"}}, quarantine: phantoms}
  - {name: review, when: {StudyDescription: review}, archive: REVIEW}
  - {name: carded, when: {StudyDescription: carded}, archive: CARDED}
  - {name: lung, when: {Modality: [CT, RTSTRUCT]}, archive: LUNG}
"""
CARD = "{name: ge, match: {Manufacturer: GE MEDICAL SYSTEMS}}"
CONFIG = f"""
stable_after: 0
projects:
  - {{id: LUNG}}
  - {{id: REVIEW, archive_policy: manual}}
  - {{id: CARDED, study_cards: {{required: true, cards: [{CARD}]}}}}
prearchive: {{protocol: protocol.yaml, required_headers: [AccessionNumber]}}
"""


class Case(NamedTuple):
    """One staging session of an import: what is sent and what ``prearchive ls`` shows."""

    name: str  # Patient's Name, hence the subject label of the row (and the test id)
    datasets: list[Dataset]
    status: str
    target: str  # for an archived session: where it was archived
    reasons: list[str]
    subject: str | None = None  # the row's subject when it is not ``name``


def _ct(subject: str, **attributes: str) -> Dataset:
    """Return a lung CT of patient ``subject`` (its own study), with ``attributes``."""
    values = {"PatientID": f"ID-{subject}", "StudyDescription": "lung", "AccessionNumber": "A1"}
    return ct(**{**values, "PatientName": subject, **attributes})


def _rt_alone() -> Dataset:
    """Return an RT Structure Set whose contour images are not sent."""
    struct = build_rt_session("alone").struct
    struct.PatientName, struct.AccessionNumber = "RT", "A1"
    return struct


def _mixed() -> list[Dataset]:
    """Return two instances of one study under two Patient IDs."""
    first = _ct("MIXED")
    return [first, _ct("MIXED", StudyInstanceUID=first.StudyInstanceUID, PatientID="ID-2")]


ARCHIVED = _ct("ARCHIVED")
WAITING = _ct("READY", StudyDescription="review")
FIRST = [
    Case("ARCHIVED", [ARCHIVED], "ARCHIVED", "LUNG", []),
    Case("READY", [WAITING], "READY", "REVIEW", []),
    Case("PHANTOM", [_ct("PHANTOM", StudyDescription="Phantom QA")],
         "ARCHIVED", "QUARANTINE", ["rule_quarantine"]),
    Case("MR", [_ct("MR", Modality="MR")], "ARCHIVED", "QUARANTINE", ["no_rule_matched"]),
    # A rejected session gets no target and no labels: nothing is decided for it.
    Case("SC", [_ct("SC", Modality="OT")], "ERROR", "", ["rule_reject"], subject=""),
    Case("NOACC", [_ct("NOACC", AccessionNumber="")],
         "ARCHIVED", "QUARANTINE", ["missing_required_header"]),
    Case("ACME", [_ct("ACME", StudyDescription="carded", Manufacturer="ACME")],
         "ARCHIVED", "QUARANTINE", ["equipment_not_compatible"]),
    Case("RT", [_rt_alone()], "ERROR", "LUNG", ["rt_references_missing"]),
    # The two patients get two session labels, so the protocol also reports the instances as
    # routed differently (rule_quarantine) and proposes QUARANTINE.
    Case("MIXED", _mixed(), "CONFLICT", "QUARANTINE", ["mixed_patients", "rule_quarantine"]),
]  # fmt: skip


def _changed(ds: Dataset) -> Dataset:
    """Return ``ds`` with the same SOP Instance UID and other content."""
    changed = copy.deepcopy(ds)  # Dataset.copy() shares the elements with ``ds``
    changed.SeriesDescription = "sent again, changed"
    return changed


# Sent once the first import is archived: they conflict with what it archived.
SECOND = [
    Case("ARCHIVED", [_ct("ARCHIVED")], "CONFLICT", "LUNG", ["label_conflict"]),
    Case("UIDCONF", [_ct("UIDCONF", StudyInstanceUID=ARCHIVED.StudyInstanceUID)],
         "CONFLICT", "LUNG", ["uid_conflict"]),
    # The changed copy is set aside in a session of its own, which holds no instance and so
    # has no target and no labels; the stored copy's session stays READY.
    Case("DUPLICATE", [_changed(WAITING)], "CONFLICT", "", ["conflicting_duplicate"], subject=""),
]  # fmt: skip


def _import(tmp: Path, name: str, cases: list[Case]) -> None:
    """Write one folder per case below ``tmp/name`` and import it with one ``dicomgate import``."""
    for case in cases:
        write_folder(tmp / name, case.name, case.datasets)
    done = dicomgate(tmp, "import", str(tmp / name))
    # A conflicting duplicate is reported as a problem of the import (exit 1), nothing else.
    expected = 1 if any("conflicting_duplicate" in c.reasons for c in cases) else 0
    assert done.returncode == expected, done.stdout + done.stderr
    checked = dicomgate(tmp, "prearchive", "check")
    assert checked.returncode == 0, checked.stderr


Rows = list[dict[str, str]]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Rows, Rows]:
    """Run both imports; return the rows ``prearchive ls`` shows after each."""
    tmp = tmp_path_factory.mktemp("sources")
    (tmp / "protocol.yaml").write_text(PROTOCOL)
    (tmp / "config.yaml").write_text(CONFIG)
    _import(tmp, "first", FIRST)
    first = prearchive_ls(tmp)
    _import(tmp, "second", SECOND)
    return first, prearchive_ls(tmp)


def _check(rows: Rows, case: Case) -> None:
    subject = case.name if case.subject is None else case.subject
    [row] = [r for r in rows if r["subject"] == subject]
    shown = (row["status"], row["target"], row["reasons"])
    assert shown == (case.status, case.target, ",".join(case.reasons))


@pytest.mark.parametrize("case", FIRST, ids=[c.name for c in FIRST])
def test_one_import_reaches_each_state_and_reason(imported: tuple[Rows, Rows], case: Case) -> None:
    _check(imported[0], case)


@pytest.mark.parametrize("case", SECOND, ids=[c.name for c in SECOND])
def test_import_conflicting_with_what_is_archived(imported: tuple[Rows, Rows], case: Case) -> None:
    first, after = imported
    seen = {row["id"] for row in first}
    _check([row for row in after if row["id"] not in seen], case)


def test_conflicting_duplicate_leaves_the_stored_copy_as_it_was(
    imported: tuple[Rows, Rows],
) -> None:
    first, after = imported
    assert [r for r in after if r["subject"] == "READY"] == [
        r for r in first if r["subject"] == "READY"
    ]


VAULT_KEY = "7" * 64
DEID_CONFIG = """
stable_after: 0
default_project: RESEARCH
projects: [{id: RESEARCH, deid: {profile: {name: research}}}]
deid: {vault_key_file: vault.key}
"""
# The operator confirmed 16 February; the headers (deid_builders.patient) say 15 February.
CONFIRMED = ["first_name=Zqxjohn", "last_name=Zqxdoe", "birth_date=1960-02-16"]


@pytest.mark.parametrize("given", ["arguments", "file"])
def test_identity_confirmed_for_the_import_and_contradicted_by_the_headers(
    tmp_path: Path, given: str
) -> None:
    (tmp_path / "config.yaml").write_text(DEID_CONFIG)
    (tmp_path / "vault.key").write_text(VAULT_KEY)
    folder = write_folder(tmp_path, "cd", [ct_slice(0)])
    identity = [arg for pair in CONFIRMED for arg in ("--identity", pair)]
    if given == "file":  # kept out of the process list
        (tmp_path / "identity.txt").write_text("# confirmed at the desk\n" + "\n".join(CONFIRMED))
        identity = ["--identity-file", str(tmp_path / "identity.txt")]
    malformed = dicomgate(tmp_path, "import", str(folder), "--identity", "birth_date=1960-13-45")
    assert malformed.returncode == 2 and "identity.birth_date" in malformed.stderr
    done = dicomgate(tmp_path, "import", str(folder), *identity)
    assert done.returncode == 0, done.stdout + done.stderr
    assert dicomgate(tmp_path, "prearchive", "check").returncode == 0
    [row] = prearchive_ls(tmp_path)
    assert (row["status"], row["target"], row["reasons"]) == (
        "CONFLICT",
        "RESEARCH",
        "identity_mismatch",
    )


def test_a_bad_identity_file_is_refused_without_echoing_its_values(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(DEID_CONFIG)
    (tmp_path / "vault.key").write_text(VAULT_KEY)
    folder = write_folder(tmp_path, "cd", [ct_slice(0)])
    bad = tmp_path / "identity.txt"
    bad.write_text("last_name=Zqxdoe\nZqxsecret without an equals sign\n")
    done = dicomgate(tmp_path, "import", str(folder), "--identity-file", str(bad))
    assert done.returncode == 2 and "line 2 is not FIELD=VALUE" in done.stderr
    assert "Zqx" not in done.stdout + done.stderr
    both = dicomgate(
        tmp_path, "import", str(folder), "--identity-file", str(bad), "--identity", "sex=F"
    )
    assert both.returncode == 2 and "not both" in both.stderr
    missing = dicomgate(tmp_path, "import", str(folder), "--identity-file", str(tmp_path / "no"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert prearchive_ls(tmp_path) == []  # nothing was imported


@pytest.fixture()
def receiver(intake: Intake) -> Iterator[Receiver]:
    """The DICOM receiver on a free port, storing through ``intake``."""
    server = Receiver(load_settings(dicom_port=0, ae_title="DGTEST"), intake)
    yield server
    server.stop()


def _staging(intake: Intake) -> list[tuple[str, list[str]]]:
    with intake.db.reader() as session:
        rows = session.scalars(select(StagingSession).order_by(StagingSession.pk))
        return [(row.status, codes(row)) for row in rows]


def test_storescu_receiving_ready_and_a_changed_resend(
    intake: Intake, receiver: Receiver, tmp_path: Path
) -> None:
    review = manual(make_review(intake, tmp_path), "DEFAULT")
    quiet = replace(review, settings=review.settings.model_copy(update={"stable_after": 3600}))
    image = ct()
    storescu(receiver.port, write_folder(tmp_path, "a", [image]), "CT_1")
    advance(quiet)
    assert _staging(intake) == [("RECEIVING", [])]  # the modality may still be sending
    advance(quiet, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    assert _staging(intake) == [("READY", [])]  # a manual project waits for review
    # The modality sends the instance again with other content: the stored copy is kept and
    # the store is answered with a failure status.
    storescu(receiver.port, write_folder(tmp_path, "b", [_changed(image)]), "CT_1", ok=False)
    advance(review)
    assert _staging(intake) == [("READY", []), ("CONFLICT", ["conflicting_duplicate"])]
