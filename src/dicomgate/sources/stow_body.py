"""Read a ``multipart/related`` request body part by part, spooled to disk, never whole in memory.

Parts stay in memory within a per-request budget and roll over to unnamed temporary files
(gone by themselves after a crash) in the blob store's folder beyond it.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser

from dicomgate.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError

DICOM = "application/dicom"


@dataclass
class BodyPart:
    """One received part: its headers and its content (spooled)."""

    headers: dict[str, str]
    content: IO[bytes]
    size: int = 0

    @property
    def content_type(self) -> str:
        """Return the part's media type without parameters (``application/dicom`` if unsaid)."""
        value = self.headers.get("content-type", DICOM)
        return value.split(";")[0].strip().lower()

    def read(self) -> bytes:
        """Return the part's bytes."""
        self.content.seek(0)
        return self.content.read()


def _params(value: str) -> tuple[str, dict[str, str]]:
    head, *rest = value.split(";")
    params = {}
    for item in rest:
        name, _, val = item.partition("=")
        params[name.strip().lower()] = val.strip().strip('"')
    return head.strip().lower(), params


def boundary_of(content_type: str | None) -> str:
    """Return the boundary of a ``multipart/related; type="application/dicom"`` body.

    Raises
    ------
    UnsupportedMediaTypeError
        For any other media type or part type (STOW-RS of DICOM JSON or XML is not taken).
    InvalidInputError
        When the boundary is missing.
    """
    media, params = _params(content_type or "")
    part_type = params.get("type", DICOM).lower()
    if media != "multipart/related" or part_type != DICOM:
        raise UnsupportedMediaTypeError(
            'STOW-RS takes multipart/related; type="application/dicom" bodies'
        )
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise InvalidInputError("the multipart body has no boundary parameter")
    return boundary


@dataclass
class _Collector:
    spool_dir: Path
    budget: int
    parts: list[BodyPart] = field(default_factory=list)
    _field: bytes = b""
    _value: bytes = b""
    _headers: dict[str, str] = field(default_factory=dict)

    def begin(self) -> None:
        size = max(self.budget, 0)
        spool = tempfile.SpooledTemporaryFile(max_size=size, mode="w+b", dir=str(self.spool_dir))  # noqa: SIM115
        self.parts.append(BodyPart(self._headers, spool))

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self.parts[-1].headers[name] = self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.content.write(data[start:end])
        part.size += end - start

    def end(self) -> None:
        self.budget -= self.parts[-1].size
        self._headers = {}


async def read_parts(
    chunks: AsyncIterator[bytes], boundary: str, spool_dir: Path, max_bytes: int, budget: int
) -> list[BodyPart]:
    """Parse the body from ``chunks`` into parts.

    Raises
    ------
    PayloadTooLargeError
        When the body passes ``max_bytes``.
    InvalidInputError
        When the body is not a well-formed multipart body or holds no part.
    """
    collector = _Collector(spool_dir, budget)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": collector.begin,
            "on_header_field": collector.header_field,
            "on_header_value": collector.header_value,
            "on_header_end": collector.header_end,
            "on_part_data": collector.data,
            "on_part_end": collector.end,
        },
        max_header_count=32,
    )
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLargeError(f"the body exceeds the limit of {max_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
    except PayloadTooLargeError:
        close(collector.parts)
        raise
    except Exception as exc:
        close(collector.parts)
        raise InvalidInputError(f"the multipart body is malformed ({type(exc).__name__})") from None
    if not collector.parts:
        raise InvalidInputError("the multipart body holds no part")
    return collector.parts


def close(parts: list[BodyPart]) -> None:
    """Release the spooled content of ``parts``."""
    for part in parts:
        part.content.close()
