"""Pushed instances are stored byte for byte as the sender encoded them.

storescu re-encodes what it sends (drops group lengths, trailing padding), so these pushes use
pynetdicom's SCU in its chunked mode, which sends a file's dataset bytes as they are in the
file, without decoding them. The stored blob after its file meta must equal the file after its
file meta, for every transfer syntax family.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from sqlalchemy import select

from dicomgate.archive.models import Instance
from dicomgate.dicom.structure import meta_end
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.conftest import PYDICOM_FILES

# One file per transfer syntax family, the JPEG-LS and RLE samples with odd-length fragments
# included (storescu refuses those; bytes as they are must pass).
FILES = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR little endian
    "ExplVR_BigEnd.dcm",  # explicit VR big endian
    "image_dfl.dcm",  # deflated explicit VR little endian
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
    "JPEG-lossy.dcm",  # JPEG extended
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "693_J2KI.dcm",  # JPEG 2000
    "MR_small_RLE.dcm",  # RLE lossless
    "rtplan.dcm",  # nested sequences, no pixel data
]


def _corpus(folder: Path) -> list[Path]:
    """Return the files to send, as they are where possible.

    A sample sharing another's SOP Instance UID (several samples are one dataset in different
    encodings) or lacking the study and series UIDs intake requires is sent as a copy that
    has them.
    """
    folder.mkdir()
    seen: set[str] = set()
    paths = []
    for name in FILES:
        path = PYDICOM_FILES / name
        ds = pydicom.dcmread(path)
        missing = "StudyInstanceUID" not in ds or "SeriesInstanceUID" not in ds
        if ds.SOPInstanceUID in seen or missing:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.StudyInstanceUID = ds.get("StudyInstanceUID", generate_uid())
            ds.SeriesInstanceUID = ds.get("SeriesInstanceUID", generate_uid())
            path = folder / name
            ds.save_as(path)
        seen.add(str(ds.SOPInstanceUID))
        paths.append(path)
    return paths


@pytest.fixture()
def receiver(intake: Intake) -> Iterator[Receiver]:
    server = Receiver(load_settings(dicom_port=0, ae_title="DGTEST"), intake)
    yield server
    server.stop()


def _after_meta(data: bytes) -> bytes:
    return data[meta_end(data, 132) :]


def _send_unchanged(port: int, path: Path) -> int:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title="BYTESCU")
    ae.add_requested_context(header.SOPClassUID, header.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="DGTEST")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
    finally:
        assoc.release()
    return int(status.Status)


def test_pushed_datasets_are_stored_byte_for_byte(
    receiver: Receiver, intake: Intake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    paths = _corpus(tmp_path / "corpus")
    for path in paths:
        assert _send_unchanged(receiver.port, path) == 0x0000, path.name
    with intake.db.reader() as session:
        rows = {r.sop_instance_uid: r for r in session.scalars(select(Instance))}
    for path in paths:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        row = rows[str(header.SOPInstanceUID)]
        assert row.transfer_syntax_uid == header.file_meta.TransferSyntaxUID, path.name
        stored = intake.blobs.read(row.blob_key)
        assert _after_meta(stored) == _after_meta(path.read_bytes()), path.name
        assert stored[:128] == bytes(128)  # the preamble is zeroed
