"""Audit records of HTTP requests that read or bring DICOM data (DICOMweb, STOW-RS).

One record per request, written after the request's work, naming the caller the auth
dependency left on the request (``anonymous`` when authentication is off) and its address.
A failure to write is logged and never fails the request it describes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request

from dicomgate.auth.audit import AuditEvent, AuditTrail, Outcome
from dicomgate.auth.http import client_address
from dicomgate.auth.roles import Caller

log = logging.getLogger(__name__)


def record_request(
    trail: AuditTrail | None,
    request: Request,
    event: AuditEvent,
    action: str,
    objects: dict[str, Any],
    outcome: Outcome = Outcome.SUCCESS,
) -> None:
    """Record one request's event (nothing when ``trail`` is ``None``)."""
    if trail is None:
        return
    caller = getattr(request.state, "caller", None)
    actor = caller.name if isinstance(caller, Caller) else "unknown"
    try:
        trail.record(
            event,
            action,
            actor=actor,
            source=client_address(request),
            outcome=outcome,
            objects=objects,
        )
    except Exception:
        log.exception("could not write the %s record to the audit trail", action)
