"""The audit model's one home: the shipped folder, its checksums, what a load returns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from synthct.audit.combine import DEFAULT_CALIBRATION
from synthct.audit.errors import AuditModelError
from synthct.audit.model import (
    SHIPPED_AUDIT_MODEL,
    audit_model_path,
    load_audit_model,
    shipped_audit_model_path,
)
from synthct.errors import ReadError, SynthctError


def test_the_shipped_model_loads_by_name_with_its_calibration() -> None:
    folder = shipped_audit_model_path()
    assert audit_model_path(SHIPPED_AUDIT_MODEL) == folder
    assert (folder / "checksums.json").is_file()
    model = load_audit_model(SHIPPED_AUDIT_MODEL)
    assert model.path == folder
    assert model.calibration is not None
    shipped = json.loads((folder / "calibration.json").read_text("utf-8"))
    for name, entry in shipped["signals"].items():
        assert model.calibration.for_signal(name).threshold == entry["threshold"]
    # novelty is outside the shipped rule: read only when every signal is asked for
    assert not shipped["signals"]["novelty"]["in_rule"]
    assert model.novelty is None
    every = load_audit_model(SHIPPED_AUDIT_MODEL, all_signals=True)
    assert every.novelty is not None
    assert model.learned is None  # the shipped folder holds no learned network


def test_no_model_is_the_default_calibration_or_the_one_given(tmp_path: Path) -> None:
    plain = load_audit_model(None)
    assert (plain.path, plain.calibration, plain.novelty, plain.learned) == (None,) * 4
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps(DEFAULT_CALIBRATION.to_dict()), "utf-8")
    given = load_audit_model(None, calibration=calibration)
    assert given.calibration is not None
    assert given.calibration.to_dict() == DEFAULT_CALIBRATION.to_dict()


@pytest.mark.parametrize("changed", ["calibration.json", "novelty.npz"])
def test_a_changed_file_is_refused_before_anything_is_read(tmp_path: Path, changed: str) -> None:
    copy = tmp_path / "audit"
    shutil.copytree(shipped_audit_model_path(), copy)
    with (copy / changed).open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(ReadError, match=changed):
        load_audit_model(copy)


def test_a_missing_folder_names_itself(tmp_path: Path) -> None:
    with pytest.raises(AuditModelError) as err:
        load_audit_model(tmp_path / "nowhere")
    assert "nowhere" in str(err.value)


def test_save_then_load_gives_the_same_model_and_checksums(tmp_path: Path) -> None:
    from synthct.audit.model import save_audit_model
    from synthct.io.checksums import CHECKSUM_FILE

    shipped = load_audit_model(SHIPPED_AUDIT_MODEL, all_signals=True)
    assert shipped.calibration is not None and shipped.novelty is not None
    folder = save_audit_model(
        tmp_path / "copy", calibration=shipped.calibration, novelty=shipped.novelty
    )
    listed = json.loads((folder / CHECKSUM_FILE).read_text("utf-8"))["files"]
    assert sorted(listed) == ["calibration.json", "novelty.npz"]
    again = load_audit_model(folder, all_signals=True)
    assert again.calibration is not None and again.novelty is not None
    assert again.calibration.to_dict() == shipped.calibration.to_dict()
    assert again.novelty.config() == shipped.novelty.config()
    with pytest.raises(SynthctError, match="exists"):
        save_audit_model(folder, calibration=shipped.calibration, novelty=shipped.novelty)
