"""``parse_file`` reads a Part-10 header as ``dcmread(stop_before_pixels=True)`` does.

It reads the file meta and the dataset without ``dcmread``: little-endian ones in one walk
of its own (``dicom/header_walk.py``), the rest with pydicom's ``read_dataset``; every Part-10
file of pydicom's test corpus must come out the same.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from tests.conftest import PYDICOM_FILES

from dicomgate.dicom.part10 import NotDicomError, parse_file


def _part10_files() -> list[Path]:
    files = []
    for path in sorted(PYDICOM_FILES.rglob("*.dcm")):
        head = path.read_bytes()[:132]
        if len(head) == 132 and head[128:132] == b"DICM":
            files.append(path)
    return files


def _values(ds: pydicom.Dataset) -> dict[int, Any]:
    """Every top-level element as its converted value's text, or the error converting it."""
    out: dict[int, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset yields elements)
        try:
            element = ds[tag]
            out[int(tag)] = (element.VR, str(element.value))
        except Exception as exc:  # a value pydicom cannot convert: both must fail alike
            out[int(tag)] = type(exc).__name__
    return out


@pytest.mark.parametrize("path", _part10_files(), ids=lambda p: p.name)
def test_the_header_is_dcmreads(path: Path) -> None:
    data = path.read_bytes()
    try:
        expected = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
    except Exception:
        with pytest.raises(NotDicomError):
            parse_file(data)
        return
    try:
        parsed = parse_file(data)
    except NotDicomError as exc:  # dicomgate's stricter checks (a dataset cut short)
        assert "incomplete" in str(exc) or "Transfer Syntax" in str(exc) or "cut short" in str(exc)
        return
    assert _values(parsed.header) == _values(expected)
    assert _values(parsed.header.file_meta) == _values(expected.file_meta)
    assert parsed.header.original_encoding == expected.original_encoding
    assert parsed.transfer_syntax == str(expected.file_meta.TransferSyntaxUID)


def test_a_broken_meta_is_refused_with_a_reason() -> None:
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    broken = data[:132] + b"\x02\x00\x10\x00UI\xff\x7f" + data[140:]  # a length past the end
    with pytest.raises(NotDicomError):
        parse_file(broken)
