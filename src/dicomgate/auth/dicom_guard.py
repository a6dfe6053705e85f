"""Enforce ``auth.dicom_peers`` on the DICOM listener: at association and per request.

``AssociationGuard.on_requested`` runs on pynetdicom's ``EVT_REQUESTED``, before negotiation:
a caller ``peer_for`` refuses gets A-ASSOCIATE-RJ (permanent, calling AE not recognised) and a
SECURITY_ALERT ``association_rejected`` record with its AE titles and address. It fails
closed: a crash while checking rejects too (pynetdicom swallows a notification handler's
exceptions, which would otherwise let the association through). The admitted peer is kept
per association; ``refusal(event, operation)`` returns the status a handler answers when that
peer may not do what it asked.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from dicomgate.auth.audit import AuditEvent, AuditTrail, Outcome
from dicomgate.auth.peers import Peer, peer_for, rejection_reason
from dicomgate.auth.settings import DicomOperation
from dicomgate.errors import ForbiddenError, dimse_store_status
from dicomgate.settings import Settings

log = logging.getLogger(__name__)

_REJECTED_PERMANENT, _SERVICE_USER, _CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03


def _calling(event: Any) -> tuple[str, str, str]:
    primitive = event.assoc.requestor.primitive
    return (
        str(primitive.calling_ae_title).strip(),
        str(primitive.called_ae_title).strip(),
        str(event.assoc.requestor.address),
    )


class AssociationGuard:
    """Admits known peers and remembers, per association, what each may do.

    Parameters
    ----------
    settings
        Peers, openness, allowed calling AEs.
    audit
        Where rejections are recorded (``None``: logged only, for tests of the receiver alone).
    """

    def __init__(self, settings: Settings, audit: AuditTrail | None) -> None:
        self.settings = settings
        self.audit = audit
        self._peers: weakref.WeakKeyDictionary[Any, Peer] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def on_requested(self, event: Any) -> None:
        """Reject the association unless its calling AE is an admitted peer."""
        calling, called, address = "?", "?", "?"
        try:
            calling, called, address = _calling(event)
            peer = peer_for(self.settings, calling, address)
            reason = "" if peer else rejection_reason(self.settings, calling)
        except Exception:
            log.exception("peer check failed; rejecting the association")
            peer, reason = None, "peer check failed"
        if peer is not None:
            with self._lock:
                self._peers[event.assoc] = peer
            return
        # Recorded before the peer hears of it, so the record exists once the peer knows.
        log.warning("association from %s at %s rejected: %s", calling, address, reason)
        self._record_rejection(calling, called, address, reason)
        event.assoc.acse.send_reject(_REJECTED_PERMANENT, _SERVICE_USER, _CALLING_AE_NOT_RECOGNISED)
        # As pynetdicom's own rejection does: wait for the DUL to send the A-ASSOCIATE-RJ
        # before the server closes the socket, or the peer sees a bare disconnect.
        event.assoc.kill()

    def _record_rejection(self, calling: str, called: str, address: str, reason: str) -> None:
        if self.audit is None:
            return
        try:
            self.audit.record(
                AuditEvent.SECURITY_ALERT,
                "association_rejected",
                actor=calling,
                source=address,
                outcome=Outcome.MINOR_FAILURE,
                objects={"calling_ae": calling, "called_ae": called},
                detail=reason,
            )
        except Exception:
            log.exception("could not record a rejected association in the audit trail")

    def peer(self, assoc: Any) -> Peer | None:
        """Return the peer admitted for ``assoc`` (``None`` if it was never admitted)."""
        with self._lock:
            return self._peers.get(assoc)

    def refusal(self, event: Any, operation: DicomOperation) -> int | None:
        """Return the refusal status when the association's peer may not ``operation``."""
        peer = self.peer(event.assoc)
        if peer is not None and peer.allows(operation):
            return None
        calling, _, address = _calling(event)
        log.warning("%s refused to %s at %s: not allowed", operation, calling, address)
        if self.audit is not None:
            self.audit.record(
                AuditEvent.SECURITY_ALERT,
                f"{operation}_refused",
                actor=calling,
                source=address,
                outcome=Outcome.MINOR_FAILURE,
                objects={"calling_ae": calling},
                detail=f"peer may not {operation}",
            )
        return dimse_store_status(ForbiddenError(f"{calling} may not {operation}"))
