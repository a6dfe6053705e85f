from pathlib import Path

import yaml

from dicomgate.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "config.example.yaml"


def test_example_config_is_valid_and_complete() -> None:
    load_settings(EXAMPLE)
    documented = set(yaml.safe_load(EXAMPLE.read_text()))
    assert documented == set(Settings.model_fields)
