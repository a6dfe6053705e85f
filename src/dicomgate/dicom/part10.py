"""Turn received bytes into a Part-10 file with a zeroed preamble, and read its header once."""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag

from dicomgate.dicom.header_values import value_text
from dicomgate.dicom.header_walk import read_header, read_meta
from dicomgate.dicom.structure import TruncatedError, check_complete, meta_end
from dicomgate.dicom.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

PREAMBLE = bytes(128)
_MAGIC = b"DICM"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"


class NotDicomError(ValueError):
    """The bytes are not a DICOM Part-10 file or dataset that can be read."""


@dataclass(frozen=True, slots=True)
class Part10:
    """A Part-10 encoded instance and its parsed header.

    Parameters
    ----------
    data
        The whole file: zeroed preamble, ``DICM``, file meta, then the dataset as received.
    header
        The dataset read up to (not including) pixel data; values are decoded lazily.
    transfer_syntax
        Transfer syntax UID of the dataset.
    dataset_offset
        Where the dataset starts in ``data``.
    """

    data: bytes
    header: Dataset
    transfer_syntax: str
    dataset_offset: int


def is_part10(data: bytes) -> bool:
    """Return True when ``data`` carries the Part-10 ``DICM`` prefix."""
    return len(data) >= 132 and data[128:132] == _MAGIC


def _meta_element(element: int, vr: bytes, value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", errors="replace")
    if len(raw) % 2:
        raw += pad
    return struct.pack("<HH2sH", 0x0002, element, vr, len(raw)) + raw


def build_meta(sop_class: str, sop_instance: str, transfer_syntax: str, source_ae: str) -> bytes:
    """Encode a file meta group for a dataset that arrived without one.

    Written by hand (explicit VR little endian, PS3.10 7.1): pydicom's writer costs a large part
    of the receiver's time per instance; ``tests/unit/dicom`` checks the bytes against it.
    """
    elements = [
        struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
        _meta_element(0x0002, b"UI", sop_class, b"\x00"),
        _meta_element(0x0003, b"UI", sop_instance, b"\x00"),
        _meta_element(0x0010, b"UI", transfer_syntax, b"\x00"),
        _meta_element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID, b"\x00"),
        _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME, b" "),
    ]
    if source_ae:
        elements.append(_meta_element(0x0016, b"AE", source_ae, b" "))
    body = b"".join(elements)
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


_READ_ERRORS = (InvalidDicomError, EOFError, ValueError, struct.error, OverflowError, KeyError)


def _stop_at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
    return bool(tag >= 0x7FE00010)


def _read_meta(data: bytes, offset: int) -> FileMetaDataset:
    start = len(PREAMBLE) + len(_MAGIC)
    meta = read_meta(data, start, offset)
    if meta is None:
        fp = BytesIO(data)  # shares the bytes: no copy of a large file
        fp.seek(start)
        meta = read_dataset(fp, False, True, bytelength=offset - start)
    return FileMetaDataset(meta)


def _read_checked(
    data: bytes, offset: int, transfer_syntax: str, *, require_sop: bool = False
) -> Dataset:
    """Read the dataset at ``offset`` up to pixel data and prove it complete.

    One walk does both for little-endian encodings (``header_walk``). Big endian, deflated and
    unusual encodings are read by pydicom's ``read_dataset``, as ``dcmread`` reads them, and
    walked again by ``check_complete``; so is a dataset the walk refuses, so that the reason
    given is the one those two name (``read_dataset`` notices a dataset in implicit VR under an
    explicit transfer syntax, bytes that are no dataset at all have no SOP Instance UID).
    """
    header: Dataset | None = None
    if transfer_syntax not in (_EXPLICIT_BE, _DEFLATED):
        with contextlib.suppress(TruncatedError, *_READ_ERRORS):  # refused: named below
            header = read_header(data, offset, transfer_syntax == _IMPLICIT_LE)
    walked = header is not None
    if header is None:
        header = _read_with_pydicom(data, offset, transfer_syntax)
    if require_sop and "SOPInstanceUID" not in header:
        raise NotDicomError("not DICOM: no Part-10 prefix and no readable dataset")
    if not walked:
        _check(data, offset, transfer_syntax)
    return header


def _read_with_pydicom(data: bytes, offset: int, transfer_syntax: str) -> Dataset:
    implicit = transfer_syntax == _IMPLICIT_LE
    little = transfer_syntax != _EXPLICIT_BE
    try:
        if transfer_syntax == _DEFLATED:
            if offset:  # a Part-10 file: dcmread inflates it
                return dcmread(BytesIO(data), stop_before_pixels=True)
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
        fp = BytesIO(data)
        fp.seek(offset)
        return read_dataset(fp, implicit, little, stop_when=_stop_at_pixels)
    except (*_READ_ERRORS, zlib.error) as exc:
        raise NotDicomError(f"cannot read the DICOM header: {exc}") from exc


def parse_file(data: bytes) -> Part10:
    """Parse a Part-10 file; the preamble is zeroed in the returned bytes.

    Raises
    ------
    NotDicomError
        When the file meta is missing or broken, or the dataset is cut short.
    """
    if not is_part10(data):
        raise NotDicomError("no DICM prefix at byte 128: not a DICOM Part-10 file")
    try:
        offset = meta_end(data, 132)
    except TruncatedError as exc:
        raise NotDicomError(str(exc)) from exc
    try:
        meta = _read_meta(data, offset)
    except _READ_ERRORS as exc:
        raise NotDicomError(f"cannot read the DICOM header: {exc}") from exc
    ts = str(meta.get("TransferSyntaxUID", ""))
    if not ts:
        raise NotDicomError("the file meta information has no Transfer Syntax UID")
    header = _read_checked(data, offset, ts)
    header.file_meta = meta
    # Most files carry a zeroed preamble already: keep their bytes rather than copy them twice.
    zeroed = data if data[:128] == PREAMBLE else PREAMBLE + data[128:]
    return Part10(zeroed, header, ts, offset)


def parse_dataset(
    data: bytes, transfer_syntax: str, source_ae: str = "", *, require_sop: bool = False
) -> Part10:
    """Wrap a bare dataset (as a C-STORE carries it) into a Part-10 file and parse it."""
    header = _read_checked(data, 0, transfer_syntax, require_sop=require_sop)
    meta = build_meta(
        _text_or_empty(header, "SOPClassUID"),
        _text_or_empty(header, "SOPInstanceUID"),
        transfer_syntax,
        source_ae,
    )
    head = PREAMBLE + _MAGIC + meta
    return Part10(head + data, header, transfer_syntax, len(head))


def _text_or_empty(header: Dataset, keyword: str) -> str:
    try:
        return value_text(header, keyword) or ""
    except _READ_ERRORS:  # unreadable: the UID checks that follow refuse it with the reason
        return ""


def parse_any(data: bytes) -> Part10:
    """Parse a Part-10 file, a file without preamble, or a bare dataset (guessed encoding)."""
    if is_part10(data):
        return parse_file(data)
    if data[:4] == _MAGIC:
        return parse_file(PREAMBLE + data)
    return parse_dataset(data, guess_transfer_syntax(data), require_sop=True)


def guess_transfer_syntax(data: bytes) -> str:
    """Guess the encoding of a bare dataset without meta from its first element."""
    if len(data) >= 2 and data[0] == 0 and data[1] != 0:
        return _EXPLICIT_BE
    if len(data) >= 6 and data[4:6].isalpha() and data[4:6].isupper():
        return _EXPLICIT_LE
    return _IMPLICIT_LE


def _check(data: bytes, offset: int, transfer_syntax: str) -> None:
    try:
        check_complete(memoryview(data)[offset:], transfer_syntax)
    except TruncatedError as exc:
        raise NotDicomError(f"the dataset is incomplete: {exc}") from exc
