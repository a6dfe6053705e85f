"""C-GET and C-MOVE responses without a dataset, decoded straight from their P-DATA PDU.

A retrieve of N instances brings N pending responses, one after each sub-operation. For each
pynetdicom decodes the PDU into objects, runs its state machine, reassembles the message in
its DIMSE provider, decodes the command set with pydicom and copies it into a primitive:
about a seventh of the Python time of a C-GET. A response whose command set holds only the
usual fields and no dataset (every pending one, and a final one without failures) is decoded
here into the same primitive pynetdicom would have queued. Anything else (a dataset, other
fields, a message split over PDVs) is left to pynetdicom.
"""

from __future__ import annotations

from pynetdicom.dimse_primitives import C_GET, C_MOVE

from dicomgate.dicom.fast_store import ProtocolError, decode_command, split_pdvs

_NO_DATA_SET = 0x0101
_COMPLETE_COMMAND = 0x03  # message control header: command, last fragment (PS3.8 E.2)
_KINDS: dict[int, type[C_GET] | type[C_MOVE]] = {0x8010: C_GET, 0x8021: C_MOVE}
_US_FIELDS = {
    0x0120: "MessageIDBeingRespondedTo",
    0x0900: "Status",
    0x1020: "NumberOfRemainingSuboperations",
    0x1021: "NumberOfCompletedSuboperations",
    0x1022: "NumberOfFailedSuboperations",
    0x1023: "NumberOfWarningSuboperations",
}
_KNOWN = {0x0000, 0x0002, 0x0100, 0x0800, *_US_FIELDS}  # 0x0000: the group length


def retrieve_response(body: memoryview) -> tuple[int, C_GET | C_MOVE] | None:
    """Return (context id, primitive) for a P-DATA-TF body holding one such response, else None."""
    try:
        items = split_pdvs(body)
        if len(items) != 1 or items[0][1] & _COMPLETE_COMMAND != _COMPLETE_COMMAND:
            return None
        context_id, _, fragment, _ = items[0]
        elements = decode_command(fragment)
    except ProtocolError:
        return None
    if not elements.keys() <= _KNOWN or any(
        len(elements[tag]) != 2 for tag in (0x0100, 0x0800, *_US_FIELDS) if tag in elements
    ):
        return None
    kind = _KINDS.get(_ushort(elements[0x0100]) if 0x0100 in elements else -1)
    if kind is None or elements.get(0x0800) != _NO_DATA_SET.to_bytes(2, "little"):
        return None
    if 0x0120 not in elements or 0x0900 not in elements:
        return None  # pynetdicom reports the invalid response
    primitive = kind()
    for tag, name in _US_FIELDS.items():
        if tag in elements:
            setattr(primitive, name, _ushort(elements[tag]))
    if 0x0002 in elements:
        try:
            primitive.AffectedSOPClassUID = elements[0x0002].decode("ascii").rstrip("\0 ")
        except (UnicodeDecodeError, ValueError, TypeError):
            return None
    return context_id, primitive


def _ushort(value: bytes) -> int:
    return int.from_bytes(value, "little")
