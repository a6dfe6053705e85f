"""A real Orthanc filled with the PACS corpus, with dicomgate's receiver registered in it.

Orthanc learns our receiver's port at start, so one free port is chosen per module and each
test starts its own receiver (own index) on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomgate.dicom.nodes import RemoteNode
from dicomgate.intake.receive import Intake
from dicomgate.settings import Settings, load_settings
from dicomgate.sources.pacs.service import PacsService
from tests.conftest import _free_port
from tests.integration.pacs_corpus import CorpusStudy, build
from tests.orthanc import Orthanc, start_orthanc

OUR_AE = "DICOMGATE"


@dataclass
class Peer:
    orthanc: Orthanc
    receiver_port: int
    studies: list[CorpusStudy]

    def node(self, **changes: Any) -> dict[str, Any]:
        node = {
            "name": "orthanc",
            "ae_title": self.orthanc.ae_title,
            "host": "127.0.0.1",
            "port": self.orthanc.dicom_port,
        }
        return {**node, **changes}

    def settings(self, data_dir: Path, **node_changes: Any) -> Settings:
        return load_settings(
            data_dir=data_dir,
            dicom_port=self.receiver_port,
            ae_title=OUR_AE,
            stable_after=3600.0,
            pacs={"nodes": [self.node(**node_changes)], "series_backoff": 0.0},
        )

    def service(
        self, intake: Intake, data_dir: Path, clock: Any = None, **changes: Any
    ) -> PacsService:
        return PacsService(self.settings(data_dir, **changes), intake, clock)

    def remote(self, **changes: Any) -> RemoteNode:
        return RemoteNode.model_validate(self.node(**changes))

    def orthanc_id(self, uid: str) -> str:
        found = self.orthanc.rest("POST", "/tools/lookup", content=uid).json()
        return str(found[0]["ID"])

    def delete_series(self, series_uid: str) -> None:
        self.orthanc.rest("DELETE", f"/series/{self.orthanc_id(series_uid)}")


def start_peer(work: Path) -> Peer:
    port = _free_port()
    orthanc = start_orthanc(work, modalities={"DICOMGATE": (OUR_AE, "127.0.0.1", port)})
    studies, files = build()
    for data in files:
        orthanc.upload(data)
    return Peer(orthanc, port, studies)
