"""MRI protocol presets: the paper's grid and echo times, validation of bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from synthct.phantom.model import PhantomParameterError
from synthct.phantom.protocols import (
    FAST_3T,
    PAPER_1P5T,
    PAPER_3T,
    PRESETS,
    SpgrProtocol,
    get_preset,
)
from synthct.volume import MultiEchoMR


def test_paper_presets_follow_the_methods() -> None:
    assert PAPER_3T.shape == (338, 338, 100)
    assert PAPER_3T.repetition_time_ms == 7.0
    assert PAPER_3T.echo_times_ms == (1.15, 2.30)
    assert PAPER_1P5T.echo_times_ms == (2.30, 4.61)
    # The paper's ranges: TE1 1.1-2.1 ms, TE2 2.2-4.2 ms (4.61 ms is 1.5 T in-phase, beyond).
    assert 1.1 <= PAPER_3T.echo_times_ms[0] <= 2.1 and 2.2 <= PAPER_3T.echo_times_ms[1] <= 4.2
    assert 10.0 <= PAPER_3T.flip_angle_deg <= 15.0
    assert FAST_3T.shape == (128, 128, 60)
    assert set(PRESETS) == {"paper_3t", "paper_1p5t", "fast_3t"}
    assert get_preset("paper_1p5t") is PAPER_1P5T


def test_geometry_is_centred_and_sagittal_by_default() -> None:
    centre = np.array([3.0, -20.0, 150.0])
    grid = PAPER_3T.geometry(center_lps_mm=centre)
    np.testing.assert_allclose(grid.spacing_mm, (0.74, 0.74, 0.9))
    middle = grid.index_to_lps((np.asarray(grid.shape) - 1) / 2)
    np.testing.assert_allclose(middle, centre, atol=1e-9)
    assert grid.orientation_code == "PSL"  # slab (90 mm) left-right
    np.testing.assert_allclose(grid.extent_mm, (250.12, 250.12, 90.0))
    assert PAPER_3T.geometry(orientation="axial").orientation_code == "LPS"
    with pytest.raises(PhantomParameterError, match="orientation"):
        PAPER_3T.geometry(orientation="oblique")  # type: ignore[arg-type]


def test_mr_protocol_travels_with_a_volume() -> None:
    protocol = PAPER_1P5T.to_mr_protocol()
    assert protocol.field_strength_t == 1.5 and protocol.flip_angle_deg == PAPER_1P5T.flip_angle_deg
    mr = MultiEchoMR(np.zeros((2, 2, 2, 2), np.float32), np.eye(4), protocol=protocol)
    assert mr.echo_times_ms == (2.30, 4.61)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"echo_times_ms": (1.15, 7.0)}, "TE < TR"),
        ({"echo_times_ms": ()}, "at least one echo"),
        ({"echo_times_ms": (2.3, 1.15)}, "increasing"),
        ({"echo_times_ms": (-1.0,)}, "TE < TR"),
        ({"repetition_time_ms": -7.0}, "repetition_time_ms"),
        ({"flip_angle_deg": 0.0}, "flip_angle_deg"),
        ({"flip_angle_deg": 120.0}, "flip_angle_deg"),
        ({"field_strength_t": 7.0}, "field_strength_t"),
        ({"voxel_size_mm": (0.74, 0.0, 0.9)}, "voxel_size_mm"),
        ({"field_of_view_mm": (250.0, 250.0)}, "field_of_view_mm"),
    ],
)
def test_bad_protocols_are_refused(change: dict[str, object], match: str) -> None:
    with pytest.raises(PhantomParameterError, match=match):
        PAPER_3T.with_changes(**change)


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(PhantomParameterError, match="paper_3t"):
        get_preset("paper_7t")
    assert isinstance(PAPER_3T.with_changes(flip_angle_deg=12.0), SpgrProtocol)
