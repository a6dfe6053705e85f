import json
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from tests.conftest import PYDICOM_FILES

from dicomgate.dicom.dicom_json import file_to_json_text, find_value


def test_pixel_data_is_a_bulk_data_uri_and_values_are_as_stored() -> None:
    path = PYDICOM_FILES / "CT_small.dcm"
    model = json.loads(file_to_json_text(path, "{+base}/x/"))
    ds = pydicom.dcmread(path)
    assert model["7FE00010"] == {"vr": "OW", "BulkDataURI": "{+base}/x/7FE00010"}
    assert model["00100010"]["Value"] == [{"Alphabetic": str(ds.PatientName)}]
    assert model["00280030"]["Value"] == [float(v) for v in ds.PixelSpacing]
    assert not any(key.startswith("0002") for key in model)


def test_nested_large_values_get_their_tag_path(tmp_path: Path) -> None:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    item = Dataset()
    item.add_new(0x00420011, "OB", b"\x01" * 5000)  # Encapsulated Document
    ds.ContentSequence = Sequence([Dataset(), item])
    path = tmp_path / "nested.dcm"
    ds.save_as(path, enforce_file_format=True)
    model = json.loads(file_to_json_text(path, "P/"))
    nested = model["0040A730"]["Value"][1]["00420011"]
    assert nested == {"vr": "OB", "BulkDataURI": "P/0040A730/1/00420011"}
    assert find_value(pydicom.dcmread(path), "0040A730/1/00420011").value == b"\x01" * 5000


@pytest.mark.parametrize(
    "path", ["", "ZZZZZZZZ", "0040A730/9/00420011", "0040A730/x/1", "7FE00010/0"]
)
def test_bad_paths_name_nothing(path: str) -> None:
    with pytest.raises(KeyError):
        find_value(pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm"), path)
