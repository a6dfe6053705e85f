import pytest

from dicomgate.access.dicomweb.attributes import Level
from dicomgate.access.dicomweb.qido_params import parse_query
from dicomgate.errors import InvalidInputError


def _matches(level: Level, **params: str) -> list[tuple[str, str, tuple[str | None, ...]]]:
    query, _ = parse_query(level, list(params.items()), 100)
    return [(m.attribute.keyword, m.kind, m.values) for m in query.matches]


def test_kinds_of_matching() -> None:
    assert _matches(Level.STUDY, PatientID="A*") == [("PatientID", "wildcard", ("A*",))]
    assert _matches(Level.STUDY, StudyDate="20200101-") == [
        ("StudyDate", "range", ("20200101", None))
    ]
    assert _matches(Level.STUDY, StudyDate="20200101") == [("StudyDate", "equal", ("20200101",))]
    assert _matches(Level.STUDY, PatientID="*") == [("PatientID", "universal", ())]
    assert _matches(Level.STUDY, StudyInstanceUID="1.2,1.3") == [
        ("StudyInstanceUID", "uids", ("1.2", "1.3"))
    ]
    assert _matches(Level.SERIES, **{"00080060": "CT"}) == [("Modality", "equal", ("CT",))]


def test_return_keys_and_includefield() -> None:
    query, _ = parse_query(Level.STUDY, [("PatientName", ""), ("includefield", "00081030")], 100)
    assert query.matches == [] and query.include == {"PatientName", "StudyDescription"}
    query, _ = parse_query(Level.STUDY, [("includefield", "all")], 100)
    assert query.include_all


def test_limit_is_capped_and_reported() -> None:
    query, capped = parse_query(Level.STUDY, [("limit", "5000"), ("offset", "3")], 100)
    assert (query.limit, query.offset, capped) == (100, 3, True)


@pytest.mark.parametrize(
    ("level", "name", "value"),
    [
        (Level.STUDY, "StudyDate", "2020"),
        (Level.STUDY, "StudyDate", "20200230x"),
        (Level.STUDY, "Modality", "CT"),  # below the study level
        (Level.STUDY, "limit", "1" * 30),
        (Level.STUDY, "SeriesInstanceUID", "1.2"),
        (Level.SERIES, "SeriesNumber", "-1"),
        (Level.STUDY, "ModalitiesInStudy", "C\x00T"),
        (Level.STUDY, "NumberOfStudyRelatedInstances", "3"),
    ],
)
def test_refused(level: Level, name: str, value: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_query(level, [(name, value)], 100)
