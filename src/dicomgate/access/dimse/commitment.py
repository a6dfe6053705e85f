"""Storage Commitment Push Model SCP (PS3.4 Annex J): N-ACTION answered, N-EVENT-REPORT sent.

An instance is committed when the index holds it (its blob was fsynced before the index row
was committed). The report goes over the requesting association while it is open, otherwise
over a new association to the destination configured for the requesting AE title; a report
that cannot be delivered is logged with the transaction UID, never dropped silently.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, build_context, build_role

from dicomgate.access.dimse.config import QueryRetrieveSettings
from dicomgate.access.dimse.queries import stored_classes
from dicomgate.auth.dicom_guard import AssociationGuard
from dicomgate.auth.settings import DicomOperation
from dicomgate.db import Database
from dicomgate.dicom.uids import is_valid_uid

log = logging.getLogger(__name__)

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
_REQUEST_COMMITMENT = 1
_NO_SUCH_OBJECT_INSTANCE = 0x0112
_CLASS_INSTANCE_CONFLICT = 0x0119
_INVALID_ARGUMENT = 0x0115  # used by the event's items whose UIDs are not valid


@dataclass(frozen=True, slots=True)
class Reference:
    """One SOP instance the requester asks to be committed."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class Request:
    """A validated N-ACTION request: the transaction and what it references."""

    transaction_uid: str
    references: list[Reference]


class BadRequestError(ValueError):
    """The N-ACTION cannot be accepted; ``status`` is the N-ACTION failure status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_request(event: Any) -> Request:
    """Validate an N-ACTION of the Storage Commitment Push Model.

    Raises
    ------
    BadRequestError
        With 0x0123 (no such action), 0x0117 (invalid SOP instance), 0x0120 (missing
        attribute) or 0x0110 (processing failure: undecodable action information).
    """
    request = event.request
    if request.ActionTypeID != _REQUEST_COMMITMENT:
        raise BadRequestError(0x0123, "only Action Type ID 1 (request commitment) exists")
    if str(request.RequestedSOPInstanceUID) != STORAGE_COMMITMENT_INSTANCE:
        raise BadRequestError(0x0117, "the requested SOP instance is not 1.2.840.10008.1.20.1.1")
    try:
        info = event.action_information
        transaction = str(info.get("TransactionUID", "") or "")
        items = list(info.get("ReferencedSOPSequence", None) or [])
        references = [
            Reference(
                str(i.get("ReferencedSOPClassUID", "")), str(i.get("ReferencedSOPInstanceUID", ""))
            )
            for i in items
        ]
    except Exception as exc:
        unreadable = f"action information unreadable ({type(exc).__name__})"
        raise BadRequestError(0x0110, unreadable) from exc
    if not is_valid_uid(transaction):
        raise BadRequestError(0x0120, "Transaction UID (0008,1195) is missing or invalid")
    if not references:
        raise BadRequestError(0x0120, "Referenced SOP Sequence (0008,1199) is missing or empty")
    return Request(transaction, references)


def _item(ref: Reference, reason: int | None = None) -> Dataset:
    ds = Dataset()
    ds.ReferencedSOPClassUID = ref.sop_class_uid
    ds.ReferencedSOPInstanceUID = ref.sop_instance_uid
    if reason is not None:
        ds.FailureReason = reason
    return ds


def event_information(db: Database, request: Request, ae_title: str) -> tuple[int, Dataset]:
    """Return the event type (1 all committed, 2 some failed) and the event information."""
    with db.reader() as session:
        stored = stored_classes(
            session,
            [r.sop_instance_uid for r in request.references if is_valid_uid(r.sop_instance_uid)],
        )
    committed, failed = [], []
    for ref in request.references:
        if not is_valid_uid(ref.sop_instance_uid):
            failed.append(_item(ref, _INVALID_ARGUMENT))
        elif ref.sop_instance_uid not in stored:
            failed.append(_item(ref, _NO_SUCH_OBJECT_INSTANCE))
        elif stored[ref.sop_instance_uid] != ref.sop_class_uid:
            failed.append(_item(ref, _CLASS_INSTANCE_CONFLICT))
        else:
            committed.append(_item(ref))
    info = Dataset()
    info.TransactionUID = request.transaction_uid
    info.RetrieveAETitle = ae_title
    if committed:
        info.ReferencedSOPSequence = Sequence(committed)
    if failed:
        info.FailedSOPSequence = Sequence(failed)
    return (2 if failed else 1), info


@dataclass(frozen=True, slots=True)
class Committer:
    """Answers N-ACTION requests and sends the reports."""

    db: Database
    settings: QueryRetrieveSettings
    ae_title: str
    guard: AssociationGuard

    def on_action(self, event: Any) -> tuple[Any, Any]:
        """Answer an N-ACTION (pynetdicom ``EVT_N_ACTION`` handler) and schedule the report.

        Commitment is part of storing: a peer that may not store is refused (0x0124).
        """
        if str(event.request.RequestedSOPClassUID) != STORAGE_COMMITMENT:
            return 0x0112, None  # no such SOP class served through N-ACTION
        refused = self.guard.refusal(event, DicomOperation.STORE)
        if refused is not None:
            return refused, None
        try:
            request = parse_request(event)
        except BadRequestError as exc:
            log.warning("storage commitment refused with 0x%04X: %s", exc.status, exc)
            return exc.status, None
        calling = str(event.assoc.requestor.ae_title).strip()
        thread = threading.Thread(
            target=self.report, args=(event.assoc, calling, request), daemon=True
        )
        # Started now, the report could reach the peer before our N-ACTION response.
        event.assoc.after_response(thread.start)
        return 0x0000, None

    def report(self, assoc: Any, calling: str, request: Request) -> None:
        """Send the N-EVENT-REPORT of ``request`` (the same association, else a new one)."""
        try:
            event_type, info = event_information(self.db, request, self.ae_title)
            if assoc.is_established and self._send(assoc, event_type, info):
                return
            self._send_on_new_association(calling, event_type, info)
        except Exception:
            log.exception("storage commitment report %s failed", request.transaction_uid)

    def _send(self, assoc: Any, event_type: int, info: Dataset) -> bool:
        # A requester that released right after our N-ACTION response ignores the report;
        # wait for its answer no longer than the report timeout, then use a new association.
        assoc.dimse_timeout = min(
            assoc.dimse_timeout or 1e9, self.settings.commitment_report_timeout
        )
        status, _reply = assoc.send_n_event_report(
            info, event_type, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
        )
        ok = int(status.get("Status", 0xFFFF)) == 0x0000  # empty: no answer in time
        log.info("commitment %s reported: type %d, ok=%s", info.TransactionUID, event_type, ok)
        return ok

    def _send_on_new_association(self, calling: str, event_type: int, info: Dataset) -> None:
        destination = self.settings.destination(calling)
        if destination is None:
            log.error(
                "storage commitment %s not reported: %s is gone and is not a destination",
                info.TransactionUID,
                calling,
            )
            return
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = self.settings.commitment_report_timeout
        assoc = ae.associate(
            destination.host,
            destination.port,
            [build_context(STORAGE_COMMITMENT)],
            ae_title=destination.ae_title,
            ext_neg=[build_role(STORAGE_COMMITMENT, scp_role=True)],
        )
        if not assoc.is_established:
            log.error("storage commitment %s not reported: cannot associate", info.TransactionUID)
            return
        try:
            if not self._send(assoc, event_type, info):
                log.error("storage commitment %s: the peer refused the report", info.TransactionUID)
        finally:
            assoc.release()
