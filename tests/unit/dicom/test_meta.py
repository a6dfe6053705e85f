"""The hand-written file meta encoder against pydicom's writer."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from dicomgate.dicom.part10 import PREAMBLE, build_meta, parse_dataset
from dicomgate.dicom.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME


def _pydicom_meta(sop_class: str, sop_instance: str, ts: str, source_ae: str) -> bytes:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae
    buf = BytesIO()
    write_file_meta_info(buf, meta, enforce_standard=True)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "ts", "ae"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1", "STORESCU"),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.45", "1.2.840.10008.1.2", "CT1"),
        ("1.2.840.10008.5.1.4.1.1.7", "2.25.1234567", "1.2.840.10008.1.2.4.50", ""),
    ],
)
def test_meta_bytes_equal_pydicoms(sop_class: str, sop_instance: str, ts: str, ae: str) -> None:
    expected = _pydicom_meta(sop_class, sop_instance, ts, ae)
    assert build_meta(sop_class, sop_instance, ts, ae) == expected


def test_wrapped_dataset_reads_back_with_its_meta() -> None:
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"
    buf = BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True)
    parsed = parse_dataset(buf.getvalue(), "1.2.840.10008.1.2.1", "MODALITY1")
    assert parsed.data.startswith(PREAMBLE + b"DICM")
    read = pydicom.dcmread(BytesIO(parsed.data))
    assert read.file_meta.SourceApplicationEntityTitle == "MODALITY1"
    assert read.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"
    assert parsed.data[parsed.dataset_offset :] == buf.getvalue()
