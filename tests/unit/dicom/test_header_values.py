"""Values read from the raw elements agree with pydicom's on real files, every charset too."""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_charset_files
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from tests.conftest import PYDICOM_FILES

from dicomgate.archive.index import integer, text
from dicomgate.dicom.header_values import us_value, value_text


def _header(path: Path) -> FileDataset | None:
    try:
        return dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError):
        return None  # pydicom's deliberately broken samples


# pydicom's deliberately broken samples, which it cannot read at all, have nothing to compare.
FILES = [
    path
    for path in sorted(PYDICOM_FILES.glob("*.dcm")) + sorted(Path(f) for f in get_charset_files())
    if _header(path) is not None
]


def _reference(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:
        return "<unreadable>"
    return None if value is None else str(value)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_top_level_value_agrees_with_pydicom(path: Path) -> None:
    fresh, reference = _header(path), _header(path)
    assert fresh is not None and reference is not None
    # Repeating groups (overlays, curves) have no single tag per keyword: not ours to read.
    keywords = [
        keyword_for_tag(tag) for tag in list(reference.keys()) if tag >> 24 not in (0x50, 0x60)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's validation warnings on odd samples
        for keyword in filter(None, keywords):
            expected = _reference(reference, keyword)
            try:
                got = value_text(fresh, keyword)
            except Exception:
                got = "<unreadable>"
            assert got == expected, keyword


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_absent_empty_and_numbers_read_raw(implicit: bool) -> None:
    ds = Dataset()
    ds.PatientID = ""
    ds.PatientName = "Doe^Jane "
    ds.InstanceNumber = "12"
    ds.SeriesNumber = None
    ds.Rows = 8256  # binary US whose two bytes are printable ASCII: read through pydicom
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, ds)
    raw = read_dataset(BytesIO(buffer.getvalue()), implicit, True)
    assert value_text(raw, "PatientName") == "Doe^Jane"
    assert value_text(raw, "StudyDate") is None
    assert text(raw, "PatientID") == "" and text(raw, "StudyDate") == ""
    assert integer(raw, "InstanceNumber") == 12
    assert integer(raw, "SeriesNumber") is None
    assert value_text(raw, "Rows") == "8256" and integer(raw, "Rows") == 8256


def test_a_nul_padded_uid_is_read_raw() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # odd length: written with a NUL pad
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    assert buffer.getvalue().endswith(b".2\0")
    raw = read_dataset(BytesIO(buffer.getvalue()), False, True)
    assert value_text(raw, "SOPClassUID") == "1.2.840.10008.5.1.4.1.1.2"
    assert isinstance(raw._dict[0x00080016], RawDataElement)  # pydicom never converted it


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_us_values_agree_with_pydicom(path: Path) -> None:
    fresh, reference = _header(path), _header(path)
    assert fresh is not None and reference is not None
    for keyword in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel"):
        assert us_value(fresh, keyword) == reference.get(keyword), keyword


@pytest.mark.parametrize("little", [True, False], ids=["little-endian", "big-endian"])
def test_a_raw_us_is_read_in_the_datasets_byte_order(little: bool) -> None:
    ds = Dataset()
    ds.Rows, ds.Columns = 513, 2
    ds.AcquisitionMatrix = [0, 256, 256, 0]  # several US values: through pydicom
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = little, False
    write_dataset(buffer, ds)
    raw = read_dataset(BytesIO(buffer.getvalue()), False, little)
    assert us_value(raw, "Rows") == 513 and us_value(raw, "Columns") == 2
    assert us_value(raw, "AcquisitionMatrix") == [0, 256, 256, 0]
    assert us_value(raw, "BitsStored") is None
    assert integer(raw, "Rows") == 513
