"""C-STORE responses sent as hand-encoded command sets instead of through pydicom.

pynetdicom turns every response primitive into a DIMSE message, builds a pydicom Dataset of
its command set, writes it with pydicom's writer and fragments it: about a fifth of the
receiver's CPU per small instance. A C-STORE-RSP is six or seven elements (PS3.7 9.3.1.2), so
the receiver's associations, and ours that take C-GET sub-operations, encode it directly and
hand one P-DATA to the DUL. Anything else,
or a response carrying parameters not encoded here, goes through pynetdicom as before.
"""

from __future__ import annotations

from typing import Any

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from dicomgate.dicom.fast_store import encode_store_response

_LAST_COMMAND_FRAGMENT = b"\x03"  # message control header: command, last fragment (PS3.8 E.2)


def store_response(primitive: C_STORE) -> bytes | None:
    """Return the encoded C-STORE-RSP command set, or None when it carries other parameters."""
    responding_to = primitive.MessageIDBeingRespondedTo
    if primitive.OffendingElement or primitive.Status is None or responding_to is None:
        return None
    return encode_store_response(
        str(primitive.AffectedSOPClassUID or ""),
        str(primitive.AffectedSOPInstanceUID or ""),
        responding_to,
        int(primitive.Status),
        str(primitive.ErrorComment or ""),
    )


class QuickStoreResponses(DIMSEServiceProvider):
    """The DIMSE provider of a receiving association: C-STORE responses encoded directly."""

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Send a C-STORE-RSP as one P-DATA; hand anything else to pynetdicom."""
        encoded = None
        is_response = getattr(primitive, "MessageIDBeingRespondedTo", None) is not None
        # A handler bound to EVT_DIMSE_SENT expects pynetdicom's message object.
        watched = bool(self.assoc.get_handlers(evt.EVT_DIMSE_SENT))
        if isinstance(primitive, C_STORE) and is_response and not watched:
            encoded = store_response(primitive)
        fits = encoded is not None and (
            not self.maximum_pdu_size or len(encoded) + 6 <= self.maximum_pdu_size
        )
        if encoded is None or not fits:
            super().send_msg(primitive, context_id)
            return
        self.dul.send_pdu(command_pdata(context_id, encoded))


def command_pdata(context_id: int, command_set: bytes) -> P_DATA:
    """Return a P-DATA primitive holding ``command_set`` as one last command fragment."""
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((context_id, _LAST_COMMAND_FRAGMENT + command_set))
    return pdata


def answer_stores_quickly(assoc: Any) -> None:
    """Make ``assoc`` (before its first message) encode the C-STORE-RSPs it sends directly."""
    if type(assoc.dimse) is DIMSEServiceProvider:
        assoc.dimse.__class__ = QuickStoreResponses
