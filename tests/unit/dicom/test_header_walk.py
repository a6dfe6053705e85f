"""``header_walk`` gives pydicom the raw elements pydicom's own reader gives, and checks lengths.

Compared element by element (tag, VR, length, bytes, position, encoding flags) against
``read_dataset`` with a stop at pixel data, on every file pydicom ships and on generated corner
cases; a dataset cut at any byte must be refused exactly when the old two walks (pydicom, then
``check_complete``) refused it.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.filereader import read_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from tests.conftest import PYDICOM_FILES

from dicomgate.dicom.header_walk import read_header, read_meta
from dicomgate.dicom.part10 import guess_transfer_syntax, is_part10
from dicomgate.dicom.structure import TruncatedError, check_complete, meta_end

_IMPLICIT = "1.2.840.10008.1.2"
_LITTLE_ENDIAN = {_IMPLICIT, "1.2.840.10008.1.2.1"}
_NOT_LITTLE_ENDIAN = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


def _stop(tag: BaseTag, vr: str | None, length: int) -> bool:
    return bool(tag >= 0x7FE00010)


def _pydicom(data: bytes, offset: int, implicit: bool) -> Dataset:
    fp = BytesIO(data)
    fp.seek(offset)
    return read_dataset(fp, implicit, True, stop_when=_stop)


def _raw(ds: Dataset) -> dict[int, Any]:
    """Each element as read: the raw tuple, or a sequence's items, recursively."""
    out: dict[int, Any] = {}
    for tag, element in ds._dict.items():
        if isinstance(element, RawDataElement):
            out[int(tag)] = tuple(element)
        elif isinstance(element.value, Sequence):
            items = [(_raw(item), item.original_character_set) for item in element.value]
            out[int(tag)] = (element.VR, element.is_undefined_length, items)
        else:
            out[int(tag)] = (element.VR, str(element.value))
    return out


def _values(ds: Dataset) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset yields elements)
        try:
            out[int(tag)] = (ds[tag].VR, str(ds[tag].value))
        except Exception as exc:  # both must fail alike on a value pydicom cannot convert
            out[int(tag)] = type(exc).__name__
    return out


def _old_outcome(data: bytes, offset: int, transfer_syntax: str) -> Dataset | type[Exception]:
    """What intake did before: pydicom's reader, then the completeness walk."""
    try:
        header = _pydicom(data, offset, transfer_syntax == _IMPLICIT)
        check_complete(memoryview(data)[offset:], transfer_syntax)
    except TruncatedError:
        return TruncatedError
    except Exception:
        return Exception
    return header


def _new_outcome(
    data: bytes, offset: int, transfer_syntax: str
) -> Dataset | type[Exception] | None:
    try:
        return read_header(data, offset, transfer_syntax == _IMPLICIT)
    except TruncatedError:
        return TruncatedError
    except Exception:
        return Exception


def _datasets() -> list[tuple[str, bytes, int, str]]:
    """(name, bytes, dataset offset, transfer syntax) of every little-endian pydicom file."""
    found = []
    for path in sorted(PYDICOM_FILES.rglob("*.dcm")):
        data = path.read_bytes()
        if is_part10(data):
            try:
                offset = meta_end(data, 132)
                meta = _pydicom(data[:offset], 132, False)
            except Exception:
                continue
            ts = str(meta.get("TransferSyntaxUID", ""))
            if ts and ts not in _NOT_LITTLE_ENDIAN:
                found.append((path.name, data, offset, ts))
        elif (ts := guess_transfer_syntax(data)) in _LITTLE_ENDIAN:
            found.append((path.name, data, 0, ts))
    return found


DATASETS = _datasets()


@pytest.mark.parametrize(("name", "data", "offset", "ts"), DATASETS, ids=[d[0] for d in DATASETS])
def test_every_pydicom_file_reads_as_pydicom_reads_it(
    name: str, data: bytes, offset: int, ts: str
) -> None:
    old = _old_outcome(data, offset, ts)
    new = _new_outcome(data, offset, ts)
    if new is None:  # left to pydicom: the caller then reads it exactly as before
        return
    if isinstance(old, type):
        assert new is old or (old is Exception and new is TruncatedError), name
        return
    assert isinstance(new, Dataset), f"{name}: {new}"
    assert _raw(new) == _raw(old)
    assert _values(new) == _values(old)
    assert new.original_encoding == old.original_encoding
    assert new.original_character_set == old.original_character_set


def test_the_walk_reads_most_pydicom_files_itself() -> None:
    # The fast path must carry the common files, not fall back to pydicom for them.
    walked = {name for name, data, offset, ts in DATASETS if _new_outcome(data, offset, ts)}
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm"):
        assert name in walked
    assert "reportsi.dcm" in walked  # nested undefined-length sequences
    assert len(walked) >= 0.8 * len(DATASETS)


@pytest.mark.parametrize("name", ["rtplan.dcm", "MR_small_implicit.dcm", "reportsi.dcm"])
def test_a_dataset_cut_anywhere_is_refused_as_before(name: str) -> None:
    data = (PYDICOM_FILES / name).read_bytes()
    offset = meta_end(data, 132)
    ts = str(_pydicom(data[:offset], 132, False).TransferSyntaxUID)
    step = max(1, (len(data) - offset) // 400)
    for cut in range(offset, len(data), step):
        piece = data[:cut]
        old, new = _old_outcome(piece, offset, ts), _new_outcome(piece, offset, ts)
        if new is None:
            continue
        if isinstance(old, type):
            assert isinstance(new, type), f"cut at {cut}: accepted what was refused"
        else:
            assert isinstance(new, Dataset), f"cut at {cut}: refused what was accepted"
            assert _raw(new) == _raw(old)


def _explicit(tag: int, vr: bytes, value: bytes, undefined: bool = False) -> bytes:
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr)
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR"):
        length = 0xFFFFFFFF if undefined else len(value)
        return head + b"\0\0" + struct.pack("<I", length) + value
    return head + struct.pack("<H", len(value)) + value


def _implicit(tag: int, value: bytes, undefined: bool = False) -> bytes:
    length = 0xFFFFFFFF if undefined else len(value)
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length) + value


_ITEM = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
_ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
_SEQ_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def _case(data: bytes, implicit: bool) -> Dataset:
    ts = _IMPLICIT if implicit else "1.2.840.10008.1.2.1"
    new = read_header(data, 0, implicit)
    assert new is not None
    old = _old_outcome(data, 0, ts)
    assert isinstance(old, Dataset)
    assert _raw(new) == _raw(old)
    assert _values(new) == _values(old)
    assert new.original_character_set == old.original_character_set
    return new


def test_a_character_set_reaches_the_sequences_and_the_values() -> None:
    name = "Buc^J\xe9r\xf4me".encode("latin-1")
    item = _explicit(0x00100010, b"PN", name)
    data = (
        _explicit(0x00080005, b"CS", b"ISO_IR 100")
        + _explicit(0x00081115, b"SQ", _ITEM + item + _ITEM_END + _SEQ_END, undefined=True)
        + _explicit(0x00100010, b"PN", name)
    )
    header = _case(data, implicit=False)
    assert str(header.PatientName) == "Buc^Jérôme"
    assert str(header.ReferencedSeriesSequence[0].PatientName) == "Buc^Jérôme"


def test_implicit_sequences_of_undefined_length_and_empty_values() -> None:
    item = _implicit(0x0020000E, b"1.2.3\0") + _implicit(0x00080050, b"")
    data = (
        _implicit(0x00080016, b"1.2.840.10008.5.1.4.1.1.2\0")
        + _implicit(0x00081115, _ITEM + item + _ITEM_END + _SEQ_END, undefined=True)
        + _implicit(0x00100010, b"")
        + _implicit(0x00280010, struct.pack("<H", 8))
        + _implicit(0x7FE00010, bytes(16))
    )
    header = _case(data, implicit=True)
    assert header.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.3"
    assert header.Rows == 8 and "PixelData" not in header


def test_an_undefined_length_un_is_read_as_a_sequence() -> None:
    item = _explicit(0x0020000E, b"UI", b"1.2.3\0")
    data = _explicit(0x00081115, b"UN", _ITEM + item + _ITEM_END + _SEQ_END, undefined=True)
    header = _case(data, implicit=False)
    assert header.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.3"


def test_pixel_data_past_the_end_is_caught_after_the_header() -> None:
    data = _explicit(0x00280010, b"US", struct.pack("<H", 8)) + _explicit(
        0x7FE00010, b"OW", bytes(16)
    )
    assert read_header(data, 0, implicit=False) is not None
    with pytest.raises(TruncatedError):
        read_header(data[:-1], 0, implicit=False)


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x00\x16\x00QQ\x02\x001\x00",  # a VR that is no VR
        struct.pack("<HHI", 0x0008, 0x0016, 2) + b"1\0",  # implicit under an explicit syntax
        _explicit(0x00091010, b"OB", _ITEM + _SEQ_END, undefined=True),  # undefined, not SQ
    ],
    ids=["unknown VR", "VR switch", "undefined OB"],
)
def test_unusual_encodings_are_left_to_pydicom(data: bytes) -> None:
    assert read_header(data, 0, implicit=False) is None


def test_the_meta_reads_as_pydicom_reads_it() -> None:
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    offset = meta_end(data, 132)
    meta = read_meta(data, 132, offset)
    assert meta is not None
    assert _raw(meta) == _raw(_pydicom(data[:offset], 132, False))


def _fuzz_case(name: str) -> tuple[bytes, int, str]:
    data = (PYDICOM_FILES / name).read_bytes()
    offset = meta_end(data, 132)
    return data, offset, str(_pydicom(data[:offset], 132, False).TransferSyntaxUID)


_FUZZ_CASES = [_fuzz_case(name) for name in ("rtplan.dcm", "reportsi.dcm", "MR_small_implicit.dcm")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(_FUZZ_CASES),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.just(1.0), st.floats(0, 1)),
)
def test_corrupted_bytes_are_judged_as_before(
    case: tuple[bytes, int, str], edits: list[tuple[float, int]], cut: float
) -> None:
    # Random bytes changed anywhere in the dataset (lengths, VRs, tags, sequence delimiters),
    # perhaps cut short: what the old two walks accepted must read the same, what they
    # refused stays refused.
    original, offset, ts = case
    data = bytearray(original)
    size = len(original) - offset
    for where, value in edits:
        data[offset + int(where * size)] = value
    piece = bytes(data[: offset + round(cut * size)])
    old, new = _old_outcome(piece, offset, ts), _new_outcome(piece, offset, ts)
    if new is None:
        return
    if isinstance(old, type):
        assert isinstance(new, type), "accepted what the old walks refused"
    else:
        assert isinstance(new, Dataset), f"refused what the old walks accepted: {new}"
        assert _raw(new) == _raw(old)
