"""``dicomgate rules test PATH``: what the sorting protocol would do with a folder, writing nothing.

Files are grouped into sessions by Study Instance UID; for each session the rule that matched,
where the session would go and why are reported. RT references are resolved within the folder
only (the dry run does not read the index). Unreadable files are listed, never skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.prearchive.context import load_rules
from dicomgate.rules import Decision, decide, load_protocol
from dicomgate.settings import Settings


def _files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    yield from (p for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink())


def _sessions(path: Path) -> tuple[dict[str, list[Dataset]], list[str]]:
    sessions: dict[str, list[Dataset]] = {}
    problems: list[str] = []
    for file in _files(path):
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            problems.append(f"not read: {file}: {type(exc).__name__}")
            continue
        uid = str(header.get("StudyInstanceUID", "") or "(no Study Instance UID)")
        sessions.setdefault(uid, []).append(header)
    return sessions, problems


def describe(uid: str, count: int, decision: Decision) -> list[str]:
    """Return the report lines of one session's decision."""
    where = decision.project or "nowhere (rejected)"
    if decision.proposed_project:
        where += f" (proposed {decision.proposed_project})"
    rule = str(decision.rule) if decision.rule else "no rule"
    labels = decision.labels
    named = f" as {labels.subject}/{labels.session}" if labels else ""
    lines = [f"study {uid} ({count} instances): {decision.action.value} -> {where}{named}"]
    lines.append(f"  rule: {rule}; why: {decision.why}")
    lines += [f"  reason {r.code.value}: {r.message}" for r in decision.reasons]
    lines += [f"  warning {w.code.value}: {w.message}" for w in decision.warnings]
    return lines


def dry_run(settings: Settings, path: Path) -> list[str]:
    """Return the dry-run report of ``path`` under the protocol of ``settings``."""
    protocol, required, cards, _labels = load_rules(settings)
    sessions, problems = _sessions(path)
    origin = Origin(OriginKind.IMPORT, import_path=str(path.resolve()))
    lines: list[str] = []
    for uid, headers in sessions.items():
        chosen = protocol or load_protocol(
            {"rules": [{"name": "default-project", "archive": settings.default_project}]}
        )
        decision = decide(headers, origin, chosen, required=required, study_cards=cards)
        lines += describe(uid, len(headers), decision)
    if not sessions:
        lines.append(f"no DICOM files found in {path}")
    return lines + problems
