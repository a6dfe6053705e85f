"""DIMSE access to the archive: C-FIND, C-MOVE, C-GET and Storage Commitment SCP.

Served on the receiver's AE and port through :class:`dicomgate.sources.scp.Extension`
(see :func:`dicomgate.access.dimse.service.query_retrieve_extension`). Reads the index and the
blobs, never writes them. Index queries live in :mod:`dicomgate.access.dimse.queries`.
"""
