"""``dicomgate deid`` as a user runs it: a folder in, a clean folder out, leaks caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydicom import dcmread

from dicomgate.deid.offline import write_dataset
from tests.unit.deid.deid_builders import ct_slice, rt_chain

SECRET = "cli-test-secret-0123456789abcdef"


def _run(*args: str, cwd: Path, secret: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    if secret:
        env["DICOMGATE_DEID_SECRET"] = SECRET
    return subprocess.run(
        [sys.executable, "-m", "dicomgate", "deid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in" / "ZQXDOE"
    folder.mkdir(parents=True)
    for i, ds in enumerate(rt_chain()):
        write_dataset(ds, folder / f"ZQXDOE_{i}.dcm")
    us = ct_slice(7)
    us.Modality = "US"
    write_dataset(us, folder / "us.dcm")
    (tmp_path / "basic.yaml").write_text("name: basic\n")
    return tmp_path / "in"


def test_deid_folder_then_verify(tmp_path: Path) -> None:
    source = _inputs(tmp_path)
    done = _run(str(source), "out", "--profile", "basic.yaml", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # the ultrasound image is quarantined
    assert "written: 6" in done.stdout and "quarantined: 1" in done.stdout
    assert "burned-in" in done.stdout
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs][:2] == ["000001.dcm", "000002.dcm"]
    for path in outputs:
        data = path.read_bytes()
        for leak in (b"ZQX", b"PIDQ778899", b"ACCQ4455", b"1.2.826.0.1.3680043.9999"):
            assert leak not in data
    verified = _run("verify", "out", "--profile", "basic.yaml", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout
    assert "no violation" in verified.stdout


def test_same_secret_gives_same_pseudonyms_and_uids(tmp_path: Path) -> None:
    source = _inputs(tmp_path)
    _run(str(source), "a", "--profile", "basic.yaml", cwd=tmp_path)
    _run(str(source), "b", "--profile", "basic.yaml", cwd=tmp_path)
    first, second = dcmread(tmp_path / "a" / "000001.dcm"), dcmread(tmp_path / "b" / "000001.dcm")
    assert first.PatientID == second.PatientID != "PIDQ778899"
    assert first.SOPInstanceUID == second.SOPInstanceUID


def test_verify_lists_a_planted_leak(tmp_path: Path) -> None:
    source = _inputs(tmp_path)
    _run(str(source), "out", "--profile", "basic.yaml", cwd=tmp_path)
    target = tmp_path / "out" / "000002.dcm"
    ds = dcmread(target)
    ds.InstitutionName = "ZQXGENERAL HOSPITAL"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9999.1"
    ds.save_as(target)
    done = _run("verify", "out", "--profile", "basic.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "000002.dcm" in done.stdout
    assert "InstitutionName" in done.stdout and "removed-present" in done.stdout
    assert "StudyInstanceUID" in done.stdout and "uid-not-remapped" in done.stdout
    assert "2 violation(s)" in done.stdout


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("dates: sometimes\n")
    (tmp_path / "in").mkdir()
    bad_profile = _run("in", "out", "--profile", "bad.yaml", cwd=tmp_path)
    assert bad_profile.returncode == 2 and "dates" in bad_profile.stderr
    missing = _run("verify", "nowhere", "--profile", "bad.yaml", cwd=tmp_path)
    assert missing.returncode == 2
    no_profile = _run("in", "out", "--profile", "absent.yaml", cwd=tmp_path, secret=False)
    assert no_profile.returncode == 2 and "cannot read" in no_profile.stderr
