"""DICOM JSON (PS3.18 F.2) of a stored file, large binary values replaced by bulk data URIs.

Values are read from the file as stored; large binary values (pixel data included) are never
loaded: pydicom defers them and only their tag path is written, as a URI under ``prefix``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import Tag

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_DATA = 0x7FE00010


def tag_path(parents: str, tag: int) -> str:
    """Return the bulk data path of ``tag`` below ``parents`` (``00540016/0/00181072``)."""
    return f"{parents}{tag:08X}"


def _vr_of(ds: Dataset, raw: RawDataElement | DataElement) -> str:
    vr = raw.VR
    if vr and " or " not in vr:
        return str(vr)
    if raw.tag == PIXEL_DATA:
        return "OW" if int(ds.get("BitsAllocated", 16) or 16) > 8 else "OB"
    try:
        vr = dictionary_VR(raw.tag)
    except KeyError:
        return "UN"
    return "OW" if " or " in vr and "OW" in vr else vr.split(" or ")[0]


def _length(raw: RawDataElement | DataElement) -> int:
    if isinstance(raw, RawDataElement):
        return int(raw.length)
    value = raw.value
    return len(value) if isinstance(value, bytes | bytearray) else 0


def _element(
    ds: Dataset, tag: int, prefix: str, parents: str, threshold: int
) -> dict[str, Any] | None:
    raw = ds.get_item(Tag(tag), keep_deferred=True)
    if raw is None:
        return None
    vr = _vr_of(ds, raw)
    if vr in BINARY_VRS and (_length(raw) > threshold or raw.value is None or tag == PIXEL_DATA):
        return {"vr": vr, "BulkDataURI": prefix + tag_path(parents, tag)}
    try:
        elem = ds[tag]
        if elem.VR == "SQ":
            items = [
                to_json(item, prefix, f"{parents}{tag:08X}/{i}/", threshold)
                for i, item in enumerate(elem.value)
            ]
            return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        return elem.to_json_dict(None, threshold)
    except Exception:  # a value pydicom cannot convert is still served, as its raw bytes
        return {
            "vr": vr if vr in BINARY_VRS else "UN",
            "BulkDataURI": prefix + tag_path(parents, tag),
        }


def to_json(ds: Dataset, prefix: str, parents: str = "", threshold: int = 1024) -> dict[str, Any]:
    """Return the DICOM JSON model of ``ds``; bulk values become ``prefix + tag path`` URIs.

    Parameters
    ----------
    ds
        A dataset read with deferred large values.
    prefix
        What every bulk data URI starts with.
    parents
        The tag path of the enclosing sequence items (empty at the top level).
    threshold
        Binary values longer than this many bytes become bulk data URIs.
    """
    out: dict[str, Any] = {}
    for tag in sorted(int(t) for t in ds.keys()):  # noqa: SIM118 (iterating ds yields elements)
        if tag >> 16 == 0x0002 or tag & 0xFFFF == 0:  # file meta and group lengths
            continue
        value = _element(ds, tag, prefix, parents, threshold)
        if value is not None:
            out[f"{tag:08X}"] = value
    return out


def file_to_json_text(path: Path, prefix: str, threshold: int = 1024) -> str:
    """Read the file at ``path`` (large values deferred) and return its DICOM JSON as text."""
    ds = dcmread(path, defer_size=threshold)
    return json.dumps(to_json(ds, prefix, "", threshold), separators=(",", ":"))


def find_value(ds: Dataset, path: str) -> DataElement:
    """Return the element a bulk data path names (``7FE00010``, ``00540016/0/00181072``).

    Raises
    ------
    KeyError
        When the path names no element of ``ds``.
    """
    parts = path.strip("/").split("/")
    if len(parts) % 2 != 1 or len(parts) > 33:
        raise KeyError(path)
    current = ds
    for i in range(0, len(parts) - 1, 2):
        seq = current[_tag(parts[i])]
        index = int(parts[i + 1]) if parts[i + 1].isdigit() else -1
        if seq.VR != "SQ" or not 0 <= index < len(seq.value):
            raise KeyError(path)
        current = seq.value[index]
    return current[_tag(parts[-1])]


def _tag(text: str) -> int:
    if len(text) != 8:
        raise KeyError(text)
    try:
        return int(text, 16)
    except ValueError:
        raise KeyError(text) from None
