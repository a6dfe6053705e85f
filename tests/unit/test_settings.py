from pathlib import Path

import pytest

from dicomgate.errors import ConfigError
from dicomgate.settings import DuplicatePolicy, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 8080
    assert settings.dicom_port == 11112
    assert settings.ae_title == "DICOMGATE"
    assert settings.data_dir == Path("./dicomgate-data")
    assert settings.effective_database_url.endswith("dicomgate-data/index.sqlite3")


def test_yaml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("http_port: 9000\ndicom_port: 4242\nduplicate_policy: replace\n")
    monkeypatch.setenv("DICOMGATE_DICOM_PORT", "5555")
    settings = load_settings(config)
    assert settings.http_port == 9000
    assert settings.dicom_port == 5555
    assert settings.duplicate_policy is DuplicatePolicy.REPLACE


def test_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMGATE_HTTP_PORT", "1234")
    assert load_settings(http_port=4321).http_port == 4321


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("htp_port: 1\n", "htp_port"),
        ("http_port: seventy\n", "http_port"),
        ("http_port: 70000\n", "http_port"),
        ("ae_title: THIS_TITLE_IS_TOO_LONG\n", "ae_title"),
        ("duplicate_policy: sometimes\n", "duplicate_policy"),
        ("projects:\n  - id: 'bad id'\n", "projects.0.id"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=key):
        load_settings(config)


@pytest.mark.parametrize("text", ["- a list\n", "key: [unclosed\n"])
def test_malformed_yaml(tmp_path: Path, text: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml"):
        load_settings(config)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")
