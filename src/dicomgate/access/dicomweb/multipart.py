"""``multipart/related`` response bodies, streamed part by part (files read in large chunks)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its content type and either bytes, a file, or a producer of bytes."""

    content_type: str
    data: bytes | None = None
    path: Path | None = None
    produce: Callable[[], bytes] | None = None
    location: str | None = None


def new_boundary() -> str:
    """Return a fresh boundary that cannot occur in DICOM data by chance."""
    return f"dicomgate-{uuid.uuid4().hex}"


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """Return the ``Content-Type`` of a multipart/related body of ``part_type`` parts."""
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return value + (f"; transfer-syntax={transfer_syntax}" if transfer_syntax else "")


def _head(boundary: str, part: Part) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {part.content_type}"]
    if part.location:
        lines.append(f"Content-Location: {part.location}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _body(part: Part) -> Iterator[bytes]:
    if part.data is not None:
        yield part.data
    elif part.produce is not None:
        yield part.produce()
    elif part.path is not None:
        with part.path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk


def body_length(parts: list[Part], sizes: list[int], boundary: str) -> int:
    """Return the length of ``stream(parts, boundary)`` given each part's body size."""
    heads = sum(len(_head(boundary, part)) for part in parts) + 2 * max(len(parts) - 1, 0)
    closing = len(f"--{boundary}--\r\n") + (2 if parts else 0)
    return heads + sum(sizes) + closing


def stream(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """Yield the encoded body: each part's head and data, then the closing delimiter.

    Small pieces are gathered into writes of about ``CHUNK`` bytes; large ones go as they are.
    """
    pending: list[bytes] = []
    size = 0
    lead = b""
    for part in parts:
        for piece in chain((lead + _head(boundary, part),), _body(part)):
            if len(piece) >= CHUNK:
                if pending:
                    yield b"".join(pending)
                    pending, size = [], 0
                yield piece
                continue
            pending.append(piece)
            size += len(piece)
            if size >= CHUNK:
                yield b"".join(pending)
                pending, size = [], 0
        lead = b"\r\n"
    pending.append(lead + f"--{boundary}--\r\n".encode("ascii"))
    yield b"".join(pending)
