"""Audit records as DICOM audit messages (PS3.15 A.5, the RFC 3881 based XML schema)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dicomgate.auth.audit import AuditRecord

# EventActionCode per dicomgate action: C create, R read, U update, D delete, E execute.
_ACTION_CODES = {
    "import": "C",
    "archive": "C",
    "share": "C",
    "release": "U",
    "delete": "D",
    "query": "E",
    "retrieve": "R",
    "export": "R",
    "reidentify": "R",
    "login": "E",
    "association_rejected": "E",
}

# ParticipantObjectIDTypeCode for the internal ids a record names.
_OBJECT_TYPES = {
    "study_uid": ("110180", "Study Instance UID"),
    "sop_instance_uid": ("sop_instance_uid", "SOP Instance UID"),
    "job_id": ("job", "dicomgate job id"),
    "staging_pk": ("staging", "dicomgate staging session"),
    "project": ("project", "dicomgate project"),
    "pseudonym": ("2", "Patient Number"),
}


def _code(parent: ET.Element, tag: str, code: str, meaning: str, system: str = "DCM") -> None:
    ET.SubElement(
        parent, tag, {"csd-code": code, "codeSystemName": system, "originalText": meaning}
    )


def _participant_objects(message: ET.Element, record: AuditRecord) -> None:
    for key, value in sorted(record.objects.items()):
        code, meaning = _OBJECT_TYPES.get(key, (key, key))
        system = "DCM" if code.isdigit() else "dicomgate"
        obj = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {"ParticipantObjectID": str(value), "ParticipantObjectTypeCode": "2"},
        )
        _code(obj, "ParticipantObjectIDTypeCode", code, meaning, system)


def to_audit_message(record: AuditRecord, event_meaning: str) -> str:
    """Return one record as a DICOM ``AuditMessage`` XML document.

    Parameters
    ----------
    record
        The record.
    event_meaning
        The code meaning of its event ID (``AuditEvent.meaning``).
    """
    message = ET.Element("AuditMessage")
    event = ET.SubElement(
        message,
        "EventIdentification",
        {
            "EventActionCode": _ACTION_CODES.get(record.action, "E"),
            "EventDateTime": record.at,
            "EventOutcomeIndicator": str(record.outcome),
        },
    )
    _code(event, "EventID", record.event_code, event_meaning)
    participant = {"UserID": record.actor, "UserIsRequestor": "true"}
    if record.source:
        participant |= {"NetworkAccessPointID": record.source, "NetworkAccessPointTypeCode": "2"}
    ET.SubElement(message, "ActiveParticipant", participant)
    ET.SubElement(message, "AuditSourceIdentification", {"AuditSourceID": "dicomgate"})
    _participant_objects(message, record)
    return ET.tostring(message, encoding="unicode")
