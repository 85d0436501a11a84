"""Sliding-window inference: window placement, Gaussian blending without seams, any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthct.synthesis.sliding_window import (
    count_windows,
    gaussian_weights,
    iter_windows,
    sliding_window_predict,
    window_starts,
)


def test_window_starts_cover_the_axis_and_end_at_its_last_voxel() -> None:
    assert window_starts(64, 32, 0.5) == [0, 16, 32]
    assert window_starts(70, 32, 0.5) == [0, 16, 32, 38]
    assert window_starts(70, 32, 0.0) == [0, 32, 38]
    assert window_starts(32, 32, 0.5) == [0]
    assert window_starts(20, 32, 0.5) == [-6]  # one centred window, padded
    assert count_windows((70, 20, 64), (32, 32, 32), 0.5) == 4 * 1 * 3
    assert len(list(iter_windows((70, 20, 64), (32, 32, 32), 0.5))) == 12


def test_gaussian_weights_peak_at_the_centre_and_stay_positive() -> None:
    w = gaussian_weights((8, 9, 16), 0.125)
    assert w.shape == (8, 9, 16) and w.dtype == np.float32
    assert w.max() == pytest.approx(1.0, abs=1e-6) and w.min() > 0
    assert w[:, 4, :].max() == w.max()  # odd axis: the middle voxel
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1], rtol=1e-6)


def _constant(value: float, n_out: int = 2) -> object:
    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], n_out, *x.shape[2:]), value)

    return predict


def _position_sensitive(x: torch.Tensor) -> torch.Tensor:
    """Returns echo 1 itself: any misplaced or mis-weighted window shows as a seam."""
    return x[:, :1] * 1.0


@pytest.mark.parametrize(
    "shape",
    [(20, 12, 9), (70, 45, 33), (32, 32, 32), (5, 80, 3)],
    ids=["smaller-than-patch", "non-multiple", "exact", "thin"],
)
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_blending_is_exact_for_any_volume_size(shape: tuple[int, int, int], overlap: float) -> None:
    rng = np.random.default_rng(0)
    inputs = rng.uniform(0, 2, size=(2, *shape)).astype(np.float32)
    constant = sliding_window_predict(
        inputs, _constant(0.0421), n_outputs=2, patch_size=(32, 32, 16), overlap=overlap
    )
    assert constant.shape == (2, *shape) and constant.dtype == np.float32
    np.testing.assert_allclose(constant, 0.0421, rtol=1e-5)
    echo = sliding_window_predict(
        inputs,
        _position_sensitive,
        n_outputs=1,
        patch_size=(32, 32, 16),
        overlap=overlap,
        batch_size=3,
    )
    np.testing.assert_allclose(echo[0], inputs[0], rtol=1e-5, atol=1e-6)


def test_progress_reports_every_window() -> None:
    calls: list[tuple[int, int]] = []
    sliding_window_predict(
        np.zeros((2, 40, 40, 40), np.float32),
        _constant(1.0),
        n_outputs=2,
        patch_size=(16, 16, 16),
        overlap=0.0,
        batch_size=4,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (27, 27) and len(calls) == 7


@pytest.mark.slow
def test_matches_monai_sliding_window_inference_on_a_real_network() -> None:
    from monai.inferers import sliding_window_inference

    from synthct.synthesis.config import NetworkConfig
    from synthct.synthesis.network import build_network

    torch.manual_seed(0)
    network = build_network(NetworkConfig(base_channels=4, levels=2), 2).eval()
    inputs = np.random.default_rng(0).uniform(0, 1, (2, 40, 36, 20)).astype(np.float32)
    ours = sliding_window_predict(
        inputs, network, n_outputs=2, patch_size=(16, 16, 16), overlap=0.5, batch_size=4
    )
    with torch.no_grad():
        theirs = sliding_window_inference(
            torch.from_numpy(inputs)[None],
            (16, 16, 16),
            4,
            network,
            overlap=0.5,
            mode="gaussian",
            sigma_scale=0.125,
        )[0].numpy()
    # Same windows and Gaussian weighting; the weights differ in detail (MONAI builds them by
    # filtering an impulse), so the blends agree closely but not bit for bit.
    assert np.abs(ours[0] - theirs[0]).mean() < 0.02 * np.abs(theirs[0]).mean() + 1e-4


def test_windows_without_a_needed_voxel_are_skipped_and_needed_voxels_unchanged() -> None:
    rng = np.random.default_rng(2)
    inputs = rng.uniform(0, 2, size=(2, 70, 45, 33)).astype(np.float32)
    needed = np.zeros((70, 45, 33), dtype=bool)
    needed[2:20, 3:15, 1:9] = True  # a corner: most windows hold none of it
    calls: list[int] = []

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x[:, :1] * 2.0 + x[:, 1:2]

    options = {"n_outputs": 1, "patch_size": (32, 32, 16), "overlap": 0.25, "batch_size": 1}
    full = sliding_window_predict(inputs, counting, **options)  # type: ignore[arg-type]
    n_full = sum(calls)
    calls.clear()
    part = sliding_window_predict(inputs, counting, needed=needed, **options)  # type: ignore[arg-type]
    assert n_full == count_windows((70, 45, 33), (32, 32, 16), 0.25) == 18
    assert sum(calls) == 2  # the two windows along k that hold the corner
    np.testing.assert_array_equal(part[0][needed], full[0][needed])
    assert np.isfinite(part).all() and part[0][40:].max() == 0.0  # never computed: 0
