"""`synthct audit` on files: outputs, protocol options and bad input (nothing half-written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audit.audit_cases import shapes_case
from synthct.cli import app
from synthct.io import write_volume
from synthct.volume import MRProtocol, MultiEchoMR, SyntheticCT

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Echo files with and without a protocol, the failure sCT, a far sCT and a NaN sCT."""
    folder = tmp_path_factory.mktemp("inputs")
    case = shapes_case(lesion=True)
    protocol = case.mr.protocol
    assert protocol is not None
    paths: dict[str, Path] = {}
    for e in range(2):
        one = MultiEchoMR(
            case.mr.array[e : e + 1],
            case.mr.affine,
            protocol=MRProtocol((protocol.echo_times_ms[e],), 7.0, 10.0, 3.0),
        )
        paths[f"echo{e}"] = write_volume(one, folder / f"echo{e + 1}.nii.gz")
        bare = MultiEchoMR(case.mr.array[e : e + 1], case.mr.affine)
        paths[f"bare{e}"] = write_volume(bare, folder / f"bare{e + 1}.nii.gz")
    paths["sct"] = write_volume(case.failure, folder / "sct.nii.gz")
    far = case.failure.affine.copy()
    far[:3, 3] += 300.0
    paths["far"] = write_volume(SyntheticCT(case.failure.array, far), folder / "far.nii.gz")
    import nibabel as nib

    image = nib.load(paths["sct"])
    data = np.asarray(image.dataobj, dtype=np.float32)
    data[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine), folder / "nan.nii.gz")
    paths["nan"] = folder / "nan.nii.gz"
    return paths


def _args(files: dict[str, Path], out: Path, *extra: str, mri: str = "echo") -> list[str]:
    return [
        "audit",
        "--mri",
        str(files[f"{mri}0"]),
        "--mri",
        str(files[f"{mri}1"]),
        "--sct",
        str(files["sct"]),
        "--out",
        str(out),
        *extra,
    ]


def test_audit_writes_the_report(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "audit"
    # the default calibration, MRI consistency only (without it, the shipped audit model)
    result = runner.invoke(app, _args(files, out, "--no-audit-model"))
    assert result.exit_code == 0, result.output
    assert "1 flagged region" in result.output
    report = json.loads((out / "audit.json").read_text())
    assert report["n_flagged_regions"] == 1
    assert report["mri"]["protocol"]["echo_times_ms"] == [1.15, 2.3]
    assert (out / "report.html").is_file() and (out / "figures" / "region-001.png").is_file()
    assert (out / "signals" / "consistency.nii.gz").is_file()


@pytest.mark.filterwarnings("ignore::synthct.synthesis.errors.OutOfDomainWarning")
def test_audit_uses_the_shipped_audit_model_by_default(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from synthct.audit.combine import DEFAULT_CONSISTENCY_THRESHOLD
    from synthct.audit.model import shipped_audit_model_path

    out = tmp_path / "default-model"
    # this 1.5 mm block phantom lies outside the shipped calibration's domain (0.74-0.9 mm
    # phantoms): by default nothing is audited; the shipped thresholds are what is tested here
    refused = runner.invoke(app, _args(files, tmp_path / "refused", "--no-reference"))
    assert refused.exit_code == 0 and "not audited" in refused.output
    result = runner.invoke(
        app, _args(files, out, "--no-reference", "--no-figures", "--no-domain-check")
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "audit.json").read_text())
    shipped = json.loads((shipped_audit_model_path() / "calibration.json").read_text())
    # the shipped calibration's thresholds, not the defaults
    assert (
        report["calibration"]["signals"]["consistency"]["threshold"]
        == (shipped["signals"]["consistency"]["threshold"])
    )
    assert shipped["signals"]["consistency"]["threshold"] != DEFAULT_CONSISTENCY_THRESHOLD
    assert report["signals_used"] == ["consistency"]  # novelty is outside the shipped rule
    both = runner.invoke(app, _args(files, tmp_path / "both", "--no-audit-model", "--novelty", "x"))
    assert both.exit_code == 2 and "--no-audit-model" in both.output


def test_audit_with_the_shipped_reference_model(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "audit-ref"
    # a 1.5 T protocol: outside the reference model's training domain and the shipped
    # calibration's (the model runs at its planned spacing, so the voxel size is none of it);
    # computed anyway (--no-domain-check) to test the report
    protocol = ["--echo-times", "1.15,2.3", "--tr", "7", "--flip-angle", "10"]
    result = runner.invoke(
        app,
        _args(
            files, out, "--reference-model", "lesion_aware", "--no-figures", "--no-domain-check",
            *protocol, "--field-strength", "1.5", mri="bare",
        ),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "audit.json").read_text())
    assert report["reference"]["model"] == "lesion_aware"
    assert report["reference"]["same_as_audited_sct"] is False
    assert any("field strength 1.5 T" in w for w in report["reference"]["out_of_domain"])
    assert not any("voxel size" in w for w in report["reference"]["out_of_domain"])
    assert "reference model is outside its training domain" in (out / "report.html").read_text()
    assert "reference" in report["signals_used"]
    assert (out / "signals" / "reference.nii.gz").is_file()
    assert report["files"]["reference_sct"] == "reference_sct.nii.gz"
    assert (out / "reference_sct.nii.gz").is_file()
    missing = runner.invoke(
        app, _args(files, tmp_path / "bad-ref", "--reference-model", str(tmp_path / "nope"))
    )
    assert missing.exit_code != 0 and "nope" in missing.output
    assert not (tmp_path / "bad-ref").exists()


def test_missing_protocol_and_the_options_that_supply_it(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "bare"
    result = runner.invoke(app, _args(files, out, mri="bare"))
    assert result.exit_code == 2
    for option in ("--echo-times", "--tr", "--flip-angle", "--field-strength"):
        assert option in result.output
    assert not out.exists()  # nothing half-written
    assert not list(tmp_path.glob(".partial-*"))
    filled = _args(
        files,
        out,
        "--echo-times",
        "1.15,2.3",
        "--tr",
        "7",
        "--flip-angle",
        "10",
        "--field-strength",
        "3",
        "--no-figures",
        "--no-audit-model",
        mri="bare",
    )
    result = runner.invoke(app, filled)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "audit.json").read_text())["n_flagged_regions"] == 1
    assert not (out / "figures").exists()


def test_bad_inputs_fail_cleanly(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bad"
    args = _args(files, out)
    far = [*args[:-4], "--sct", str(files["far"]), "--out", str(out)]
    result = runner.invoke(app, far)
    assert result.exit_code == 2
    assert "do not share a frame" in result.output and "MRI:" in result.output
    nan = [*args[:-4], "--sct", str(files["nan"]), "--out", str(out)]
    result = runner.invoke(app, nan)
    assert result.exit_code == 2
    assert "NaN" in result.output
    result = runner.invoke(app, [*args, "--echo-times", "1.15,x"])
    assert result.exit_code == 2 and "--echo-times" in result.output
    assert not out.exists()
    out.mkdir()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "already exists" in result.output
    assert list(out.iterdir()) == []


def test_outside_the_calibrated_domain_nothing_is_audited(
    files: dict[str, Path], tmp_path: Path
) -> None:
    import dataclasses

    from synthct.audit.combine import DEFAULT_CALIBRATION
    from synthct.audit.domain import AuditDomain

    # a calibration made at 1.5 T; the echo files are 3 T
    domain = AuditDomain((1.5,), (7.0, 7.0), (10.0, 10.0), ((2.3, 4.61),), (1.5, 1.5), ("classic",))
    cal = dataclasses.replace(DEFAULT_CALIBRATION, info={"domain": domain.to_dict()})
    cal_path = cal.save(tmp_path / "calibration.json")
    args = ("--no-audit-model", "--calibration", str(cal_path))
    result = runner.invoke(app, _args(files, tmp_path / "refused", *args))
    assert result.exit_code == 0, result.output
    assert "signal consistency refused" in result.output and "not audited" in result.output
    report = json.loads((tmp_path / "refused" / "audit.json").read_text())
    assert report["n_flagged_regions"] == 0 and not report["domain"]["audited"]
    assert "field strength 3 T" in report["domain"]["departures"]["field_strength_t"]
    # --no-domain-check computes the signal anyway: the omitted lesion is flagged
    result = runner.invoke(app, _args(files, tmp_path / "forced", *args, "--no-domain-check"))
    assert result.exit_code == 0, result.output
    assert "1 flagged region" in result.output
