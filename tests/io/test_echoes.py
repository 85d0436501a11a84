"""Stacking single-echo files into one multi-echo MRI (synthct.io.echoes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthct.errors import GeometryError, ReadError
from synthct.io import write_volume
from synthct.io.echoes import read_echoes
from synthct.volume import MRProtocol, MultiEchoMR

AFFINE = np.diag([0.8, 0.8, 1.2, 1.0])


def _echo(value: float, te: float, *, tr: float = 7.0, affine: np.ndarray = AFFINE) -> MultiEchoMR:
    data = np.full((1, 4, 5, 3), value, np.float32)
    return MultiEchoMR(data, affine, protocol=MRProtocol((te,), tr, 10.0, 3.0))


def test_separate_echo_files_stack_in_order_with_joined_echo_times(tmp_path: Path) -> None:
    a = write_volume(_echo(1.0, 1.15), tmp_path / "e1.nii.gz")
    b = write_volume(_echo(2.0, 2.30), tmp_path / "e2.nii.gz")
    mr = read_echoes([a, b])
    assert mr.array.shape == (2, 4, 5, 3)
    assert mr.array[0].max() == 1.0 and mr.array[1].min() == 2.0
    assert mr.protocol is not None
    assert mr.protocol.echo_times_ms == (1.15, 2.30)
    assert mr.protocol.repetition_time_ms == 7.0
    np.testing.assert_allclose(mr.affine, AFFINE)


def test_one_multi_echo_file_is_returned_as_is(tmp_path: Path) -> None:
    data = np.stack([np.full((4, 5, 3), v, np.float32) for v in (1.0, 2.0)])
    both = MultiEchoMR(data, AFFINE, protocol=MRProtocol((1.15, 2.3), 7.0, 10.0, 3.0))
    mr = read_echoes([write_volume(both, tmp_path / "both.nii.gz")])
    np.testing.assert_array_equal(mr.array, data)


def test_echoes_of_different_acquisitions_are_refused(tmp_path: Path) -> None:
    a = write_volume(_echo(1.0, 1.15), tmp_path / "e1.nii.gz")
    b = write_volume(_echo(2.0, 2.30, tr=12.0), tmp_path / "e2.nii.gz")
    with pytest.raises(ReadError, match="TR, flip angle") as err:
        read_echoes([a, b])
    assert "e2.nii.gz" in str(err.value)


def test_echoes_on_different_grids_are_refused(tmp_path: Path) -> None:
    a = write_volume(_echo(1.0, 1.15), tmp_path / "e1.nii.gz")
    shifted = AFFINE.copy()
    shifted[0, 3] = 5.0
    b = write_volume(_echo(2.0, 2.30, affine=shifted), tmp_path / "e2.nii.gz")
    with pytest.raises(GeometryError):
        read_echoes([a, b])


def test_no_files_is_an_error() -> None:
    with pytest.raises(ReadError, match="no MRI echo files"):
        read_echoes([])
