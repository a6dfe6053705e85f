"""C-FIND SCP: match the identifier against the index and answer one pending response per match.

Never reads a stored file. Every requested attribute comes back: from the index when it holds
it, zero-length otherwise (matching on an attribute the index does not hold is ignored, as
PS3.4 C.2.2.1.3 allows for optional keys).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement

from dicomgate.access.dimse.attributes import UNIQUE_KEY
from dicomgate.access.dimse.identifiers import Key, Query, Root, parse_query
from dicomgate.access.dimse.queries import find
from dicomgate.auth.dicom_guard import AssociationGuard
from dicomgate.auth.settings import DicomOperation
from dicomgate.db import Database
from dicomgate.errors import DicomgateError, dimse_query_status

log = logging.getLogger(__name__)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
ROOTS = {
    PATIENT_ROOT_FIND: Root.PATIENT,
    STUDY_ROOT_FIND: Root.STUDY,
    "1.2.840.10008.5.1.4.1.2.1.2": Root.PATIENT,  # C-MOVE
    "1.2.840.10008.5.1.4.1.2.2.2": Root.STUDY,
    "1.2.840.10008.5.1.4.1.2.1.3": Root.PATIENT,  # C-GET
    "1.2.840.10008.5.1.4.1.2.2.3": Root.STUDY,
}
_BINARY_INTEGER_VRS = {"US", "UL", "SS", "SL", "UV", "SV"}


def refusal(exc: Exception) -> Dataset:
    """Return the failure status for a request refused with ``exc``.

    Only domain errors carry their message (written without PHI); anything else, whose text may
    quote peer values or SQL parameters, gets a generic comment.
    """
    comment = str(exc) if isinstance(exc, DicomgateError) else "the request cannot be processed"
    return status(dimse_query_status(exc), comment)


def status(code: int, comment: str = "") -> Dataset:
    """Return a status dataset with an optional error comment (64 characters at most)."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def read_query(event: Any) -> Query:
    """Decode and parse the identifier of a C-FIND/C-MOVE/C-GET event.

    Raises
    ------
    InvalidInputError
        When the identifier does not describe a valid query.
    Exception
        Whatever pydicom raises for an identifier that cannot be decoded.
    """
    root = ROOTS[str(event.request.AffectedSOPClassUID)]
    return parse_query(event.identifier, root)


def _element(key: Key, value: Any) -> DataElement:
    if value is None or value == "" or value == []:
        return DataElement(key.tag, key.vr, [] if key.vr == "SQ" else None)
    if key.vr in _BINARY_INTEGER_VRS:
        return DataElement(key.tag, key.vr, int(value))
    if isinstance(value, list):
        return DataElement(key.tag, key.vr, [str(v) for v in value])
    return DataElement(key.tag, key.vr, str(value))


def response(query: Query, match: dict[str, Any], ae_title: str) -> Dataset:
    """Return the identifier of one pending C-FIND response."""
    ds = Dataset()
    ds.QueryRetrieveLevel = query.level.value
    extra = {"RetrieveAETitle": ae_title, "InstanceAvailability": "ONLINE"}
    for key in query.keys:
        value = match.get(key.keyword, extra.get(key.keyword))
        ds.add(_element(key, value))
    text = [str(v) for v in match.values() if isinstance(v, str)]
    if not all(t.isascii() for t in text):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def on_find(
    event: Any, db: Database, ae_title: str, limit: int, guard: AssociationGuard
) -> Iterator[tuple[Any, Any]]:
    """Answer a C-FIND request (pynetdicom ``EVT_C_FIND`` handler).

    Only studies of the projects the association may see match; the query is audited once,
    with its level and match count.
    """
    refused_status = guard.refusal(event, DicomOperation.FIND)
    admission = guard.admission(event.assoc)
    if refused_status is not None or admission is None:
        yield status(refused_status or 0x0124, "calling AE may not find"), None
        return
    try:
        query = read_query(event)
        query = query.returning(UNIQUE_KEY[query.level])  # PS3.4 C.4.1.1.3.2
        with db.reader() as session:
            matches = find(session, query, limit, admission.projects())
    except Exception as exc:
        refused = refusal(exc)
        log.warning(
            "C-FIND refused with 0x%04X, %s (association %s)",
            refused.Status,
            type(exc).__name__,
            event.assoc.name,
        )
        guard.audit.queried(admission, "", 0, f"refused: {type(exc).__name__}")
        yield refused, None
        return
    log.info("C-FIND at %s level: %d matches", query.level, len(matches))
    guard.audit.queried(admission, str(query.level), len(matches))
    for match in matches:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield 0xFF00, response(query, match, ae_title)
