"""The PACS source as the CLI, REST and jobs use it: nodes, echo, find, retrievers.

Built once by the composition root (or a CLI command) with the settings, the intake and a
clock; the politeness rules are shared by everything that talks to the same node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dicomgate.dicom.nodes import RemoteNode
from dicomgate.dicom.politeness import Clock, PolitenessRegistry
from dicomgate.dicom.query import QueryLevel
from dicomgate.dicom.remote import RemoteNodeClient
from dicomgate.errors import RemoteNodeError, WindowClosedError
from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import Intake
from dicomgate.settings import Settings
from dicomgate.sources.moves import MoveRegistry, active_moves
from dicomgate.sources.pacs.retrieve import RetrievePolicy, Retriever


class PacsService:
    """Remote nodes of the settings, with their shared politeness rules.

    Parameters
    ----------
    settings
        The ``pacs`` block and our AE title.
    intake
        Where retrieved instances go.
    clock
        Time source of windows, rate limits and backoff (tests inject one).
    moves
        The registry our receiver consults for C-MOVE stores.
    """

    def __init__(
        self,
        settings: Settings,
        intake: Intake,
        clock: Clock | None = None,
        moves: MoveRegistry = active_moves,
    ) -> None:
        self.settings = settings
        self.intake = intake
        self.politeness = PolitenessRegistry(clock)
        self.moves = moves

    @property
    def clock(self) -> Clock:
        """Return the clock everything here runs on."""
        return self.politeness.clock

    def node(self, name: str) -> RemoteNode:
        """Return the configured node ``name`` (NotFoundError otherwise)."""
        return self.settings.pacs.node(name)

    def client(self, node: RemoteNode | str, local_ae: str | None = None) -> RemoteNodeClient:
        """Return a client for ``node`` calling as ``local_ae`` (default: our AE title)."""
        remote = self.node(node) if isinstance(node, str) else node
        return RemoteNodeClient(
            remote,
            local_ae or self.settings.ae_title,
            self.politeness.for_node(remote),
            self.settings.pacs.timeout,
        )

    def echo(self, name: str) -> int:
        """C-ECHO node ``name``; return the status."""
        return self.client(name).echo()

    def status(self, name: str, probe: bool = True) -> dict[str, Any]:
        """Return a node's description, window state and (when ``probe``) reachability."""
        node = self.node(name)
        rules = self.politeness.for_node(node)
        row: dict[str, Any] = {
            "name": node.name,
            "ae_title": node.ae_title,
            "host": node.host,
            "port": node.port,
            "retrieve_method": node.retrieve_method.value,
            "max_associations": node.max_associations,
            "max_requests_per_minute": node.max_requests_per_minute,
            "window_open": rules.is_open(),
            "next_opening": rules.next_opening().isoformat(),
            "reachable": None,
            "detail": "",
        }
        if probe:
            try:
                status = self.client(node).echo()
                row["reachable"], row["detail"] = status == 0, f"C-ECHO status 0x{status:04X}"
            except WindowClosedError as exc:
                row["detail"] = str(exc)
            except RemoteNodeError as exc:
                row["reachable"], row["detail"] = False, str(exc)
        return row

    def find(
        self,
        name: str,
        level: QueryLevel,
        keys: Mapping[str, Any],
        return_keys: Iterable[str] = (),
    ) -> list[dict[str, str]]:
        """C-FIND on node ``name``."""
        return self.client(name).find(level, keys, return_keys)

    def retriever(
        self, node: RemoteNode | str, origin: Origin, local_ae: str | None = None
    ) -> Retriever:
        """Return a retriever from ``node`` for instances of ``origin``."""
        pacs = self.settings.pacs
        policy = RetrievePolicy(pacs.series_attempts, pacs.series_backoff, pacs.move_settle_timeout)
        return Retriever(
            self.client(node, local_ae), self.intake, origin, self.moves, self.clock, policy
        )
