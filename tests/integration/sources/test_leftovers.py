"""An import with ``cleanup`` interrupted between recording a file and deleting it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomgate.intake.receive import Intake
from dicomgate.jobs import JobStatus
from dicomgate.sources import files
from dicomgate.sources.batch_settle import Planned, Recorded
from tests.integration.sources.helpers import inline_jobs, write_study


def test_files_left_by_an_interrupted_cleanup_go_only_if_the_archive_has_them(
    intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "drop"
    write_study(folder, 4)  # CT_small.dcm's TIFF preamble: these are copied, not taken
    taken = folder / "IM00001"
    taken.write_bytes(bytes(128) + taken.read_bytes()[128:])  # this one is taken
    names = sorted(p.name for p in folder.iterdir())
    remove = files._remove_imported

    def interrupted(item: Planned, recorded: Recorded) -> None:
        name = Path(item.key).name
        if name == "IM00002":  # replaced by another file after its import: must stay
            Path(item.key).unlink()
            Path(item.key).write_bytes(b"a new file put here since")
        elif name not in ("IM00000", "IM00001"):  # the crash came before these two
            remove(item, recorded)

    monkeypatch.setattr(files, "_remove_imported", interrupted)
    jobs = inline_jobs(intake)
    params = {"paths": [str(folder)], "cleanup": True}
    job = jobs.run_inline(jobs.submit(files.KIND, params))
    assert job.status is JobStatus.SUCCEEDED and job.counts == {"stored": 4}
    assert names == ["IM00000", "IM00001", "IM00002", "IM00003"]
    # IM00000 has the stored content (copied), IM00001 is the blob itself (taken): both gone.
    assert sorted(p.name for p in folder.iterdir()) == ["IM00002"]
    assert (folder / "IM00002").read_bytes() == b"a new file put here since"
    assert any("interrupted run had left" in line.message for line in jobs.log_lines(job.id))
