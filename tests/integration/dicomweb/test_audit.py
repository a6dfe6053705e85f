"""DICOMweb searches, retrieves and stores leave one audit record per request, without PHI;
driven by dicomweb-client (PyPI) against a real dicomgate."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient

from dicomgate.auth.audit import AuditTrail
from tests.integration.dicomweb.conftest import Gate, ct_copy


def _trail(tmp_path: Path) -> AuditTrail:
    # The server's own audit store (data_dir/audit.sqlite3), read over a second connection.
    return AuditTrail(f"sqlite:///{tmp_path / 'data' / 'audit.sqlite3'}")


def test_stow_qido_and_wado_are_audited_once_per_request(sqlite_gate: Gate, tmp_path: Path) -> None:
    client = DICOMwebClient(url=sqlite_gate.dicomweb)
    first, second = ct_copy("PAT-SECRET-7"), ct_copy("PAT-SECRET-7")
    datasets = [pydicom.dcmread(BytesIO(data)) for data in (first, second)]
    study = str(datasets[0].StudyInstanceUID)
    client.store_instances(datasets)
    assert len(client.search_for_studies(search_filters={"PatientID": "PAT-SECRET-7"})) == 2
    assert len(client.retrieve_study(study)) == 1
    assert len(client.retrieve_study_metadata(study)) == 1
    trail = _trail(tmp_path)
    try:
        [stored] = trail.records(action="import")
        [query] = trail.records(action="query")
        sent, metadata = trail.records(action="retrieve")
        everything = json.dumps([r.to_json() for r in trail.records()])
    finally:
        trail.dispose()
    assert (stored.event_code, stored.actor, stored.outcome) == ("110104", "anonymous", 0)
    assert stored.source == "127.0.0.1"
    assert stored.objects["instances"] == 2 and stored.objects["failed"] == 0
    assert stored.objects["staging_sessions"] == 2
    assert query.event_code == "110112"
    assert query.objects == {"level": "STUDY", "results": 2}
    assert (sent.event_code, sent.objects) == ("110104", {"study_uid": study, "instances": 1})
    assert (metadata.event_code, metadata.objects["instances"]) == ("110103", 1)
    assert "PAT-SECRET-7" not in everything  # query values and headers are PHI
