"""The responses to our own C-FIND, C-GET and C-MOVE requests, read without extra objects.

A retrieve lists what it expects with an IMAGE-level find (one pending response per
instance), and a C-GET or C-MOVE brings one pending response per sub-operation. For each,
pynetdicom's response generator builds a status ``Dataset`` and formats its log lines, and
for a find decodes the identifier with pydicom's ``read_dataset``. For the 1,000 responses
of a 1,000-instance study that was two thirds of the find's CPU, and the find took longer
than dcmtk's ``findscu``. Here a response is handed over as its primitive's status and
counts, and a find's identifier is read by the header walk (``header_walk``, the same raw
elements ``read_dataset`` makes), its plain values taken as ``result_dict`` takes them.
Anything the walk leaves aside (big endian, deflated, an unusual encoding) is decoded by
pydicom, as before.

The generators replace pynetdicom's on the association (``send_c_find`` and friends send the
request and return ``assoc._wrap_*_responses(...)``); they keep its ending: no response, or
an unexpected or invalid one, aborts the association and ends the responses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import partial
from io import BytesIO
from typing import Any, cast

from pydicom import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE, C_STORE
from pynetdicom.dsutils import decode

from dicomgate.dicom.header_values import plain_text, tag_of
from dicomgate.dicom.header_walk import walk_header
from dicomgate.dicom.query import result_dict
from dicomgate.dicom.structure import TruncatedError

log = logging.getLogger(__name__)

PENDING = frozenset({0xFF00, 0xFF01})

FindResponse = tuple[int | None, BytesIO | None]
"""A C-FIND response's status (None: no valid response) and its identifier's bytes, if any."""

RetrieveResponse = tuple[C_GET | C_MOVE | None, Dataset | None]
"""A C-GET or C-MOVE response (None: no valid response) and its decoded identifier, if any."""


def send_find(assoc: Association, identifier: Dataset, model: str) -> Iterator[FindResponse]:
    """Send a C-FIND on ``assoc``; yield ``(status, identifier bytes)`` for each response.

    Read an identifier with ``identifier_row`` and the association's transfer syntax
    (``transfer_syntax_of``).
    """
    assoc._wrap_find_responses = partial(_find_responses, assoc)  # type: ignore[assignment]
    return cast(Iterator[FindResponse], assoc.send_c_find(identifier, model))


def send_get(assoc: Association, identifier: Dataset, model: str) -> Iterator[RetrieveResponse]:
    """Send a C-GET on ``assoc``; yield each response and its identifier (final ones only)."""
    assoc._wrap_get_move_responses = partial(_retrieve_responses, assoc)  # type: ignore[assignment]
    return cast(Iterator[RetrieveResponse], assoc.send_c_get(identifier, model))


def send_move(
    assoc: Association, identifier: Dataset, destination: str, model: str, msg_id: int
) -> Iterator[RetrieveResponse]:
    """Send a C-MOVE to ``destination`` on ``assoc``; yield responses as ``send_get`` does."""
    assoc._wrap_get_move_responses = partial(_retrieve_responses, assoc)  # type: ignore[assignment]
    responses = assoc.send_c_move(identifier, destination, model, msg_id)
    return cast(Iterator[RetrieveResponse], responses)


def transfer_syntax_of(assoc: Association, model: str) -> UID:
    """Return the transfer syntax ``assoc`` encodes ``model``'s messages in."""
    return UID(assoc._get_valid_context(model, "", "scu").transfer_syntax[0])


def _next_response(assoc: Association, kinds: tuple[type, ...]) -> Any:
    """Return the next valid response of ``kinds``; None (association aborted) otherwise."""
    while True:
        _context, rsp = assoc.dimse.get_msg(block=True)
        if rsp is None:
            assoc._handle_no_response()
            return None
        if isinstance(rsp, C_STORE) and C_STORE in kinds:
            assoc._c_store_scp(rsp)  # a C-GET's store the fast path left to pynetdicom
            continue
        if not isinstance(rsp, kinds) or not rsp.is_valid_response:
            log.error("unexpected or invalid response from the peer: %s", type(rsp).__name__)
            assoc.abort()
            return None
        return rsp


def _find_responses(
    assoc: Association, _transfer_syntax: UID, _query_model: UID
) -> Iterator[FindResponse]:
    # The reactor runs again before the last response is handed over (as in pynetdicom): a
    # caller that stops there releases the association, which needs it.
    try:
        while (rsp := _next_response(assoc, (C_FIND,))) is not None:
            code = int(rsp.Status)
            if code not in PENDING:
                assoc._reactor_checkpoint.set()
                yield code, None
                return
            yield code, rsp.Identifier
        assoc._reactor_checkpoint.set()
        yield None, None
    finally:
        assoc._reactor_checkpoint.set()  # also when the caller stops early


def _retrieve_responses(assoc: Association, transfer_syntax: UID) -> Iterator[RetrieveResponse]:
    try:
        while (rsp := _next_response(assoc, (C_GET, C_MOVE, C_STORE))) is not None:
            if int(rsp.Status) in PENDING:
                yield rsp, None
                continue
            identifier = None
            if rsp.Identifier is not None:  # e.g. the failed SOP Instance UID list
                identifier = _decoded(rsp.Identifier.getvalue(), transfer_syntax)
            assoc._reactor_checkpoint.set()
            yield rsp, identifier
            return
        assoc._reactor_checkpoint.set()
        yield None, None
    finally:
        assoc._reactor_checkpoint.set()


def identifier_row(
    data: BytesIO | None, transfer_syntax: UID, keywords: Sequence[str]
) -> dict[str, str] | None:
    """Return ``keywords`` of a response's identifier as ``result_dict`` would, or None.

    None when the identifier is absent or cannot be read. Plain values come straight from
    the walked raw elements; the Dataset is built only when a value needs pydicom.
    """
    if data is None:
        return None
    raw = data.getvalue()
    walk = None
    if transfer_syntax.is_little_endian and not transfer_syntax.is_deflated:
        try:
            walk = walk_header(raw, 0, transfer_syntax.is_implicit_VR)
        except TruncatedError as exc:
            log.error("a response's identifier is cut short: %s", exc)
            return None
    if walk is None:
        decoded = _decoded(raw, transfer_syntax)
        return None if decoded is None else result_dict(decoded, keywords)
    row: dict[str, str] = {}
    for keyword in keywords:
        element = walk.elements.get(BaseTag(tag_of(keyword)))
        plain = "" if element is None else plain_text(element)
        if plain is None:
            return result_dict(walk.dataset(), keywords)
        row[keyword] = plain
    return row


def _decoded(raw: bytes, transfer_syntax: UID) -> Dataset | None:
    try:
        dataset: Dataset = decode(
            BytesIO(raw),
            transfer_syntax.is_implicit_VR,
            transfer_syntax.is_little_endian,
            transfer_syntax.is_deflated,
        )
    except Exception as exc:  # pydicom raises many kinds on bad bytes
        log.error("cannot decode a response's identifier: %s", exc)
        return None
    return dataset
