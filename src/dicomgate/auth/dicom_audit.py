"""Audit records of the DICOM side: one per association or per request, never per instance.

Writing a record takes the audit store's lock and a commit, so the per-instance paths only
count (``Admission.count``) and the record is written when the association ends (C-STORE
import) or a request is answered (C-FIND, C-MOVE, C-GET). A failure to write is logged and
never fails the DICOM exchange it describes.

Event IDs (PS3.15 A.5.3): C-STORE received and C-MOVE/C-GET sent are DICOM Instances
Transferred (110104, action ``import`` / ``retrieve``), C-FIND is Query (110112), a rejected
association or refused request is Security Alert (110113), a user identity check is User
Authentication (110114).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dicomgate.auth.audit import AuditEvent, AuditTrail, Outcome

if TYPE_CHECKING:
    from dicomgate.auth.dicom_guard import Admission

log = logging.getLogger(__name__)

_MAX_LISTED = 100  # ids listed in one record; the count says how many there were


def _listed(ids: set[int] | set[str] | list[str]) -> list[Any]:
    return sorted(ids)[:_MAX_LISTED]


def _outcome(ok: int, failed: int) -> Outcome:
    if not failed:
        return Outcome.SUCCESS
    return Outcome.SERIOUS_FAILURE if not ok else Outcome.MINOR_FAILURE


class DicomAudit:
    """Writes the DICOM side's audit records.

    Parameters
    ----------
    trail
        The audit trail (``None``: logged only, for tests of the receiver alone).
    """

    def __init__(self, trail: AuditTrail | None) -> None:
        self.trail = trail

    def _record(self, event: AuditEvent, action: str, **fields: Any) -> None:
        if self.trail is None:
            return
        try:
            self.trail.record(event, action, **fields)
        except Exception:
            log.exception("could not write the %s record to the audit trail", action)

    def _operation(
        self,
        admission: Admission,
        event: AuditEvent,
        action: str,
        objects: dict[str, Any],
        failure: str,
    ) -> None:
        """Record one operation of an admitted association (its actor, address, outcome)."""
        self._record(
            event,
            action,
            actor=admission.actor,
            source=admission.address,
            outcome=Outcome.MINOR_FAILURE if failure else Outcome.SUCCESS,
            objects={"calling_ae": admission.calling_ae, **objects},
            detail=failure,
        )

    def rejected(self, calling: str, called: str, address: str, reason: str) -> None:
        """Record an association rejected before negotiation."""
        self._record(
            AuditEvent.SECURITY_ALERT,
            "association_rejected",
            actor=calling,
            source=address,
            outcome=Outcome.MINOR_FAILURE,
            objects={"calling_ae": calling, "called_ae": called},
            detail=reason,
        )

    def login(self, calling: str, address: str, user: str, failure: str = "") -> None:
        """Record a DICOM user identity accepted (``failure`` empty) or refused."""
        self._record(
            AuditEvent.USER_AUTHENTICATION,
            "login",
            actor=user if not failure else "unknown",
            source=address,
            outcome=Outcome.MINOR_FAILURE if failure else Outcome.SUCCESS,
            objects={"calling_ae": calling, "via": "dicom"},
            detail=failure,
        )

    def refused(
        self, admission: Admission | None, operation: str, calling: str, address: str
    ) -> None:
        """Record a request the peer may not make (once per association and operation)."""
        self._record(
            AuditEvent.SECURITY_ALERT,
            f"{operation}_refused",
            actor=admission.actor if admission else calling,
            source=address,
            outcome=Outcome.MINOR_FAILURE,
            objects={"calling_ae": calling},
            detail=f"peer may not {operation}",
        )

    def imported(self, admission: Admission) -> None:
        """Record the C-STOREs of an association that ended (nothing if none came)."""
        if not admission.stored and not admission.failed:
            return
        self._record(
            AuditEvent.INSTANCES_TRANSFERRED,
            "import",
            actor=admission.actor,
            source=admission.address,
            outcome=_outcome(admission.stored, admission.failed),
            objects={
                "calling_ae": admission.calling_ae,
                "instances": admission.stored,
                "failed": admission.failed,
                # Sessions (one study from one source) that new instances joined.
                "staging_sessions": len(admission.staging),
                "staging_pks": _listed(admission.staging),
            },
        )

    def queried(self, admission: Admission, level: str, results: int, failure: str = "") -> None:
        """Record one C-FIND: its level and match count (never its keys: they are PHI)."""
        objects = {"level": level, "results": results}
        self._operation(admission, AuditEvent.QUERY, "query", objects, failure)

    def retrieved(
        self,
        admission: Admission,
        operation: str,
        studies: list[str],
        instances: int,
        destination: str = "",
        failure: str = "",
    ) -> None:
        """Record one C-MOVE or C-GET: the studies and instance count handed over."""
        objects: dict[str, Any] = {
            "operation": operation,
            "instances": instances,
            "studies": len(studies),
            "study_uids": _listed(studies),
        }
        if destination:
            objects["destination_ae"] = destination
        self._operation(admission, AuditEvent.INSTANCES_TRANSFERRED, "retrieve", objects, failure)
