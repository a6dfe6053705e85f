"""The receiver against real dcmtk clients (echoscu, storescu) on free loopback ports."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]
from sqlalchemy import func, select

from dicomgate.archive.models import Instance, Series, SetAside, Study
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.conftest import PYDICOM_FILES

ENV = {**os.environ, "TCP_NODELAY": "1"}
# Files dcmtk can send as they are, one per transfer syntax family. The pydicom samples in
# JPEG-LS and RLE have odd-length pixel data that storescu refuses to read; RLE is generated below,
# JPEG-LS is covered by the intake tests.
CORPUS = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "ExplVR_BigEnd.dcm",
    "image_dfl.dcm",
    "JPEG-lossy.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "693_J2KI.dcm",
]


@pytest.fixture()
def receiver(intake: Intake) -> Iterator[Receiver]:
    settings = load_settings(dicom_port=0, ae_title="DGTEST")
    server = Receiver(settings, intake)
    yield server
    server.stop()


# storescu proposes an encoded syntax only when asked to (dcmtk's -x options).
_PROPOSE = {
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.57": "-xs",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def _propose(path: Path) -> list[str]:
    ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    return [_PROPOSE[ts]] if ts in _PROPOSE else []


def _storescu(
    port: int, *paths: Path, calling: str = "STORESCU", extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "storescu",
            "-aet",
            calling,
            "-aec",
            "DGTEST",
            "+sd",
            "+r",
            "-R",
            *(extra or []),
            "127.0.0.1",
            str(port),
            *map(str, paths),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _elements(data: bytes) -> dict[int, object]:
    """Return the dataset's values, less what storescu drops (group lengths, padding)."""
    ds = pydicom.dcmread(BytesIO(data))
    return {int(e.tag): e.value for e in ds if e.tag.element != 0 and e.tag != 0xFFFCFFFC}


def test_echoscu(receiver: Receiver) -> None:
    done = subprocess.run(
        ["echoscu", "-aec", "DGTEST", "127.0.0.1", str(receiver.port)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def test_storescu_mixed_corpus_stored_byte_for_byte(
    receiver: Receiver, intake: Intake, tmp_path: Path
) -> None:
    for name in CORPUS:
        # One association per file: each transfer syntax is negotiated as the file has it.
        done = _storescu(receiver.port, PYDICOM_FILES / name, extra=_propose(PYDICOM_FILES / name))
        assert done.returncode == 0, f"{name}: {done.stderr}"
    rle = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    rle.SOPInstanceUID = rle.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    rle.compress(RLELossless)
    rle.save_as(tmp_path / "rle.dcm")
    done = _storescu(receiver.port, tmp_path / "rle.dcm", extra=["-xr"])
    assert done.returncode == 0, done.stderr
    with intake.db.reader() as session:
        rows = {r.sop_instance_uid: r for r in session.scalars(select(Instance))}
    assert rows[rle.SOPInstanceUID].transfer_syntax_uid == RLELossless
    for path in [*(PYDICOM_FILES / name for name in CORPUS), tmp_path / "rle.dcm"]:
        name = path.name
        original = path.read_bytes()
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        stored = intake.blobs.read(rows[uid].blob_key)
        # storescu re-encodes from its parsed copy (trailing padding, odd lengths), so compare
        # the datasets element by element; byte identity of intake itself is tested on import.
        assert _elements(stored) == _elements(original), name


def _study(folder: Path, count: int, study: str | None = None, series: str | None = None) -> None:
    template = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    folder.mkdir(parents=True)
    study, series = study or generate_uid(), series or generate_uid()
    for number in range(count):
        template.StudyInstanceUID, template.SeriesInstanceUID = study, series
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        template.save_as(folder / f"{number}.dcm", enforce_file_format=True)


def _parallel_storescu(port: int, folders: list[Path]) -> None:
    procs = [
        subprocess.Popen(
            ["storescu", "-aec", "DGTEST", "+sd", "-R", "127.0.0.1", str(port), str(f)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for f in folders
    ]
    for proc in procs:
        _out, errors = proc.communicate(timeout=600)
        assert proc.returncode == 0, errors


def _push_studies(receiver: Receiver, tmp: Path, associations: int, each: int) -> None:
    """Push a study of ``each`` instances on each of ``associations`` parallel associations."""
    folders = [tmp / f"a{i}" for i in range(associations)]
    for folder in folders:
        _study(folder, each)
    _parallel_storescu(receiver.port, folders)


@pytest.mark.slow
def test_eight_associations_of_200_each(receiver: Receiver, intake: Intake, tmp_path: Path) -> None:
    _push_studies(receiver, tmp_path, 8, 200)
    with intake.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 1600
        assert session.scalar(select(func.count(func.distinct(Instance.sop_instance_uid)))) == 1600


def test_same_study_from_eight_associations(
    receiver: Receiver, intake: Intake, tmp_path: Path
) -> None:
    _study(tmp_path / "study", 50)
    _parallel_storescu(receiver.port, [tmp_path / "study"] * 8)
    with intake.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 1
        assert session.scalar(select(func.count()).select_from(Series)) == 1
        assert session.scalar(select(func.count()).select_from(Instance)) == 50


def test_associations_on_descriptors_above_1024(
    high_descriptors: None, receiver: Receiver, intake: Intake, tmp_path: Path
) -> None:
    # A long-running receiver reaches such descriptor numbers; select() cannot watch them,
    # and pynetdicom used to drop every association whose socket had one.
    _push_studies(receiver, tmp_path, 4, 10)
    with intake.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 40


def test_changed_resend_is_refused_and_kept_aside(
    receiver: Receiver, intake: Intake, tmp_path: Path
) -> None:
    original = tmp_path / "a.dcm"
    original.write_bytes((PYDICOM_FILES / "CT_small.dcm").read_bytes())
    assert _storescu(receiver.port, original).returncode == 0
    assert _storescu(receiver.port, original).returncode == 0  # identical: harmless no-op
    ds = pydicom.dcmread(original)
    ds.StudyDescription = "changed"
    ds.save_as(original)
    assert _storescu(receiver.port, original).returncode != 0  # failure status 0xA900
    with intake.db.reader() as session:
        assert session.scalars(select(SetAside.reason)).all() == ["conflicting_duplicate"]
        assert session.scalar(select(func.count()).select_from(Instance)) == 1


def test_bad_uid_refused_with_reason_and_server_keeps_serving(
    receiver: Receiver, intake: Intake, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.SeriesInstanceUID = "1.2.03.x"
    ds.save_as(tmp_path / "bad.dcm")
    assert _storescu(receiver.port, tmp_path / "bad.dcm").returncode != 0  # 0xC000
    with intake.db.reader() as session:
        aside = session.scalars(select(SetAside)).one()
    assert aside.reason == "malformed" and "SeriesInstanceUID" in aside.message
    good = tmp_path / "good.dcm"
    good.write_bytes((PYDICOM_FILES / "MR_small.dcm").read_bytes())
    assert _storescu(receiver.port, good).returncode == 0


def test_unknown_calling_ae_rejected(intake: Intake, tmp_path: Path) -> None:
    settings = load_settings(dicom_port=0, ae_title="DGTEST", dicom_allowed_calling_aes=["CT1"])
    server = Receiver(settings, intake)
    try:
        (tmp_path / "a.dcm").write_bytes((PYDICOM_FILES / "CT_small.dcm").read_bytes())
        assert _storescu(server.port, tmp_path / "a.dcm", calling="INTRUDER").returncode != 0
        assert _storescu(server.port, tmp_path / "a.dcm", calling="CT1").returncode == 0
    finally:
        server.stop()


def test_a_peer_offering_deflate_beside_uncompressed_sends_uncompressed(
    receiver: Receiver,
) -> None:
    # pynetdicom proposes implicit, explicit, deflated and big endian by default: deflate would
    # make it compress what it holds uncompressed (and us inflate it) for nothing.
    ae = AE(ae_title="DEFLATER")
    ae.add_requested_context(CTImageStorage)  # pynetdicom's default transfer syntaxes
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="DGTEST")
    try:
        assert assoc.is_established
        [context] = assoc.accepted_contexts
        assert context.transfer_syntax == [ExplicitVRLittleEndian]
    finally:
        assoc.release()


def test_the_first_full_collection_waits_a_minute_after_start(receiver: Receiver) -> None:
    # Collecting at the first association stalled a fresh worker's acceptor for a few hundred
    # ms while associations arrived together: the main process took them all.
    assert time.monotonic() - receiver.server._collected_at < 30
