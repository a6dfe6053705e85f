"""Encode a dataset as a Part-10 file, copying undecoded elements' bytes as they were read.

pydicom's ``dcmwrite`` spends most of its time in per-element machinery (a buffer, charset
lookups and validation for every element) even for elements it only copies. For the common
case, a dataset read from an explicit VR little endian file (every compressed transfer syntax
is one) and written back in the same encoding, :func:`encode_part10` instead

* copies each undecoded (raw) element as header + its original value bytes,
* encodes decoded elements of the simple VRs (ASCII text, UIDs, binary integers and floats)
  directly, and hands every other element to pydicom's own element writer,
* recurses into sequences, written with undefined lengths as pydicom writes them.

The output is byte-identical to ``dcmwrite(..., enforce_file_format=True)`` on such datasets
(a test proves it). Any other encoding (implicit VR, big endian, deflate, a changed character
set) goes through ``dcmwrite`` unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from io import BytesIO

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_data_element
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from dicomgate.dicom.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

EXPLICIT_LE = "1.2.840.10008.1.2.1"
_NOT_EXPLICIT_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM"})
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT", "UR"})
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_DEFAULT_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})
_ITEM = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)  # undefined length
_ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
_SEQUENCE_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
_UNDEFINED = 0xFFFFFFFF
Charset = str | list[str] | None


def encode_part10(ds: Dataset) -> bytes:
    """Return ``ds`` as a Part-10 file (preamble, ``DICM``, file meta, dataset).

    Parameters
    ----------
    ds
        The dataset with its ``file_meta`` (Transfer Syntax UID required; Media Storage SOP
        Class/Instance UID are taken from the dataset when missing).

    Returns
    -------
    bytes
        The encoded file.
    """
    return b"".join(encode_part10_parts(ds))


def encode_part10_parts(ds: Dataset) -> list[bytes]:
    """Return the encoded file as consecutive chunks (``writelines`` avoids one copy)."""
    meta = _complete_meta(ds)
    if not _fast_path(ds, str(meta.TransferSyntaxUID)):
        buf = BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        return [buf.getvalue()]
    preamble = ds.preamble if ds.preamble and len(ds.preamble) == 128 else bytes(128)
    parts: list[bytes] = [preamble, b"DICM"]
    _encode_meta(meta, parts)
    _encode_dataset(ds, parts)
    return parts


def _complete_meta(ds: Dataset) -> FileMetaDataset:
    meta: FileMetaDataset = getattr(ds, "file_meta", None) or FileMetaDataset()
    ds.file_meta = meta
    if "TransferSyntaxUID" not in meta:
        raise ValueError("file_meta.TransferSyntaxUID is required to encode a Part-10 file")
    if "FileMetaInformationVersion" not in meta:
        meta.FileMetaInformationVersion = b"\x00\x01"
    if "MediaStorageSOPClassUID" not in meta and "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "MediaStorageSOPInstanceUID" not in meta and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "ImplementationClassUID" not in meta:
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _fast_path(ds: Dataset, transfer_syntax: str) -> bool:
    implicit, little = ds.original_encoding
    if transfer_syntax in _NOT_EXPLICIT_LE or implicit is not False or little is not True:
        return False
    return ds.original_character_set == ds._character_set


def _encode_meta(meta: Dataset, parts: list[bytes]) -> None:
    body: list[bytes] = []
    _encode_elements(meta, (t for t in sorted(meta.keys()) if t != 0x00020000), body, None)
    group = b"".join(body)
    parts.append(_header(0x00020000, "UL", 4) + struct.pack("<I", len(group)))
    parts.append(group)


def _encode_dataset(ds: Dataset, parts: list[bytes], inherited: Charset = None) -> None:
    charset: Charset = ds.get("SpecificCharacterSet", inherited)
    # Group length elements (gggg,0000) are retired outside groups 0-6: never written.
    tags = (t for t in sorted(ds.keys()) if t & 0xFFFF or t >> 16 <= 6)
    _encode_elements(ds, tags, parts, charset)


def _is_plain(charset: Charset) -> bool:
    text = charset if isinstance(charset, str) or charset is None else "\\".join(charset)
    return (text or "") in _DEFAULT_CHARSETS


def _encode_elements(
    ds: Dataset, tags: Iterable[int], parts: list[bytes], charset: Charset
) -> None:
    plain = _is_plain(charset)
    elements = ds._dict  # direct reads: get_item() costs more than encoding a raw element
    for tag in tags:
        elem = elements[tag]  # type: ignore[index]
        if isinstance(elem, RawDataElement) and elem.VR is not None and elem.value is not None:
            _encode_raw(elem, parts)
        elif isinstance(elem, RawDataElement):
            _encode_with_pydicom(ds[tag], parts, charset)  # implicit VR or deferred value
        elif elem.VR == "SQ":
            _encode_sequence(elem, parts, charset)
        else:
            encoded = _encode_simple(elem, plain)
            if encoded is None:
                _encode_with_pydicom(elem, parts, charset)
            else:
                parts.append(_header(tag, elem.VR, len(encoded)))
                parts.append(encoded)


def _header(tag: int, vr: str, length: int) -> bytes:
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


def _encode_raw(elem: RawDataElement, parts: list[bytes]) -> None:
    value, vr = elem.value or b"", str(elem.VR)
    if elem.length == _UNDEFINED:
        parts.extend((_header(elem.tag, vr, _UNDEFINED), bytes(value), _SEQUENCE_END))
    elif vr not in _LONG_VRS and len(value) > 0xFFFF:
        parts.extend((_header(elem.tag, "UN", len(value)), bytes(value)))  # as pydicom does
    else:
        parts.extend((_header(elem.tag, vr, len(value)), bytes(value)))


def _encode_sequence(elem: DataElement, parts: list[bytes], charset: Charset) -> None:
    # Lengths as pydicom writes them: defined unless the element or item was read undefined.
    body: list[bytes] = []
    for item in elem.value:
        encoded: list[bytes] = []
        _encode_dataset(item, encoded, charset)
        data = b"".join(encoded)
        if getattr(item, "is_undefined_length_sequence_item", False):
            body.extend((_ITEM, data, _ITEM_END))
        else:
            body.extend((struct.pack("<HHI", 0xFFFE, 0xE000, len(data)), data))
    data = b"".join(body)
    if elem.is_undefined_length:
        parts.extend((_header(elem.tag, "SQ", _UNDEFINED), data, _SEQUENCE_END))
    else:
        parts.extend((_header(elem.tag, "SQ", len(data)), data))


def _encode_simple(elem: DataElement, plain: bool) -> bytes | None:
    """Encode the common simple values directly; ``None`` means let pydicom do it."""
    vr, value = elem.VR, elem.value
    if value is None or value == "":
        return b"" if vr != "SQ" else None
    if vr in _NUMBER_FORMATS:
        return _encode_numbers(vr, value)
    if vr == "UI" or vr in _ASCII_VRS or (plain and vr in _TEXT_VRS):
        text = _joined(value)
    elif vr == "PN" and plain and isinstance(value, PersonName):
        text = str(value)  # the value as given (or as read): what PersonName.encode() writes
    else:
        return None
    if text is None or not text.isascii():
        return None
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return data


def _joined(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, MultiValue | list | tuple) and all(isinstance(v, str) for v in value):
        return "\\".join(value)
    return None


def _encode_numbers(vr: str, value: object) -> bytes | None:
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    code = _NUMBER_FORMATS[vr]
    if code in "fd":
        if not all(isinstance(v, int | float) for v in values):
            return None
    elif not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    try:
        return struct.pack(f"<{len(values)}{code}", *values)
    except struct.error:
        return None


def _encode_with_pydicom(elem: DataElement, parts: list[bytes], charset: Charset) -> None:
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_data_element(buf, elem, charset or None)
    parts.append(buf.getvalue())
