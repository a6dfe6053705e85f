"""The remote-node facade: C-ECHO, C-FIND, C-MOVE and C-GET against one configured node.

Every request first passes the node's politeness rules (window, rate limit, association cap);
outside the window :class:`WindowClosedError` says when it opens. Retrieves return the
sub-operation counts and the final status of each request, never a bool.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from pydicom import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dicomgate.dicom.nodes import RemoteNode
from dicomgate.dicom.politeness import Politeness
from dicomgate.dicom.query import QueryLevel, build_identifier, result_keywords
from dicomgate.dicom.reactor import (
    RequestorAE,
    take_responses_of,
    take_stores_of,
    tune_connection,
)
from dicomgate.dicom.responses import (
    PENDING,
    identifier_row,
    send_find,
    send_get,
    send_move,
    transfer_syntax_of,
)
from dicomgate.dicom.store_response import answer_stores_quickly
from dicomgate.errors import RemoteNodeError, WindowClosedError

log = logging.getLogger(__name__)

_EXPLICIT, _IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
# Offered one per presentation context so the node sends each instance as it holds it.
_GET_SYNTAXES = (
    _EXPLICIT,
    _IMPLICIT,
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE
)
_MAX_CONTEXTS = 127  # 128 minus the Q/R model's own context


@dataclass
class RetrieveCounts:
    """The outcome of one C-MOVE or C-GET request, as the node reported it."""

    method: str
    level: str
    status: int = 0xFFFF
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    failed_uids: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        """Return True for a final success (0x0000) with no failed sub-operation."""
        return self.status == 0x0000 and self.failed == 0 and not self.error

    def as_dict(self) -> dict[str, Any]:
        """Return the counts as JSON-ready values (status as 0xNNNN text)."""
        return {
            "method": self.method,
            "level": self.level,
            "status": f"0x{self.status:04X}",
            "completed": self.completed,
            "failed": self.failed,
            "warning": self.warning,
            "remaining": self.remaining,
            "error": self.error,
        }


StoreHandler = Callable[[bytes, str], tuple[int, str]]
"""Stores one C-GET sub-operation's dataset (bytes, transfer syntax); returns status, comment."""


def _tls_context(node: RemoteNode) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.tls_ca_file)
        # PS3.15 BCP 195: nothing older than TLS 1.2, whatever the system's OpenSSL defaults are.
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if node.tls_cert_file:
            context.load_cert_chain(node.tls_cert_file, node.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise RemoteNodeError(
            f"node {node.name}: cannot load its TLS CA, certificate or key: {exc}"
        ) from exc
    return context


def _on_open(event: Any) -> None:
    """Send our small PDUs (C-STORE responses of a C-GET) at once, and encode them directly."""
    answer_stores_quickly(event.assoc)
    tune_connection(event)


def _update(counts: RetrieveCounts, rsp: C_GET | C_MOVE, identifier: Dataset | None) -> None:
    counts.status = int(cast(int, rsp.Status))
    for attr, keyword in (
        ("completed", "NumberOfCompletedSuboperations"),
        ("failed", "NumberOfFailedSuboperations"),
        ("warning", "NumberOfWarningSuboperations"),
        ("remaining", "NumberOfRemainingSuboperations"),
    ):
        value = getattr(rsp, keyword)
        if value is not None:
            setattr(counts, attr, int(value))
    if counts.status not in PENDING and rsp.NumberOfRemainingSuboperations is None:
        counts.remaining = 0  # a final response may omit it: nothing is left
    if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
        value = identifier.FailedSOPInstanceUIDList
        counts.failed_uids = [str(v) for v in ([value] if isinstance(value, str) else value)]


class RemoteNodeClient:
    """Talk to one remote node on behalf of our local AE.

    Parameters
    ----------
    node
        The configured node.
    local_ae
        Our calling AE title.
    politeness
        The node's window, rate limit and association cap.
    timeout
        ACSE, DIMSE and network timeout in seconds.
    """

    def __init__(
        self, node: RemoteNode, local_ae: str, politeness: Politeness, timeout: float = 60.0
    ) -> None:
        self.node = node
        self.local_ae = local_ae
        self.politeness = politeness
        self.timeout = timeout

    def _ae(self) -> AE:
        ae = RequestorAE(ae_title=self.local_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.maximum_pdu_size = 0
        return ae

    def check_window(self) -> None:
        """Raise :class:`WindowClosedError` when the node's window is closed now."""
        if not self.politeness.is_open():
            raise WindowClosedError(self.node.name, self.politeness.next_opening())

    @contextmanager
    def _association(
        self, ae: AE, ext_neg: list[Any] | None = None, handlers: list[Any] | None = None
    ) -> Iterator[Association]:
        self.check_window()
        with self.politeness.association():
            self.politeness.limiter.acquire()
            tls = (_tls_context(self.node), self.node.host) if self.node.tls else None
            assoc = ae.associate(
                self.node.host,
                self.node.port,
                ae_title=self.node.ae_title,
                max_pdu=0,
                ext_neg=ext_neg,
                tls_args=tls,
                evt_handlers=[(evt.EVT_CONN_OPEN, _on_open), *(handlers or [])],
            )
            if not assoc.is_established:
                raise RemoteNodeError(f"node {self.node.name}: association rejected or failed")
            take_responses_of(assoc)
            try:
                yield assoc
            finally:
                if assoc.is_established:
                    assoc.release()

    def echo(self) -> int:
        """Send C-ECHO and return the status (0 = success)."""
        ae = self._ae()
        ae.add_requested_context(Verification)
        with self._association(ae) as assoc:
            status = assoc.send_c_echo()
        if "Status" not in status:
            raise RemoteNodeError(f"node {self.node.name}: no C-ECHO response")
        return int(status.Status)

    def find(
        self,
        level: QueryLevel,
        keys: Mapping[str, Any],
        return_keys: Iterable[str] = (),
        default_keys: bool = True,
    ) -> list[dict[str, str]]:
        """Run one C-FIND and return every match as keyword -> string.

        ``default_keys=False`` asks for ``return_keys`` (and ``keys``) only, not the level's
        usual columns.
        """
        extra = list(return_keys)
        identifier = build_identifier(level, keys, extra, default_keys)
        columns = result_keywords(level, keys, extra, default_keys)
        model = (
            PatientRootQueryRetrieveInformationModelFind
            if level is QueryLevel.PATIENT
            else StudyRootQueryRetrieveInformationModelFind
        )
        ae = self._ae()
        ae.add_requested_context(model)
        rows: list[dict[str, str]] = []
        with self._association(ae) as assoc:
            syntax = transfer_syntax_of(assoc, model)
            for code, answer in send_find(assoc, identifier, model):
                row = identifier_row(answer, syntax, columns) if code in PENDING else None
                if row is not None:
                    rows.append(row)
                elif code != 0x0000:
                    status = "no valid response" if code is None else f"status 0x{code:04X}"
                    raise RemoteNodeError(f"node {self.node.name}: C-FIND {status}")
        return rows

    def move(
        self, level: QueryLevel, keys: Mapping[str, Any], destination: str, msg_id: int = 1
    ) -> RetrieveCounts:
        """Ask the node to C-MOVE the matches of ``keys`` to AE ``destination``."""
        identifier = build_identifier(level, keys)
        model = (
            PatientRootQueryRetrieveInformationModelMove
            if level is QueryLevel.PATIENT
            else StudyRootQueryRetrieveInformationModelMove
        )
        ae = self._ae()
        ae.add_requested_context(model)
        counts = RetrieveCounts("c-move", level.value)
        with self._association(ae) as assoc:
            for rsp, answer in send_move(assoc, identifier, destination, model, msg_id):
                if rsp is None:
                    counts.error = "association aborted or timed out"
                    break
                _update(counts, rsp, answer)
        return counts

    def get(
        self,
        level: QueryLevel,
        keys: Mapping[str, Any],
        sop_classes: Iterable[str],
        on_store: StoreHandler,
    ) -> RetrieveCounts:
        """C-GET the matches of ``keys``; each instance is passed to ``on_store(data, ts)``.

        ``on_store`` returns the C-STORE status to answer (0 only once the data is durable) and
        its error comment.
        """
        model = (
            PatientRootQueryRetrieveInformationModelGet
            if level is QueryLevel.PATIENT
            else StudyRootQueryRetrieveInformationModelGet
        )
        ae = self._ae()
        ae.add_requested_context(model)
        classes = sorted(set(sop_classes))
        per_class = len(_GET_SYNTAXES) * len(classes) <= _MAX_CONTEXTS
        for sop_class in classes[:_MAX_CONTEXTS]:
            if per_class:
                for syntax in _GET_SYNTAXES:
                    ae.add_requested_context(sop_class, [syntax])
            else:
                ae.add_requested_context(sop_class, list(_GET_SYNTAXES))
        roles = [build_role(sop_class, scp_role=True) for sop_class in classes[:_MAX_CONTEXTS]]

        def store(event: Any) -> int:
            data, syntax = event.request.DataSet.getvalue(), str(event.context.transfer_syntax)
            return on_store(data, syntax)[0]

        counts = RetrieveCounts("c-get", level.value)
        identifier = build_identifier(level, keys)
        with self._association(ae, roles, [(evt.EVT_C_STORE, store)]) as assoc:
            # C-STOREs taken from the PDUs, as the receiver's (pynetdicom's path cost more).
            take_stores_of(
                assoc, lambda request, ts: on_store(request.dataset, ts), scp_role_only=True
            )
            for rsp, answer in send_get(assoc, identifier, model):
                if rsp is None:
                    counts.error = "association aborted or timed out"
                    break
                _update(counts, rsp, answer)
        return counts
