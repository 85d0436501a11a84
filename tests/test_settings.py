"""One settings base and one YAML reader; ``synthct validate --config FILE``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synthct.cli import app
from synthct.errors import SynthctError
from synthct.imaging.alignment import RegistrationSettings
from synthct.io import write_volume
from synthct.phantom.cohort import CohortSpec
from synthct.settings import SettingsBase, read_yaml_mapping
from synthct.synthesis.config import SynthesisConfig
from synthct.validation.case import ValidationSettings
from synthct.volume import CTVolume


def test_every_settings_class_derives_from_the_base() -> None:
    for cls in (ValidationSettings, RegistrationSettings, CohortSpec, SynthesisConfig):
        assert issubclass(cls, SettingsBase), cls
        with pytest.raises(ValueError, match="not_a_key"):
            cls.model_validate({"not_a_key": 1})


def test_settings_from_yaml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "validation.yaml"
    path.write_text(
        "alignment: warn\nbody_threshold_hu: -300\nlesion:\n  shell_outer_mm: 6.0\n", "utf-8"
    )
    settings = ValidationSettings.from_yaml(path)
    assert settings.alignment == "warn"
    assert settings.body_threshold_hu == -300.0
    assert settings.lesion.shell_outer_mm == 6.0
    assert settings.check_hu is True  # what the file leaves out keeps its default
    assert ValidationSettings.from_yaml(path, alignment="auto").alignment == "auto"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alignment: sideways\n", "alignment"),
        ("no_such_setting: 1\n", "no_such_setting"),
        ("[1, 2]\n", "must be a YAML mapping"),
        ("alignment: [\n", "not valid YAML"),
    ],
)
def test_bad_settings_files_name_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(SynthctError, match=message) as err:
        ValidationSettings.from_yaml(path)
    assert "bad.yaml" in str(err.value)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SynthctError, match="cannot read the settings file"):
        read_yaml_mapping(tmp_path / "nowhere.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("", "utf-8")
    assert read_yaml_mapping(empty) == {}
    assert ValidationSettings.from_yaml(empty) == ValidationSettings()


def test_validate_reads_its_settings_from_config(tmp_path: Path) -> None:
    array = np.full((12, 10, 8), -1000, np.int16)
    array[3:9, 2:8, :] = 40
    ct = write_volume(CTVolume(array, np.diag([1.5, 1.5, 2.0, 1.0])), tmp_path / "ct.nii.gz")
    config = tmp_path / "validation.yaml"
    config.write_text("alignment: warn\nbody_threshold_hu: -300\n", "utf-8")
    args = ["validate", "--ct", str(ct), "--sct", str(ct), "--workers", "0", "--no-report"]

    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "a" / "settings.json").read_text("utf-8"))["settings"]
    assert written["alignment"] == "warn" and written["body_threshold_hu"] == -300.0

    # an option given on the command line replaces the file's key; the others stay
    result = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "b"), "--config", str(config), "--align", "auto"]
    )
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "b" / "settings.json").read_text("utf-8"))["settings"]
    assert written["alignment"] == "auto" and written["body_threshold_hu"] == -300.0

    bad = tmp_path / "bad.yaml"
    bad.write_text("lesion:\n  no_such_rule: 1\n", "utf-8")
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c"), "--config", str(bad)])
    assert result.exit_code == 2 and "no_such_rule" in result.output
    assert not (tmp_path / "c").exists()
