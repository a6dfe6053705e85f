"""A-ASSOCIATE-RQ PDUs decoded once per distinct request, not once per association.

A peer proposes the same presentation contexts in every association it opens. ``getscu``'s
request is 17 KB: 121 contexts and 120 role selection items. pynetdicom decoded it into
items, then into the A-ASSOCIATE primitive (hundreds of UID objects, each context's transfer
syntaxes checked again): about 5 ms of a receiving process's CPU before negotiation began,
where Orthanc accepts the whole association in 2-3 ms. For a C-GET of a small study from the
archive that was a sixth of the time ``getscu`` waited.

The same bytes decode to the same request, so a decoded request is kept by its bytes. Each
association still gets a primitive of its own: its lists and every context and item in them
are copies (the values in them, UIDs and numbers, cannot change), as a fresh decode would
give, so nothing an association changes reaches another. A request that carries a user
identity (a password, a token, a Kerberos ticket), or that is longer than ``LARGEST``, is
decoded afresh and never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import partial
from typing import Any, TypeVar

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, UserIdentityNegotiation
from pynetdicom.presentation import PresentationContext

KEPT = 64
"""Distinct requests remembered; the least recently seen is forgotten first."""
LARGEST = 64 * 1024
"""Longer requests are decoded afresh, not kept (storescu's 128 contexts take 17 KB), so the
memory a peer can make a process keep stays bounded."""

T = TypeVar("T")


def _shallow(value: T) -> T:
    """Return a new object of the same class with the same attribute values."""
    twin = object.__new__(type(value))
    twin.__dict__.update(value.__dict__)
    return twin


def _context(context: PresentationContext) -> PresentationContext:
    twin = _shallow(context)
    twin._transfer_syntax = list(context._transfer_syntax)
    return twin


def copy_primitive(primitive: A_ASSOCIATE) -> A_ASSOCIATE:
    """Return a copy of an A-ASSOCIATE primitive with lists and contexts of its own."""
    twin = _shallow(primitive)
    twin._presentation_context_definition_list = [
        _context(cx) for cx in primitive._presentation_context_definition_list
    ]
    twin._presentation_context_definition_results_list = [
        _context(cx) for cx in primitive._presentation_context_definition_results_list
    ]
    twin._user_information = [_shallow(item) for item in primitive._user_information]
    return twin


def known_request(pdu: A_ASSOCIATE_RQ, primitive: A_ASSOCIATE) -> A_ASSOCIATE_RQ:
    """Return a copy of ``pdu`` whose ``to_primitive`` copies ``primitive`` instead of decoding.

    Still an ``A_ASSOCIATE_RQ`` (pynetdicom looks PDUs up by their exact class), with the
    method replaced on the instance.
    """
    twin = _shallow(pdu)
    twin.variable_items = list(pdu.variable_items)
    twin.__dict__["to_primitive"] = partial(copy_primitive, primitive)
    return twin


class KnownRequests:
    """Requests decoded before, by their bytes (thread-safe, bounded).

    Parameters
    ----------
    kept
        How many distinct requests to remember.
    """

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._known: OrderedDict[bytes, tuple[A_ASSOCIATE_RQ, A_ASSOCIATE]] = OrderedDict()

    def decode(self, data: bytes) -> A_ASSOCIATE_RQ:
        """Return the A-ASSOCIATE-RQ PDU ``data`` holds, decoded once per distinct request.

        Raises
        ------
        Exception
            Whatever pynetdicom raises for a request it cannot decode (nothing is kept then).
        """
        with self._lock:
            known = self._known.get(data)
            if known is not None:
                self._known.move_to_end(data)
        if known is not None:
            return known_request(*known)
        pdu = A_ASSOCIATE_RQ()
        pdu.decode(data)
        primitive = pdu.to_primitive()
        if len(data) > LARGEST or _carries_identity(primitive):
            return known_request(pdu, primitive)  # not kept
        with self._lock:
            self._known[data] = (pdu, primitive)
            while len(self._known) > self._kept:
                self._known.popitem(last=False)
        return known_request(pdu, primitive)

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)


def _carries_identity(primitive: Any) -> bool:
    return any(isinstance(item, UserIdentityNegotiation) for item in primitive.user_information)


KNOWN_REQUESTS = KnownRequests()
