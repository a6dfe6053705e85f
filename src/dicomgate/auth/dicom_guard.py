"""Enforce ``auth.dicom_peers`` on the DICOM listener: at association and per request.

``AssociationGuard.on_requested`` runs on pynetdicom's ``EVT_REQUESTED``, before negotiation:
a caller ``peer_for`` refuses gets A-ASSOCIATE-RJ (permanent, calling AE not recognised) and a
SECURITY_ALERT ``association_rejected`` record with its AE titles and address; a user
identity that does not verify (or is missing where required, see ``dicom_identity``) gets
A-ASSOCIATE-RJ (permanent, no reason given) and a failed USER_AUTHENTICATION record. It fails
closed: a crash while checking rejects too (pynetdicom swallows a notification handler's
exceptions, which would otherwise let the association through).

The admitted peer is kept per association as an :class:`Admission`: what it may do, which
projects it sees (the peer's, narrowed to the user's when one was verified), and the counts of
its C-STOREs, written as one import record when the association ends. ``refusal(event,
operation)`` returns the status a handler answers when that peer may not do what it asked.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from dicomgate.auth.audit import AuditTrail
from dicomgate.auth.dicom_audit import DicomAudit
from dicomgate.auth.dicom_identity import IdentityVerifier
from dicomgate.auth.oidc import OidcVerifier
from dicomgate.auth.peers import Peer, peer_for, rejection_reason
from dicomgate.auth.roles import Caller
from dicomgate.auth.settings import DicomOperation
from dicomgate.db import Database
from dicomgate.errors import ForbiddenError, UnauthenticatedError, dimse_store_status
from dicomgate.settings import Settings

log = logging.getLogger(__name__)

_REJECTED_PERMANENT, _SERVICE_USER = 0x01, 0x01
_NO_REASON, _CALLING_AE_NOT_RECOGNISED = 0x01, 0x03


def _calling(assoc: Any) -> tuple[str, str, str]:
    primitive = assoc.requestor.primitive
    return (
        str(primitive.calling_ae_title).strip(),
        str(primitive.called_ae_title).strip(),
        str(assoc.requestor.address),
    )


@dataclass
class Admission:
    """One admitted association: its peer, its verified user, and what it stored.

    The counters are touched by the association's own thread only (pynetdicom serves one
    request at a time per association).
    """

    peer: Peer
    calling_ae: str
    address: str
    user: Caller | None = None
    stored: int = 0
    failed: int = 0
    staging: set[int] = field(default_factory=set)
    refused: set[DicomOperation] = field(default_factory=set)

    @property
    def actor(self) -> str:
        """Return who the audit trail names: the verified user, else the calling AE."""
        return self.user.name if self.user is not None else self.calling_ae

    def allows(self, operation: DicomOperation) -> bool:
        """Return whether the peer may request ``operation``."""
        return self.peer.allows(operation)

    def projects(self) -> frozenset[str] | None:
        """Return the projects this association may see (``None``: every project)."""
        mine = self.peer.projects
        theirs = self.user.visible_projects() if self.user is not None else None
        if mine is None or theirs is None:
            return theirs if mine is None else mine
        return mine & theirs

    def count(self, ok: bool, staging_pk: int | None) -> None:
        """Count one C-STORE of this association (its outcome, the study it joined)."""
        if ok:
            self.stored += 1
        else:
            self.failed += 1
        if staging_pk is not None:
            self.staging.add(staging_pk)


class AssociationGuard:
    """Admits known peers and remembers, per association, what each may do.

    Parameters
    ----------
    settings
        Peers, openness, allowed calling AEs, user identity policy, OIDC.
    audit
        Where rejections and DICOM events are recorded (``None``: logged only).
    users_db
        The index database, for local users named in a user identity (``None``: none).
    """

    def __init__(
        self, settings: Settings, audit: AuditTrail | None, users_db: Database | None = None
    ) -> None:
        self.settings = settings
        self.audit = DicomAudit(audit)
        oidc = OidcVerifier(settings.auth.oidc) if settings.auth.oidc else None
        self.identities = IdentityVerifier(users_db, oidc)
        self._admitted: weakref.WeakKeyDictionary[Any, Admission] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def on_requested(self, event: Any) -> None:
        """Reject the association unless its calling AE is an admitted peer."""
        calling, called, address = "?", "?", "?"
        try:
            calling, called, address = _calling(event.assoc)
            peer = peer_for(self.settings, calling, address)
            reason = "" if peer else rejection_reason(self.settings, calling)
        except Exception:
            log.exception("peer check failed; rejecting the association")
            peer, reason = None, "peer check failed"
        if peer is None:
            # Recorded before the peer hears of it, so the record exists once the peer knows.
            log.warning("association from %s at %s rejected: %s", calling, address, reason)
            self.audit.rejected(calling, called, address, reason)
            self._reject(event, _CALLING_AE_NOT_RECOGNISED)
            return
        admission = Admission(peer, calling, address)
        if not self._identify(event, admission):
            self._reject(event, _NO_REASON)
            return
        with self._lock:
            self._admitted[event.assoc] = admission

    def _identify(self, event: Any, admission: Admission) -> bool:
        try:
            item = event.assoc.requestor.user_identity
            admission.user = self.identities.verify(item, admission.peer.user_identity)
        except Exception as exc:
            failure = str(exc) if isinstance(exc, UnauthenticatedError) else "identity check failed"
            log.warning(
                "association from %s at %s rejected: %s",
                admission.calling_ae,
                admission.address,
                failure,
            )
            self.audit.login(admission.calling_ae, admission.address, "", failure)
            return False
        if admission.user is not None:
            self.audit.login(admission.calling_ae, admission.address, admission.user.name)
        return True

    @staticmethod
    def _reject(event: Any, reason: int) -> None:
        event.assoc.acse.send_reject(_REJECTED_PERMANENT, _SERVICE_USER, reason)
        # As pynetdicom's own rejection does: wait for the DUL to send the A-ASSOCIATE-RJ
        # before the server closes the socket, or the peer sees a bare disconnect.
        event.assoc.kill()

    def on_closed(self, event: Any) -> None:
        """Write the import record of an association whose connection closed."""
        with self._lock:
            admission = self._admitted.pop(event.assoc, None)
        if admission is not None:
            self.audit.imported(admission)

    def admission(self, assoc: Any) -> Admission | None:
        """Return what was admitted for ``assoc`` (``None`` if it was never admitted)."""
        with self._lock:
            return self._admitted.get(assoc)

    def peer(self, assoc: Any) -> Peer | None:
        """Return the peer admitted for ``assoc`` (``None`` if it was never admitted)."""
        admission = self.admission(assoc)
        return admission.peer if admission is not None else None

    def refusal(self, event: Any, operation: DicomOperation) -> int | None:
        """Return the refusal status when the association's peer may not ``operation``.

        The refusal is audited once per association and operation, so a peer that sends a
        thousand refused C-STOREs leaves one record, not a thousand.
        """
        return self.refusal_on(event.assoc, operation)

    def refusal_on(self, assoc: Any, operation: DicomOperation) -> int | None:
        """Return the refusal status for ``operation`` on ``assoc`` (see :meth:`refusal`)."""
        admission = self.admission(assoc)
        if admission is not None and admission.allows(operation):
            return None
        calling, _, address = _calling(assoc)
        log.warning("%s refused to %s at %s: not allowed", operation, calling, address)
        if admission is None or operation not in admission.refused:
            if admission is not None:
                admission.refused.add(operation)
            self.audit.refused(admission, str(operation), calling, address)
        return dimse_store_status(ForbiddenError(f"{calling} may not {operation}"))
