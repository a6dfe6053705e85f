"""Accept header negotiation for WADO-RS (PS3.18 8.7): parse, then choose what to send.

A chooser returns the representation to produce or raises :class:`NotAcceptableError` (406)
naming what can be produced instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomgate.errors import NotAcceptableError

EXPLICIT_LE = "1.2.840.10008.1.2.1"
DICOM = "application/dicom"
OCTETS = "application/octet-stream"

# Media types of compressed pixel data as stored (PS3.18 Table 8.7.3-2).
IMAGE_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One entry of an Accept header."""

    type: str
    params: dict[str, str]
    q: float

    def matches(self, media_type: str) -> bool:
        """Return True when ``media_type`` falls in this range (``*/*``, ``image/*``)."""
        major, _, minor = self.type.partition("/")
        want_major, _, want_minor = media_type.partition("/")
        return major in ("*", want_major) and minor in ("*", want_minor)


def _split_params(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _range(text: str) -> MediaRange | None:
    head, *rest = _split_params(text)
    params: dict[str, str] = {}
    for item in rest:
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    try:
        q = float(params.pop("q", "1"))
    except ValueError:
        q = 1.0
    media = head.lower()
    if "/" not in media or q <= 0:
        return None
    if "type" in params:
        params["type"] = _ALIASES.get(params["type"].lower(), params["type"].lower())
    return MediaRange(_ALIASES.get(media, media), params, q)


def _split_ranges(header: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in (p.strip() for p in parts) if p]


def parse_accept(header: str | None) -> list[MediaRange]:
    """Return the ranges of an Accept header, best first (an absent header accepts anything)."""
    if not header or not header.strip():
        return [MediaRange("*/*", {}, 1.0)]
    ranges = [r for r in (_range(p) for p in _split_ranges(header)) if r is not None]
    return sorted(ranges, key=lambda r: -r.q)


def part_type(accepted: MediaRange) -> str | None:
    """Return the part type a ``multipart/related`` range asks for (``*/*`` when unsaid)."""
    if accepted.type in ("multipart/related", "multipart/*"):
        return accepted.params.get("type", "*/*")
    if accepted.type == "*/*":
        return "*/*"
    return None


@dataclass(frozen=True, slots=True)
class DicomChoice:
    """Send instances as ``application/dicom`` parts in ``transfer_syntax`` (``*``: as stored)."""

    transfer_syntax: str


def choose_dicom(ranges: list[MediaRange], can_produce: set[str]) -> DicomChoice:
    """Choose the transfer syntax of a retrieve (study, series, instance).

    Parameters
    ----------
    ranges
        The parsed Accept header.
    can_produce
        The syntaxes every requested instance can be sent in (besides ``*``).
    """
    for accepted in ranges:
        part = part_type(accepted)
        if part is None or not MediaRange(part, {}, 1).matches(DICOM):
            continue
        syntax = accepted.params.get("transfer-syntax", EXPLICIT_LE if part == DICOM else "*")
        if syntax == "*" or syntax in can_produce:
            return DicomChoice(syntax)
    raise NotAcceptableError(
        'can send multipart/related; type="application/dicom" with transfer-syntax=* (as '
        f"stored) or one of: {', '.join(sorted(can_produce)) or 'none'}"
    )


def choose_single(ranges: list[MediaRange], offers: list[str]) -> str:
    """Return the first of ``offers`` (a single-part media type) the Accept header allows."""
    for accepted in ranges:
        for offer in offers:
            if accepted.matches(offer) or (part_type(accepted) or "-/-") in (offer, "*/*"):
                return offer
    raise NotAcceptableError(f"can send: {', '.join(offers)}")


@dataclass(frozen=True, slots=True)
class FrameChoice:
    """Send frames decoded (``application/octet-stream``) or as stored (their image type)."""

    decode: bool
    media_type: str


def choose_frames(ranges: list[MediaRange], stored_syntax: str, can_decode: bool) -> FrameChoice:
    """Choose how to send pixel data frames of an instance stored in ``stored_syntax``."""
    stored_type = IMAGE_TYPES.get(stored_syntax, OCTETS)
    for accepted in ranges:
        part = part_type(accepted)
        if part is None:
            continue
        syntax = accepted.params.get("transfer-syntax")
        as_stored = syntax in ("*", stored_syntax) or (syntax is None and part == stored_type)
        if MediaRange(part, {}, 1).matches(stored_type) and (as_stored or part == "*/*"):
            return FrameChoice(False, stored_type)
        if part == OCTETS and (syntax in (None, EXPLICIT_LE, "*")):
            if stored_type == OCTETS:
                return FrameChoice(False, OCTETS)
            if syntax == "*":
                return FrameChoice(False, OCTETS)
            if can_decode:
                return FrameChoice(True, OCTETS)
    raise NotAcceptableError(
        f'can send multipart/related; type="{stored_type}" (as stored)'
        + ('; or type="application/octet-stream" (decoded)' if can_decode else "")
    )
