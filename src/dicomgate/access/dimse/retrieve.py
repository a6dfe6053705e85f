"""C-MOVE and C-GET SCP: send the stored instances an identifier names.

pynetdicom's Query/Retrieve service class runs the protocol (pending responses with
sub-operation counts, the final 0x0000 / 0xB000 with the Failed SOP Instance UID List / 0xA702,
cancel); these handlers list the instances from the index and hand over each one read from
its blob. The dataset is read without decoding values and re-emitted element by element, so
the bytes sent are the stored dataset in its stored transfer syntax. A compressed instance is
decompressed only when the peer accepted no context for its stored syntax.

An instance whose blob is missing, or that cannot be decompressed, is handed over as a bare
SOP Class/Instance UID pair: pynetdicom cannot send it and counts it as a failed sub-operation
under its UID, so nothing is silently dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from types import SimpleNamespace
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import build_context

from dicomgate.access.dimse.config import Destination, QueryRetrieveSettings
from dicomgate.access.dimse.find import read_query, refusal, status
from dicomgate.access.dimse.queries import StoredInstance, instances_to_retrieve
from dicomgate.access.dimse.readahead import read_ahead
from dicomgate.access.dimse.sender import StoreSender
from dicomgate.access.dimse.takeover import Takeover
from dicomgate.access.dimse.wire import C_GET_RSP, C_MOVE_RSP, RawInstance, Unsendable
from dicomgate.archive.blobstore import BlobStore
from dicomgate.auth.dicom_guard import Admission, AssociationGuard
from dicomgate.auth.settings import DicomOperation
from dicomgate.db import Database
from dicomgate.dicom.structure import meta_end

log = logging.getLogger(__name__)

_UNCOMPRESSED = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, "1.2.840.10008.1.2.2"}
# What a decoded dataset can be re-encoded in: a C-GET requester may have proposed only
# deflate (the receiver accepts it only when no uncompressed syntax was proposed).
_NATIVE = {*_UNCOMPRESSED, DeflatedExplicitVRLittleEndian}
_MAX_CONTEXTS = 128


@dataclass(frozen=True, slots=True)
class Archive:
    """What the retrieve handlers read: the index and the blob store."""

    db: Database
    blobs: BlobStore


@dataclass
class _Peer:
    """The association the sub-operations go over (captured when it is established)."""

    assoc: Any = None
    accepted: set[tuple[str, str]] = field(default_factory=set)

    def open(
        self, host: str, port: int, calling: str, called: str, contexts: list[Any], timeout: float
    ) -> Any:
        """Associate with the destination (pynetdicom's move service calls this)."""
        try:
            self.assoc = StoreSender(host, port, calling, called, contexts, timeout)
        except OSError as exc:
            log.warning("cannot associate with %s: %s", called, type(exc).__name__)
            self.assoc = _Unreachable()
            return self.assoc
        self.accepted = accepted_pairs(self.assoc, as_scu=True)
        return self.assoc


class _Unreachable:
    """A sub-association that never came up (pynetdicom then answers 0xA801)."""

    is_established = False
    dul = SimpleNamespace(socket=SimpleNamespace(close=lambda: None))


class _NotOpened:
    """The sub-association of a refused C-MOVE: never opened, so nothing is sent.

    pynetdicom's move service associates with the destination before it reads the first
    status; standing in for that association lets the refusal (0x0124) be the answer.
    """

    is_established = True

    def release(self) -> None:
        """Nothing to release."""


def accepted_pairs(assoc: Any, as_scu: bool) -> set[tuple[str, str]]:
    """Return the (SOP class, transfer syntax) pairs we may send C-STOREs under."""
    return {
        (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
        for cx in assoc.accepted_contexts
        if not as_scu or cx.as_scu
    }


def _placeholder(item: StoredInstance) -> Dataset:
    # No file meta, no raw bytes: neither sender sends it; its UID is listed as failed.
    return Unsendable(item.sop_class_uid, item.sop_instance_uid)


def _needs_decompression(item: StoredInstance, accepted: set[tuple[str, str]]) -> bool:
    if item.transfer_syntax_uid in _UNCOMPRESSED:
        return False  # pynetdicom converts between the uncompressed syntaxes itself
    if (item.sop_class_uid, item.transfer_syntax_uid) in accepted:
        return False
    return any(cls == item.sop_class_uid and ts in _NATIVE for cls, ts in accepted)


def load(blobs: BlobStore, item: StoredInstance, accepted: set[tuple[str, str]]) -> Dataset:
    """Return the stored instance ready to send (decompressed only if the peer needs it)."""
    try:
        ds = dcmread(BytesIO(blobs.read(item.blob_key)))
        if _needs_decompression(item, accepted):
            ds.decompress(generate_instance_uid=False)  # the peer asked for this UID
        return ds
    except Exception as exc:
        log.error("cannot send instance %s: %s", item.sop_instance_uid, type(exc).__name__)
        return _placeholder(item)


def load_raw(blobs: BlobStore, item: StoredInstance, accepted: set[tuple[str, str]]) -> Dataset:
    """Return the stored dataset bytes undecoded when the peer accepted the stored syntax."""
    if (item.sop_class_uid, item.transfer_syntax_uid) not in accepted:
        return load(blobs, item, accepted)  # decoded: converted or decompressed on the way
    try:
        data = memoryview(blobs.read(item.blob_key))
        raw = data[meta_end(data, 132) :]
    except Exception as exc:
        log.error("cannot send instance %s: %s", item.sop_instance_uid, type(exc).__name__)
        return _placeholder(item)
    return RawInstance(item.sop_class_uid, item.sop_instance_uid, raw, item.transfer_syntax_uid)


def contexts_for(items: Sequence[StoredInstance]) -> list[Any]:
    """Return the contexts to propose: each stored syntax exactly, then uncompressed fallbacks."""
    exact: dict[tuple[str, str], None] = {}
    fallback: dict[str, None] = {}
    for item in items:
        exact[(item.sop_class_uid, item.transfer_syntax_uid)] = None
        fallback[item.sop_class_uid] = None
    uncompressed: list[str] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    contexts = [
        build_context(cls, [ts, *(u for u in uncompressed if u != ts)])
        for cls, ts in exact
        if ts in _UNCOMPRESSED
    ]
    contexts += [build_context(cls, uncompressed) for cls in fallback]
    contexts += [build_context(cls, ts) for cls, ts in exact if ts not in _UNCOMPRESSED]
    return contexts[:_MAX_CONTEXTS]


def _instances(archive: Archive, event: Any, admission: Admission) -> list[StoredInstance]:
    query = read_query(event)
    with archive.db.reader() as session:
        return instances_to_retrieve(session, query, admission.projects())


def _refused_status(operation: DicomOperation) -> Dataset:
    return status(0x0124, f"calling AE may not {operation}")


def _studies(items: list[StoredInstance]) -> list[str]:
    return list(dict.fromkeys(item.study_uid for item in items))


def _sub_operations(
    event: Any, archive: Archive, items: list[StoredInstance], peer: _Peer, loader: Any = load
) -> Iterator[tuple[int, Any]]:
    def read(item: StoredInstance) -> Dataset:
        return loader(archive.blobs, item, peer.accepted)  # type: ignore[no-any-return]

    # Decoding (C-GET) holds the GIL, so reading ahead on a thread only adds contention.
    datasets = read_ahead(items, read) if loader is load_raw else map(read, items)
    for dataset in datasets:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield 0xFF00, dataset


def on_move(
    event: Any, archive: Archive, settings: QueryRetrieveSettings, guard: AssociationGuard
) -> Iterator[Any]:
    """Answer a C-MOVE request (pynetdicom ``EVT_C_MOVE`` handler).

    Only instances of the projects the association may see are sent, and only to a known
    destination (see :func:`known_destination`); the retrieve is audited once.
    """
    admission = guard.admission(event.assoc)
    if guard.refusal(event, DicomOperation.MOVE) is not None or admission is None:
        yield "", 0, {"connect": lambda *_args: _NotOpened()}
        yield 1  # the one "sub-operation" is the refusal itself
        yield _refused_status(DicomOperation.MOVE), None
        return
    destination = known_destination(settings, guard, str(event.move_destination))
    if destination is None:
        guard.audit.retrieved(
            admission, "move", [], 0, str(event.move_destination), "unknown destination"
        )
        yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
        return
    try:
        items = _instances(archive, event, admission)
    except Exception as exc:
        guard.audit.retrieved(
            admission, "move", [], 0, destination.ae_title, f"refused: {type(exc).__name__}"
        )
        yield from _refuse_move(event, exc, destination.host, destination.port)
        return
    peer = _Peer()
    contexts = contexts_for(items)
    calling, timeout = event.assoc.ae.ae_title, event.assoc.ae.dimse_timeout

    def connect(host: str, port: int, called: str) -> Any:
        return peer.open(host, port, calling, called, contexts, timeout)

    yield destination.host, destination.port, {"connect": connect}
    log.info("C-MOVE to %s: %d instances", destination.ae_title, len(items))
    guard.audit.retrieved(admission, "move", _studies(items), len(items), destination.ae_title)
    yield len(items)
    takeover = Takeover(event.assoc, C_MOVE_RSP)
    takeover.start()  # pending responses written here; pynetdicom's path when it cannot
    try:
        yield from _sub_operations(event, archive, items, peer, load_raw)
    finally:
        takeover.stop()


def known_destination(
    settings: QueryRetrieveSettings, guard: AssociationGuard, ae_title: str
) -> Destination | None:
    """Return where a C-MOVE to ``ae_title`` goes, or ``None`` when it may not go there.

    A destination must be configured (``query_retrieve.destinations``: its address); on a
    receiver that admits only listed peers it must be one of ``auth.dicom_peers`` as well, so
    a C-MOVE cannot carry data to an AE that could not associate with us itself.
    """
    destination = settings.destination(ae_title)
    if destination is None:
        log.warning("C-MOVE refused: destination %r is not configured", ae_title)
        return None
    auth = guard.settings.auth
    if not auth.receiver_open and not any(
        p.ae_title == destination.ae_title for p in auth.dicom_peers
    ):
        log.warning("C-MOVE refused: destination %r is not a known peer", ae_title)
        return None
    return destination


def _refuse_move(event: Any, exc: Exception, host: str, port: int) -> Iterator[Any]:
    # pynetdicom takes the destination, then the count; a failure status can only follow
    # sub-operations, so the refusal is raised where the count is asked for (0xC513,
    # Failed: Unable to process). Our log line says why.
    log.warning(
        "C-MOVE refused, %s: %s (association %s)",
        type(exc).__name__,
        refusal(exc).ErrorComment,
        event.assoc.name,
    )
    yield host, port
    raise exc


def on_get(event: Any, archive: Archive, guard: AssociationGuard) -> Iterator[Any]:
    """Answer a C-GET request (pynetdicom ``EVT_C_GET`` handler).

    Only instances of the projects the association may see are sent; audited once.
    """
    admission = guard.admission(event.assoc)
    if guard.refusal(event, DicomOperation.GET) is not None or admission is None:
        yield 1  # the one "sub-operation" is the refusal itself
        yield _refused_status(DicomOperation.GET), None
        return
    try:
        items = _instances(archive, event, admission)
    except Exception as exc:
        log.warning(
            "C-GET refused, %s: %s (association %s)",
            type(exc).__name__,
            refusal(exc).ErrorComment,
            event.assoc.name,
        )
        guard.audit.retrieved(admission, "get", [], 0, failure=f"refused: {type(exc).__name__}")
        raise  # pynetdicom answers 0xC413 (Failed: Unable to process)
    peer = _Peer(event.assoc, accepted_pairs(event.assoc, as_scu=True))
    log.info("C-GET: %d instances", len(items))
    guard.audit.retrieved(admission, "get", _studies(items), len(items))
    yield len(items)
    takeover = Takeover(event.assoc, C_GET_RSP)
    if not takeover.start():  # TLS: pynetdicom sends decoded datasets itself
        yield from _sub_operations(event, archive, items, peer)
        return
    event.assoc.send_c_store = takeover.channel().send_c_store  # undone by stop()
    try:
        yield from _sub_operations(event, archive, items, peer, load_raw)
    finally:
        takeover.stop()
