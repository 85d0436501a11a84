"""The command line: `synthct info` on real data, JSON output, errors and a light start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from synthct.cli import app

runner = CliRunner()


def test_info_on_real_nifti_ct_matches_simpleitk(totalseg: Path) -> None:
    path = totalseg / "example_ct.nii.gz"
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    reference = sitk.ReadImage(str(path))
    assert summary["kind"] == "ct"
    assert summary["shape"] == list(reference.GetSize())
    np.testing.assert_allclose(summary["spacing_mm"], reference.GetSpacing())
    np.testing.assert_allclose(summary["origin_lps_mm"], reference.GetOrigin())
    np.testing.assert_allclose(np.ravel(summary["direction_lps"]), reference.GetDirection())
    assert summary["value_range"] == [-1207.0, 3382.0]
    assert summary["unit"] == "HU"


def test_info_table_names_kind_orientation_and_hu(totalseg: Path) -> None:
    result = runner.invoke(app, ["info", str(totalseg / "example_ct_sm.nii.gz")])
    assert result.exit_code == 0, result.output
    for expected in ("ct", "122 x 101 x 30", "3 x 3 x 3 mm", "RAS", "-1100 .. 1207 HU"):
        assert expected in result.stdout


def test_info_reports_label_maps(totalseg: Path) -> None:
    result = runner.invoke(app, ["info", str(totalseg / "example_seg.nii.gz"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "label"
    assert {30, 31, 32} <= set(summary["labels"])


def test_bad_input_exits_2_with_file_and_fix(totalseg: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "missing.nii.gz")])
    assert result.exit_code == 2
    assert "missing.nii.gz" in result.stderr
    result = runner.invoke(app, ["info", str(totalseg / "example_mr_sm.nii.gz"), "--kind", "ct"])
    assert result.exit_code == 2
    assert "Hounsfield" in result.stderr and "Fix:" in result.stderr
    result = runner.invoke(app, ["info", str(totalseg / "example_ct.nii.gz"), "--kind", "pet"])
    assert result.exit_code == 2
    assert "unknown kind 'pet'" in result.stderr


def test_cli_import_stays_light() -> None:
    """`synthct --help` must not pay for numpy, SimpleITK or torch (they load inside commands)."""
    code = (
        "import sys, synthct.cli\n"
        "heavy = [m for m in ('numpy', 'SimpleITK', 'torch', 'scipy', 'pydicom') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("args", [["--help"], ["info", "--help"]])
def test_help_works(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_info_on_real_dicom_series_matches_simpleitk(totalseg: Path) -> None:
    folder = totalseg / "example_ct_dicom"
    result = runner.invoke(app, ["info", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reference = reader.Execute()
    assert summary["kind"] == "ct"
    assert summary["shape"] == list(reference.GetSize())
    np.testing.assert_allclose(summary["spacing_mm"], reference.GetSpacing())
    np.testing.assert_allclose(summary["origin_lps_mm"], reference.GetOrigin())
    np.testing.assert_allclose(np.ravel(summary["direction_lps"]), reference.GetDirection())
    array = sitk.GetArrayViewFromImage(reference)
    assert summary["value_range"] == [float(array.min()), float(array.max())]


def test_info_prints_echo_times_of_multi_echo_dicom(tmp_path: Path) -> None:
    from synthct.io import write_volume
    from synthct.volume import MRProtocol, MultiEchoMR

    protocol = MRProtocol(
        (1.15, 2.3), repetition_time_ms=7.0, flip_angle_deg=10.0, field_strength_t=3.0
    )
    data = np.stack([np.full((4, 5, 6), 100, np.uint16), np.full((4, 5, 6), 80, np.uint16)])
    write_volume(MultiEchoMR(data, np.eye(4), protocol=protocol), tmp_path / "mr")
    result = runner.invoke(app, ["info", str(tmp_path / "mr")])
    assert result.exit_code == 0, result.output
    for expected in ("mr", "2 x 4 x 5 x 6", "1.15, 2.3 ms", "TR", "7 ms", "3 T"):
        assert expected in result.stdout
