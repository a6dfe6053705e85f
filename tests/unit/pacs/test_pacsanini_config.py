"""pacsanini configuration files read as they are, and their resources CSV."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from dicomgate.dicom.query import QueryLevel
from dicomgate.errors import ConfigError, InvalidInputError
from dicomgate.sources.pacs.pacsanini import load_config, read_resources, write_resources

# The example of pacsanini's documentation, unquoted times and all.
PACSANINI_YAML = """\
move:
    start_time: 20:00
    end_time: 06:00
    query_level: STUDY
net:
    local_node:
        aetitle: mytitle
    called_node:
        aetitle: theirtitle
        ip: 127.0.0.1
        port: 11112
find:
    query_level: STUDY
    search_fields:
        - StudyInstanceUID
        - PatientID
    start_date: "20200101"
    end_date: "20201212"
    modality: CT
storage:
    resources: my/resources.csv
    directory: my/dicom/dir
    sort_by: PATIENT
tags:
    - tag_name: PatientName
      callback: str
    - tag_name: StudyDate
      tag_alias: study_date
      callback: pacsanini.convert:str2datetime
    - tag_name: Laterality
      default_val: U
      callback: str
    - tag_name: StudyInstanceUID
    - tag_name: SOPInstanceUID
"""


def test_documented_yaml_example(tmp_path: Path) -> None:
    path = tmp_path / "pacsaninirc.yaml"
    path.write_text(PACSANINI_YAML)
    cfg = load_config(path)
    assert cfg.move is not None and cfg.move.start_time == dt.time(20)
    assert cfg.move.end_time == dt.time(6)
    windows = cfg.move.windows()
    assert len(windows) == 1 and windows[0].start > windows[0].end
    assert cfg.net is not None and cfg.net.dest_node == cfg.net.local_node
    assert cfg.find is not None and cfg.find.date_range() == "20200101-20201212"
    assert cfg.storage is not None and cfg.storage.sort_by == "PATIENT"
    assert cfg.tags is not None and len(cfg.tags) == 5
    node = cfg.called_remote()
    assert (node.ae_title, node.port, node.move_destination) == ("theirtitle", 11112, "mytitle")


def test_json_is_the_same(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "conf.json"
    data = yaml.safe_load(PACSANINI_YAML)
    data["move"]["start_time"], data["move"]["end_time"] = "20:00", "06:00"
    path.write_text(json.dumps(data))
    cfg = load_config(path)
    assert cfg.move is not None and cfg.move.start_time == dt.time(20)


def test_equal_times_mean_no_window(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('move: {start_time: "10:00", end_time: "10:00"}\n')
    cfg = load_config(path)
    assert cfg.move is not None and cfg.move.windows() == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("move: {start_time: '20:00'}\n", "start_time and end_time"),
        ("net: {local_node: {aetitle: a}, called_node: {aetitle: b}}\n", "ip and port"),
        ("find: {start_date: '20200101', end_date: '20190101'}\n", "before"),
        ("find: {query_level: SERIES, start_date: '20200101'}\n", "query_level"),
        ("storage: {resources: r.csv, sort_by: SERIES}\n", "sort_by"),
        ("move: [1, 2\n", "not valid YAML"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_resources_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "resources.csv"
    rows = [
        {"StudyInstanceUID": "1.2.3", "PatientID": "P1", "Modality": "CT"},
        {"StudyInstanceUID": "1.2.3", "PatientID": "P1", "Modality": "CT"},
        {"StudyInstanceUID": "1.2.4", "PatientID": "P2", "Modality": "MR"},
    ]
    write_resources(path, ["StudyInstanceUID", "PatientID"], rows)
    header = path.read_text().splitlines()[0]
    assert header == "Modality,PatientName,StudyDate,StudyInstanceUID,PatientID"
    assert read_resources(path, QueryLevel.STUDY) == ["1.2.3", "1.2.4"]
    assert read_resources(path, QueryLevel.PATIENT) == ["P1", "P2"]


def test_single_column_resources(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("uid\n1.2.3\n\n1.2.5\n")
    assert read_resources(path, QueryLevel.STUDY) == ["1.2.3", "1.2.5"]


def test_resources_without_the_needed_column(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidInputError, match="StudyInstanceUID"):
        read_resources(path, QueryLevel.STUDY)
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_resources(path, QueryLevel.STUDY)
