from __future__ import annotations

from pathlib import Path

import pytest

from dicomgate.deid.config import IdentityCheck, PseudonymScheme
from dicomgate.deid.profile import BirthDateRule, DateMode
from dicomgate.deid.table import Option
from dicomgate.errors import ConfigError
from dicomgate.settings import load_settings


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_project_deid_block_is_loaded(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """
projects:
  - id: CLINIC
  - id: LUNG
    deid:
      profile: {name: lung, options: [clean_descriptors], dates: shift,
                birth_date: first_day_of_year,
                burned_in: {allow: false, modalities: [US]},
                pixel_masks: [{manufacturer: ACME, model: E1, rows: 480, columns: 640,
                               rectangles: [{x: 0, y: 0, width: 640, height: 40}]}]}
      pseudonym: {scheme: keyed, prefix: "LUNG-", length: 12}
      identity_check: off
deid: {identified_project: CLINIC, date_offset_range: [-100, 100]}
""",
    )
    settings = load_settings(path)
    clinic, lung = settings.projects
    assert clinic.deid is None
    assert lung.deid is not None
    profile = lung.deid.effective_profile
    assert profile.options == {Option.CLEAN_DESCRIPTORS}
    assert (profile.dates, profile.birth_date) == (DateMode.SHIFT, BirthDateRule.FIRST_DAY_OF_YEAR)
    assert profile.pixel_masks[0].rectangles[0].width == 640
    assert lung.deid.pseudonym.scheme is PseudonymScheme.KEYED
    assert lung.deid.identity_check is IdentityCheck.OFF
    assert settings.deid.identified_project == "CLINIC"


def test_profile_file_and_mapping_file_are_read_at_load(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: from-file\noptions: [retain_uids]\n")
    (tmp_path / "m.csv").write_text("original,pseudonym\nPID1,S-1\nPID2,S-2\n")
    path = _config(
        tmp_path,
        f"""
projects:
  - id: P
    deid:
      profile_file: {tmp_path / "p.yaml"}
      pseudonym: {{scheme: mapping, mapping_file: {tmp_path / "m.csv"}}}
""",
    )
    deid = load_settings(path).projects[0].deid
    assert deid is not None
    assert deid.effective_profile.name == "from-file"
    assert deid.pseudonym.mapping == {"PID1": "S-1", "PID2": "S-2"}


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ("{profile: {dates: sometimes}}", "projects.0.deid.profile.dates"),
        ("{profile: {options: [retain_everything]}}", "projects.0.deid.profile.options"),
        ("{profile: {colour: red}}", "projects.0.deid.profile.colour"),
        (
            "{profile: {pixel_masks: [{manufacturer: A, model: B, rows: 10, columns: 10,"
            " rectangles: [{x: 5, y: 0, width: 10, height: 1}]}]}}",
            "projects.0.deid.profile.pixel_masks.0",
        ),
        ("{}", "profile: required"),
        ("{profile: {}, profile_file: x.yaml}", "profile, profile_file"),
        ("{profile_file: /nonexistent/p.yaml}", "profile_file: cannot read"),
        (
            "{profile: {}, pseudonym: {scheme: mapping, mapping_file: /nonexistent.csv}}",
            "mapping_file: cannot read",
        ),
        ("{profile: {}, pseudonym: {scheme: random}}", "projects.0.deid.pseudonym.scheme"),
        ("{profile: {}, pseudonym: {prefix: 'A^B'}}", "projects.0.deid.pseudonym.prefix"),
        ("{profile: {}, identity_check: maybe}", "projects.0.deid.identity_check"),
    ],
)
def test_bad_project_deid_names_the_key(tmp_path: Path, block: str, key: str) -> None:
    path = _config(tmp_path, f"projects:\n  - id: P\n    deid: {block}\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_settings(path)


def test_bad_profile_file_content_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("dates: never\n")
    path = _config(
        tmp_path, f"projects:\n  - id: P\n    deid: {{profile_file: {tmp_path / 'p.yaml'}}}\n"
    )
    with pytest.raises(ConfigError, match=r"profile_file: .*p\.yaml.*dates"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deid: {identified_project: NOPE}", "deid.identified_project: 'NOPE' is not"),
        (
            "projects: [{id: R, deid: {profile: {}}}]\ndeid: {identified_project: R}",
            "deid.identified_project: 'R' has a de-identification profile",
        ),
        ("deid: {date_offset_range: [5, 1]}", "deid.date_offset_range"),
        ("deid: {vault_key_env: 'not a name'}", "deid.vault_key_env"),
        ("deid: {vault_pth: x}", "deid.vault_pth: unknown option"),
    ],
)
def test_bad_site_deid_options_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_config(tmp_path, text + "\n"))
