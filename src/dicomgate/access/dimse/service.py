"""The query/retrieve and storage commitment services as one receiver :class:`Extension`."""

from __future__ import annotations

from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    evt,
)

from dicomgate.access.dimse.commitment import STORAGE_COMMITMENT, Committer
from dicomgate.access.dimse.config import QueryRetrieveSettings
from dicomgate.access.dimse.find import ROOTS, on_find
from dicomgate.access.dimse.retrieve import Archive, on_get, on_move
from dicomgate.auth.dicom_guard import AssociationGuard
from dicomgate.sources.scp import Extension, SupportedContext


def _contexts() -> list[SupportedContext]:
    contexts = [SupportedContext(uid, DEFAULT_TRANSFER_SYNTAXES) for uid in ROOTS]
    contexts.append(SupportedContext(STORAGE_COMMITMENT, DEFAULT_TRANSFER_SYNTAXES))
    # C-GET sends C-STOREs back over the requesting association: accept a requester's
    # SCP/SCU role selection for every storage class (without one, roles stay the default).
    for cx in AllStoragePresentationContexts:
        if cx.abstract_syntax is not None:
            contexts.append(SupportedContext(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, True, True))
    return contexts


def query_retrieve_extension(
    archive: Archive, settings: QueryRetrieveSettings, ae_title: str, guard: AssociationGuard
) -> Extension:
    """Return the C-FIND, C-MOVE, C-GET and Storage Commitment SCP for the receiver's AE.

    Parameters
    ----------
    archive
        The index and blob store the services read (never write).
    settings
        Destinations and limits.
    ae_title
        The receiver's AE title (returned as Retrieve AE Title, used for reports).
    guard
        The receiver's guard: who is on each association, what it may see; the audit trail.
    """
    committer = Committer(archive.db, settings, ae_title, guard)
    handlers = [
        (evt.EVT_C_FIND, on_find, [archive.db, ae_title, settings.max_find_results, guard]),
        (evt.EVT_C_MOVE, on_move, [archive, settings, guard]),
        (evt.EVT_C_GET, on_get, [archive, guard]),
        (evt.EVT_N_ACTION, committer.on_action),
    ]
    return Extension(_contexts(), handlers)
