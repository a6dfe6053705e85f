"""QIDO-RS over HTTP on SQLite and PostgreSQL: matching, paging, includefield, bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.integration.dicomweb.conftest import Gate, ct_copy, pydicom_file

JSON = "application/dicom+json"


@pytest.fixture()
def filled(gate: Gate) -> tuple[Gate, dict[str, str]]:
    uids = {"a": generate_uid(), "b": generate_uid(), "c": generate_uid()}
    series_a = generate_uid()
    gate.store(
        ct_copy(
            "PAT-001",
            "20200101",
            study=uids["a"],
            series=series_a,
            PatientName="Doe^Jane",
            InstanceNumber=1,
            StudyTime="083000",
        )
    )
    gate.store(
        ct_copy(
            "PAT-001",
            "20200101",
            study=uids["a"],
            series=series_a,
            PatientName="Doe^Jane",
            InstanceNumber=2,
            StudyTime="083000",
        )
    )
    gate.store(
        ct_copy(
            "PAT-002",
            "20200615",
            study=uids["b"],
            PatientName="Roe^Richard",
            AccessionNumber="ACC_1%",
            StudyTime="141500",
        )
    )
    gate.store(ct_copy("pat_3", "", study=uids["c"], PatientName="O'Brien^Sean"))
    gate.store(pydicom_file("MR_small.dcm"))
    uids["series_a"] = series_a
    return gate, uids


def _search(gate: Gate, path: str, **params: Any) -> list[dict[str, Any]]:
    response = gate.http.get(path, params=params, headers={"Accept": JSON})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON
    result: list[dict[str, Any]] = response.json()
    return result


def _studies(gate: Gate, **params: Any) -> set[str]:
    return {r["0020000D"]["Value"][0] for r in _search(gate, "/studies", **params)}


def test_study_matching(filled: tuple[Gate, dict[str, str]]) -> None:
    gate, u = filled
    assert _studies(gate, PatientID="PAT-001") == {u["a"]}
    assert _studies(gate, **{"00100020": "PAT-002"}) == {u["b"]}
    assert _studies(gate, PatientID="PAT-00?") == {u["a"], u["b"]}
    assert _studies(gate, PatientID="pat_*") == {u["c"]}
    assert _studies(gate, PatientID="PAT_*") == set()  # '_' is no wildcard; case matters
    assert _studies(gate, PatientName="doe^jane") == {u["a"]}  # PN: case-insensitive
    assert _studies(gate, PatientName="O'B*") == {u["c"]}
    assert _studies(gate, StudyDate="20200101") == {u["a"]}
    assert _studies(gate, StudyDate="20200102-20201231") == {u["b"]}
    assert _studies(gate, StudyDate="20191231-20200301") == {u["a"]}
    assert _studies(gate, StudyTime="080000-090000") == {u["a"]}
    assert _studies(gate, AccessionNumber="ACC_1%") == {u["b"]}
    assert _studies(gate, StudyInstanceUID=f"{u['a']},{u['c']}") == {u["a"], u["c"]}
    assert _studies(gate, ModalitiesInStudy="MR") - {u["a"], u["b"], u["c"]} != set()
    assert u["a"] not in _studies(gate, ModalitiesInStudy="MR")
    assert _studies(gate, PatientID="*", StudyDate="20200101") == {u["a"]}


def test_study_results_carry_counts_and_urls(filled: tuple[Gate, dict[str, str]]) -> None:
    gate, u = filled
    [study] = _search(gate, "/studies", PatientID="PAT-001")
    assert study["00201206"]["Value"] == [1]  # NumberOfStudyRelatedSeries
    assert study["00201208"]["Value"] == [2]  # NumberOfStudyRelatedInstances
    assert study["00080061"]["Value"] == ["CT"]
    assert study["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane"}]
    assert study["00081190"]["Value"] == [f"{gate.dicomweb}/studies/{u['a']}"]


def test_series_and_instance_levels(filled: tuple[Gate, dict[str, str]]) -> None:
    gate, u = filled
    [series] = _search(gate, f"/studies/{u['a']}/series")
    assert series["0020000E"]["Value"] == [u["series_a"]]
    assert series["00201209"]["Value"] == [2]  # NumberOfSeriesRelatedInstances
    assert {r["00080060"]["Value"][0] for r in _search(gate, "/series", Modality="MR")} == {"MR"}
    assert len(_search(gate, "/series", PatientID="PAT-001")) == 1  # study keys at series level
    instances = _search(gate, f"/studies/{u['a']}/series/{u['series_a']}/instances")
    assert [r["00200013"]["Value"] for r in instances] == [[1], [2]]
    assert len(_search(gate, f"/studies/{u['a']}/instances", InstanceNumber="2")) == 1
    assert len(_search(gate, "/instances", SOPClassUID="1.2.840.10008.5.1.4.1.1.4")) == 1
    url = instances[0]["00081190"]["Value"][0]
    assert url.startswith(f"{gate.dicomweb}/studies/{u['a']}/series/{u['series_a']}/instances/")


def test_includefield_limit_offset(filled: tuple[Gate, dict[str, str]]) -> None:
    gate, _u = filled
    everything = _search(gate, "/instances", includefield="all")
    assert {"00280010", "00280011", "00083002", "00100020"} <= everything[0].keys()
    named = _search(gate, "/series", includefield="PatientID,00081030")
    assert "00100020" in named[0] and "00081030" in named[0]
    all_studies = [r["0020000D"]["Value"][0] for r in _search(gate, "/studies")]
    assert len(all_studies) == 4
    page = [r["0020000D"]["Value"][0] for r in _search(gate, "/studies", limit=2, offset=1)]
    assert page == all_studies[1:3]
    assert _search(gate, "/studies", offset=100) == []


def test_limit_above_the_maximum_is_cut_with_a_warning(gate: Gate) -> None:
    gate.store(ct_copy())
    response = gate.http.get("/studies", params={"limit": "5000"})
    assert response.status_code == 200
    assert "Warning" in response.headers and "299" in response.headers["Warning"]


def test_fuzzymatching_is_accepted_and_said_not_applied(gate: Gate) -> None:
    response = gate.http.get("/studies", params={"fuzzymatching": "true"})
    assert response.status_code == 200
    assert "fuzzymatching" in response.headers["Warning"]


BAD_QUERIES: list[dict[str, str]] = [
    {"StudyDate": "2020-01-01"},
    {"StudyDate": "20201301"[:7]},
    {"StudyDate": "20201231-20200101"},
    {"StudyDate": "-"},
    {"StudyDate": "'; DROP TABLE studies; --"},
    {"StudyTime": "25:00"},
    {"limit": "99999999999999999999999"},
    {"limit": "-1"},
    {"limit": "ten"},
    {"offset": "1e9"},
    {"StudyInstanceUID": "1.2.abc"},
    {"StudyInstanceUID": "' OR '1'='1"},
    {"SeriesNumber": "x"},
    {"NotAnAttribute": "x"},
    {"00081111": "x"},  # a DICOM attribute the index does not match on
    {"PatientID": "a\\b"},
    {"PatientID": "x" * 500},
    {"includefield": "NoSuchThing"},
    {"fuzzymatching": "maybe"},
]


def test_bad_queries_are_400_never_500(gate: Gate) -> None:
    gate.store(ct_copy())
    for path in ("/studies", "/series", "/instances"):
        for params in BAD_QUERIES:
            response = gate.http.get(path, params=params)
            assert response.status_code == 400, (path, params, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")


def test_quotes_and_sql_like_strings_match_literally(filled: tuple[Gate, dict[str, str]]) -> None:
    gate, _u = filled
    values = ["' OR 1=1 --", '"; DELETE FROM studies; --', "%", "_", "[a-z]*", "\u00e9*"]
    for value in values:
        for key in ("PatientID", "PatientName", "StudyDescription", "AccessionNumber"):
            assert _studies(gate, **{key: value}) == set(), (key, value)
    assert len(_studies(gate)) == 4  # nothing was changed


def test_search_under_a_bad_uid_is_400(gate: Gate) -> None:
    response = gate.http.get("/studies/not-a-uid/series")
    assert response.status_code == 400


def test_unacceptable_media_type_is_406(gate: Gate) -> None:
    response = gate.http.get("/studies", headers={"Accept": "application/dicom+xml"})
    assert response.status_code == 406


def test_one_statement_per_query_shape_answers_every_value(
    filled: tuple[Gate, dict[str, str]],
) -> None:
    from dicomgate.access.dicomweb import qido

    gate, u = filled
    qido._STATEMENTS.clear()
    assert _studies(gate, PatientID="PAT-001") == {u["a"]}
    assert _studies(gate, PatientID="PAT-002") == {u["b"]}  # same shape, the other value
    assert _studies(gate, StudyInstanceUID=u["a"]) == {u["a"]}
    three = f"{u['a']},{u['b']},{u['c']}"
    assert _studies(gate, StudyInstanceUID=three) == {u["a"], u["b"], u["c"]}
    assert _studies(gate, StudyDate="20200102-") == {u["b"]}
    before = _studies(gate, StudyDate="-20200102")  # with MR_small's study of 2004
    assert u["a"] in before and u["b"] not in before
    assert _studies(gate, StudyDate="20200101-20200101") == {u["a"]}
    assert _studies(gate, PatientName="doe^*") == {u["a"]}
    assert _studies(gate, PatientName="roe^*") == {u["b"]}
    assert len(_search(gate, "/studies", limit=1)) == 1
    assert len(_search(gate, "/studies", limit=3)) == 3  # limit and offset are parameters too
    # PatientID; UID lists of any length; three kinds of range; a PN wildcard; no key.
    assert len(qido._STATEMENTS) == 7


def test_every_search_path_is_answered_in_front_of_the_routes(
    filled: tuple[Gate, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicomgate.access.dicomweb import search_lane
    from dicomgate.access.dicomweb.attributes import Level

    gate, u = filled
    levels: list[Level] = []
    answer = search_lane.qido
    monkeypatch.setattr(search_lane, "qido", lambda *a: levels.append(a[2]) or answer(*a))
    study, series = u["a"], u["series_a"]
    assert len(_search(gate, "/studies")) == 4
    assert len(_search(gate, "/series", PatientID="PAT-001")) == 1
    assert len(_search(gate, "/instances", PatientID="PAT-001")) == 2
    assert len(_search(gate, f"/studies/{study}/series")) == 1
    assert len(_search(gate, f"/studies/{study}/instances")) == 2
    assert len(_search(gate, f"/studies/{study}/series/{series}/instances")) == 2
    assert levels == [
        Level.STUDY,
        Level.SERIES,
        Level.INSTANCE,
        *[Level.SERIES],
        *[Level.INSTANCE] * 2,
    ]
    # Everything else goes on to the application's routes.
    assert gate.http.get(f"/studies/{study}/metadata").status_code == 200
    assert gate.http.get("/studies/", follow_redirects=True).status_code == 200
    assert gate.http.post("/studies", content=b"x").status_code in (400, 415)  # STOW-RS
    assert len(levels) == 7  # the redirected "/studies/" came back as "/studies"


def test_an_unexpected_failure_of_a_search_is_a_500_and_the_server_goes_on(
    gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicomgate.access.dicomweb import search_lane

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(search_lane, "qido", broken)
    assert gate.http.get("/studies").status_code == 500
    monkeypatch.undo()
    # uvicorn closes the connection of a request that failed this way; a new one is answered.
    assert httpx.get(f"{gate.dicomweb}/studies").status_code == 200


def test_a_uid_longer_than_64_characters_is_400(gate: Gate) -> None:
    response = gate.http.get(f"/studies/1.{'2' * 64}/instances")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
