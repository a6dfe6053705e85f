"""C-CANCEL of C-MOVE (dcmtk movescu), C-GET (pynetdicom) and C-FIND (dcmtk findscu).

PS3.4 C.4.1.3, C.4.2.3, C.4.3.3: after a C-CANCEL-RQ the SCP ends the operation with status
0xFE00 (Cancel), with the sub-operation counts for a retrieve, and performs no sub-operation
it had not started. The study is large enough that the cancel, sent after the first pending
responses, arrives long before the last sub-operation; where a loaded machine could still let
the operation finish first, the test asserts the conformant alternative (a complete success).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from dicomgate.db import Database
from dicomgate.dicom.reactor import keep_responses_for_the_caller
from dicomgate.intake.receive import Intake
from dicomgate.sources.scp import Receiver
from tests.integration.dimse.conftest import AE_TITLE, serve
from tests.integration.dimse.corpus import build_large_study
from tests.integration.dimse.dcmtk import StoreSCP, keys, run

# Sub-operations take a millisecond or more each; the cancel follows the second response.
LARGE = 120
CANCEL, SUCCESS, PENDING = 0xFE00, 0x0000, (0xFF00, 0xFF01)
GET_MESSAGE_ID = 7


@pytest.fixture()
def database(sqlite_database: Database) -> Database:
    """SQLite only: cancellation is protocol, not SQL."""
    return sqlite_database


@pytest.fixture()
def large_study(intake: Intake) -> tuple[str, list[str]]:
    """A study of ``LARGE`` instances: its UID and its SOP Instance UIDs."""
    return build_large_study(intake, LARGE)


@pytest.fixture()
def server(
    intake: Intake, large_study: tuple[str, list[str]], storescp: StoreSCP
) -> Iterator[Receiver]:
    """A receiver serving the large study, with storescp as move destination."""
    receiver = serve(intake, destinations=[storescp.destination()])
    yield receiver
    receiver.stop()


def _final_response(output: str) -> dict[str, str]:
    """Return the fields of the final response in dcmtk's ``--debug`` DIMSE dump."""
    _, marker, final = output.rpartition("Received Final")
    assert marker, output
    fields = re.findall(r"^D: (\w[\w ]*?)\s+: (.*)$", final, re.MULTILINE)
    return dict(fields)


def _status(fields: dict[str, str]) -> int:
    return int(fields["DIMSE Status"].split(":")[0], 16)


def _counts(fields: dict[str, str]) -> tuple[int, int, int, int]:
    """Return the remaining, completed, failed and warning sub-operations of a dump."""
    remaining, completed, failed, warning = (
        int(fields.get(f"{name} Suboperations", "0"))
        for name in ("Remaining", "Completed", "Failed", "Warning")
    )
    return remaining, completed, failed, warning


def _echo(port: int) -> int:
    """Return the status of a C-ECHO on a new association (the server still serves)."""
    ae = AE(ae_title="PYECHO")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    return int(status.Status)


def test_move_cancelled_by_movescu_ends_with_fe00_and_stops_sending(
    server: Receiver, large_study: tuple[str, list[str]], storescp: StoreSCP
) -> None:
    study, uids = large_study
    done = run(
        "movescu",
        server.port,
        "-aem",
        "STORESCP",
        "--cancel",
        "2",
        "-d",
        "-S",
        *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study),
    )
    output = done.stderr + done.stdout
    assert done.returncode == 0, output
    assert "Sending Cancel Request" in output, output
    final = _final_response(output)
    remaining, completed, failed, warning = _counts(final)
    received = storescp.received()
    assert set(received) <= set(uids)
    assert remaining + completed + failed + warning == LARGE, final
    assert (failed, warning) == (0, 0), final
    assert _echo(server.port) == SUCCESS
    if _status(final) == SUCCESS:  # every sub-operation was done before the cancel came
        assert (remaining, completed) == (0, LARGE) and len(received) == LARGE
        return
    assert _status(final) == CANCEL, final
    assert 2 <= completed < LARGE and remaining == LARGE - completed
    assert len(received) == completed  # nothing after the cancel: the destination was released


class _GetRequester:
    """A pynetdicom C-GET SCU on one association that keeps what it is sent."""

    def __init__(self, port: int) -> None:
        self.received: list[str] = []
        ae = AE(ae_title="PYGET")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        # pynetdicom's default syntaxes, deflate among them: the receiver accepts that one.
        ae.add_requested_context(CTImageStorage)
        ae.add_requested_context(Verification)
        self.assoc = ae.associate(
            "127.0.0.1",
            port,
            ae_title=AE_TITLE,
            ext_neg=[build_role(CTImageStorage, scp_role=True)],  # C-GET stores come back here
            evt_handlers=[(evt.EVT_C_STORE, self._store)],
        )
        assert self.assoc.is_established
        # pynetdicom's reactor could take a response this test's thread waits for (the race
        # dicomgate's own requested associations are guarded against the same way).
        keep_responses_for_the_caller(self.assoc)

    def _store(self, event: Any) -> int:
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        return SUCCESS

    def get(self, study: str, cancel_after: int | None = None) -> list[Dataset]:
        """Run a C-GET of ``study``; send a C-CANCEL after ``cancel_after`` pending responses.

        Returns the status datasets of every response, the final one last.
        """
        identifier = Dataset()
        identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", study
        model = StudyRootQueryRetrieveInformationModelGet
        statuses = []
        for status, _ in self.assoc.send_c_get(identifier, model, msg_id=GET_MESSAGE_ID):
            statuses.append(status)
            pending = sum(s.Status in PENDING for s in statuses)
            if status.Status in PENDING and pending == cancel_after:
                self.assoc.send_c_cancel(GET_MESSAGE_ID, query_model=model)
        return statuses


def _final_counts(status: Dataset) -> tuple[int, int, int, int]:
    """Return the remaining, completed, failed and warning sub-operations of a response."""
    remaining, completed, failed, warning = (
        int(status.get(f"NumberOf{name}Suboperations", 0))
        for name in ("Remaining", "Completed", "Failed", "Warning")
    )
    return remaining, completed, failed, warning


def test_get_cancelled_ends_with_fe00_and_the_association_goes_on(
    server: Receiver, large_study: tuple[str, list[str]]
) -> None:
    study, uids = large_study
    requester = _GetRequester(server.port)
    try:
        statuses = requester.get(study, cancel_after=1)
        cancelled = list(requester.received)
        # The same association: a C-ECHO and a complete C-GET still work.
        echo = requester.assoc.send_c_echo()
        again = requester.get(study)
    finally:
        requester.assoc.release()
    final = statuses[-1]
    remaining, completed, failed, warning = _final_counts(final)
    # pynetdicom's SCU answers the next C-STORE only after the cancel is sent, so the cancel
    # always arrives while sub-operations remain.
    assert final.Status == CANCEL, final
    assert remaining + completed + failed + warning == LARGE, final
    assert (failed, warning) == (0, 0) and 1 <= completed < LARGE
    assert len(cancelled) == completed and set(cancelled) <= set(uids)
    assert all(s.Status in PENDING for s in statuses[:-1])
    assert echo.Status == SUCCESS
    assert again[-1].Status == SUCCESS and _final_counts(again[-1])[1] == LARGE
    assert sorted(requester.received[len(cancelled) :]) == sorted(uids)
    assert _echo(server.port) == SUCCESS


def _find_responses(output: str) -> list[str]:
    """Return findscu's response lines in order: ``Pending`` ones, then the final one."""
    return re.findall(
        r"^I: (Find Response: \d+ \(Pending\)|Received Final Find Response.*)$",
        output,
        re.MULTILINE,
    )


def test_find_cancelled_by_findscu_ends_with_fe00(
    server: Receiver, large_study: tuple[str, list[str]]
) -> None:
    study, uids = large_study
    query = keys(QueryRetrieveLevel="IMAGE", StudyInstanceUID=study, SOPInstanceUID="")
    done = run("findscu", server.port, "--cancel", "1", "-S", *query)
    output = done.stderr + done.stdout
    assert done.returncode == 0, output
    responses = _find_responses(output)
    final, pending = responses[-1], responses[:-1]
    assert all("Pending" in line for line in pending), responses  # none after the final
    # The next query on a new association is answered in full: no cancel left behind.
    again = run("findscu", server.port, "-S", *query)
    complete = _find_responses(again.stderr + again.stdout)
    assert len(complete) == len(uids) + 1 and "(Success)" in complete[-1], complete
    if "(Success)" in final:  # every match was sent before the cancel came
        assert len(pending) == len(uids)
        return
    assert "(Cancel" in final, output
    assert 1 <= len(pending) < len(uids)
