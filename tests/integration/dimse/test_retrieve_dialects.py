"""The retrieve index queries on both SQLite and PostgreSQL (the rest of the retrieve tests
exercise peers on SQLite only)."""

from __future__ import annotations

from pathlib import Path

import pydicom

from dicomgate.access.dimse.identifiers import Root, parse_query
from dicomgate.access.dimse.queries import instances_to_retrieve, stored_classes
from dicomgate.intake.receive import Intake
from dicomgate.sources.scp import Receiver
from tests.integration.dimse.corpus import Corpus
from tests.integration.dimse.dcmtk import keys, run


def test_get_a_uid_list_of_studies(qr_scp: Receiver, corpus: Corpus, tmp_path: Path) -> None:
    studies = "\\".join(corpus.studies[1:])
    out = tmp_path / "got"
    out.mkdir()
    done = run(
        "getscu",
        qr_scp.port,
        "-S",
        "-od",
        str(out),
        *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=studies),
    )
    assert "Number of Completed Suboperations : 3" in done.stderr, done.stderr
    got = sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in out.iterdir())
    wanted = [
        u
        for s in corpus.studies[1:]
        for series in corpus.series[s]
        for u in corpus.instances[series]
    ]
    assert got == sorted(wanted)


def test_retrieve_order_and_commitment_lookup(intake: Intake, corpus: Corpus) -> None:
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel, identifier.PatientID = "PATIENT", "PID001"
    with intake.db.reader() as session:
        items = instances_to_retrieve(session, parse_query(identifier, Root.PATIENT))
        classes = stored_classes(session, [items[0].sop_instance_uid, "1.2.3.4"])
    first_study = corpus.studies[0]
    expected = [u for series in corpus.series[first_study] for u in corpus.instances[series]]
    assert [i.sop_instance_uid for i in items][:5] == expected
    assert len(items) == 6
    assert classes == {items[0].sop_instance_uid: "1.2.840.10008.5.1.4.1.1.2"}
