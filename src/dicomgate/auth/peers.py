"""Known DICOM peers: which calling AE may associate from where, and what it may do.

``peer_for(settings, ae_title, host)`` is the one question every DIMSE handler asks::

    peer = peer_for(settings, calling_ae, peer_address)
    if peer is None or not peer.allows(DicomOperation.FIND):
        ...  # refuse
    visible = peer.projects  # None: every project; otherwise only these project ids

It answers the configured entry of ``auth.dicom_peers`` whose AE title matches and whose
``hosts`` (addresses, CIDRs or host names) contain the caller's address. A known AE title
calling from elsewhere gets ``None``, open receiver or not: a copied AE title is not an
identity. An AE title nobody listed gets ``None`` on a closed receiver and, on an open one
(``auth.dicom_open``, by default open while no peer is listed), a peer that may do
everything and see every project, which is how the receiver behaved before peers existed;
``dicom_allowed_calling_aes`` still narrows an open receiver.

A listed peer sees the projects its entry names; ``"*"`` names every project. One that names
none sees nothing on a closed receiver and every project on an open one: there, listing an AE
must not leave it seeing less than a stranger would.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from dicomgate.auth.settings import (
    ALL_PROJECTS,
    DicomOperation,
    DicomPeerSettings,
    UserIdentityPolicy,
)
from dicomgate.settings import Settings

log = logging.getLogger(__name__)

ALL_OPERATIONS = frozenset(DicomOperation)


@dataclass(frozen=True, slots=True)
class Peer:
    """A calling AE admitted to associate, with what it may do.

    Attributes
    ----------
    ae_title
        Its AE title, stripped.
    operations
        The DIMSE operations it may request.
    projects
        The project ids its queries and retrieves may see; ``None`` means every project.
    known
        ``False`` for an unlisted AE admitted by an open receiver.
    user_identity
        Whether its associations must carry a verified user identity.
    """

    ae_title: str
    operations: frozenset[DicomOperation]
    projects: frozenset[str] | None
    known: bool = True
    user_identity: UserIdentityPolicy = UserIdentityPolicy.OPTIONAL

    def allows(self, operation: DicomOperation | str) -> bool:
        """Return whether the peer may request ``operation`` ('store', 'find', ...)."""
        return DicomOperation(operation) in self.operations

    def sees(self, project_id: str) -> bool:
        """Return whether the peer's queries and retrieves may see ``project_id``."""
        return self.projects is None or project_id in self.projects


def _addresses(host: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(host, strict=False)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        log.warning("DICOM peer host %s does not resolve", host)
        return []
    return [ipaddress.ip_network(str(info[4][0])) for info in infos]


def host_matches(hosts: list[str], address: str) -> bool:
    """Return whether ``address`` lies in one of ``hosts`` (addresses, CIDRs, host names)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for host in hosts for network in _addresses(host))


def _peer(entry: DicomPeerSettings, settings: Settings) -> Peer:
    projects: frozenset[str] | None = frozenset(entry.projects)
    if ALL_PROJECTS in entry.projects or (not entry.projects and settings.auth.receiver_open):
        projects = None
    policy = entry.user_identity or settings.auth.dicom_user_identity
    return Peer(entry.ae_title, frozenset(entry.operations), projects, user_identity=policy)


def peer_for(settings: Settings, ae_title: str, host: str) -> Peer | None:
    """Return the peer ``ae_title`` calling from ``host`` is, or ``None`` to refuse it.

    Parameters
    ----------
    settings
        The settings (``auth.dicom_peers``, ``auth.dicom_open``, ``dicom_allowed_calling_aes``).
    ae_title
        The calling AE title of the association (padding is ignored).
    host
        The peer's IP address as the socket reports it.
    """
    ae_title = ae_title.strip()
    entries = [p for p in settings.auth.dicom_peers if p.ae_title == ae_title]
    for entry in entries:
        if host_matches(entry.hosts, host):
            return _peer(entry, settings)
    if entries or not settings.auth.receiver_open:
        return None
    allowed = [ae.strip() for ae in settings.dicom_allowed_calling_aes]
    if allowed and ae_title not in allowed:
        return None
    return Peer(
        ae_title, ALL_OPERATIONS, None, known=False, user_identity=settings.auth.dicom_user_identity
    )


def rejection_reason(settings: Settings, ae_title: str) -> str:
    """Return why ``peer_for`` refused ``ae_title`` (for the audit trail; no PHI)."""
    if any(p.ae_title == ae_title.strip() for p in settings.auth.dicom_peers):
        return "known AE title calling from a host outside its hosts"
    return "unknown calling AE title"
