"""Tag extraction: aliases, callbacks (builtin, pacsanini, module), defaults, nesting, lists."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from pydicom import Dataset
from pydicom.sequence import Sequence
from tests.conftest import PYDICOM_FILES

from dicomgate.access.extract import (
    Extractor,
    TagSpec,
    csv_lines,
    folder_datasets,
    parse_tag_list,
)
from dicomgate.access.extract_parquet import column_array, write_parquet
from dicomgate.errors import ConfigError, InvalidInputError


def _dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.StudyDate, ds.ImageLaterality = "DOE^JANE", "20240312", "R"
    ds.SeriesNumber = 7
    code = Dataset()
    code.CodeValue = "R-10224"
    ds.ViewCodeSequence = Sequence([code])
    return ds


def _specs(*items: dict[str, object]) -> list[TagSpec]:
    return [TagSpec.model_validate(item) for item in items]


def test_aliases_callbacks_defaults() -> None:
    extractor = Extractor(
        _specs(
            {"tag_name": "PatientName", "callback": "str"},
            {
                "tag_name": "StudyDate",
                "tag_alias": "study_date",
                "callback": "pacsanini.convert:str2datetime",
            },
            {"tag_name": "Laterality", "default_val": "U", "callback": "str"},
            {"tag_name": ["Laterality", "ImageLaterality"], "tag_alias": "side"},
            {"tag_name": "ViewCodeSequence.CodeValue", "tag_alias": "view"},
            {"tag_name": "SeriesNumber", "callback": "float"},
            {"tag_name": "AccessionNumber"},
            {"tag_name": "PatientID", "callback": "int", "default_val": 0},
        )
    )
    row = extractor.row(_dataset())
    assert row == {
        "PatientName": "DOE^JANE",
        "study_date": "2024-03-12T00:00:00",
        "Laterality": "U",
        "side": "R",
        "view": "R-10224",
        "SeriesNumber": 7.0,
        "AccessionNumber": "",
        "PatientID": 0,
    }


def test_failing_callback_keeps_the_raw_value() -> None:
    extractor = Extractor(_specs({"tag_name": "PatientName", "callback": "int"}))
    assert extractor.row(_dataset()) == {"PatientName": "DOE^JANE"}


def test_module_callbacks_only_when_allowed() -> None:
    specs = _specs({"tag_name": "PatientName", "callback": "os.path:basename"})
    assert Extractor(specs, allow_import=True).row(_dataset()) == {"PatientName": "DOE^JANE"}
    with pytest.raises(ConfigError, match="config files only"):
        Extractor(specs, allow_import=False)
    with pytest.raises(ConfigError, match="cannot be imported"):
        Extractor(_specs({"tag_name": "PatientName", "callback": "no.such:f"}), True)
    with pytest.raises(ConfigError, match="unknown"):
        Extractor(_specs({"tag_name": "PatientName", "callback": "eval"}))


def test_bad_specs() -> None:
    with pytest.raises(ValidationError, match="PatientNam"):
        TagSpec.model_validate({"tag_name": "PatientNam"})
    with pytest.raises(ValidationError):
        TagSpec.model_validate({"tag_name": []})
    with pytest.raises(ConfigError, match="same column"):
        Extractor(_specs({"tag_name": "PatientID"}, {"tag_name": "PatientID"}))


def test_csv_streams_header_then_rows() -> None:
    extractor = Extractor(_specs({"tag_name": "PatientName", "tag_alias": "name"}))
    chunks = list(csv_lines(extractor, [_dataset(), {"PatientName": "ROW^FROM^FIND"}]))
    assert chunks == ["name\n", "DOE^JANE\n", "ROW^FROM^FIND\n"]


def test_rest_tag_lists() -> None:
    specs = parse_tag_list("PatientID, StudyDate:date:str2datetime ,Modality:mod")
    assert [(s.tag_name, s.tag_alias, s.callback) for s in specs] == [
        (["PatientID"], "PatientID", None),
        (["StudyDate"], "date", "str2datetime"),
        (["Modality"], "mod", None),
    ]
    with pytest.raises(InvalidInputError):
        parse_tag_list(" , ")
    with pytest.raises(InvalidInputError, match="Bogus"):
        parse_tag_list("Bogus")


def test_folder_skips_what_is_not_dicom(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes((PYDICOM_FILES / "CT_small.dcm").read_bytes())
    (tmp_path / "notes.txt").write_text("not dicom")
    problems: list[tuple[Path, str]] = []
    found = list(folder_datasets(tmp_path, problems))
    assert len(found) == 1 and found[0].Modality == "CT"
    assert [p.name for p, _ in problems] == ["notes.txt"]


def test_parquet_columns_are_typed_and_empty_is_null(tmp_path: Path) -> None:
    specs = [
        TagSpec(tag_name="PatientID"),
        TagSpec(tag_name="InstanceNumber", callback="int"),
        TagSpec(tag_name="SliceThickness", callback="float"),
        TagSpec(tag_name="Laterality"),
    ]
    rows = [
        {"PatientID": "P1", "InstanceNumber": "1", "SliceThickness": "2", "Laterality": "L"},
        {"PatientID": "P2", "InstanceNumber": "2", "SliceThickness": "2.5", "Laterality": ""},
    ]
    path = tmp_path / "tags.parquet"
    assert write_parquet(Extractor(specs), rows, path) == 2
    table = pq.read_table(path)
    assert [str(t) for t in table.schema.types] == ["string", "int64", "double", "string"]
    assert table.to_pylist()[1] == {
        "PatientID": "P2", "InstanceNumber": 2, "SliceThickness": 2.5, "Laterality": None,
    }  # fmt: skip
    assert not path.with_name("tags.parquet.partial").exists()


def test_parquet_column_with_mixed_values_falls_back_to_text() -> None:
    assert column_array([1, "x", ""]).to_pylist() == ["1", "x", None]
    assert column_array([True, False]).type == pa.bool_()
    assert column_array(["", ""]).null_count == 2
