"""Input novelty: a patch PPCA fitted on lesion-free MRI; an unseen lesion is novel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit.audit_cases import LESION_CENTRE_LPS_MM, ShapesCase, shapes_case
from synthct.audit.errors import AuditModelError
from synthct.audit.novelty import (
    NoveltyModel,
    fit_novelty_model,
    load_novelty_model,
    model_grid,
    normalised_echoes,
    novelty_map,
)
from synthct.resample import resample_to
from synthct.volume import MultiEchoMR


@pytest.fixture(scope="module")
def model() -> NoveltyModel:
    training = [shapes_case(lesion=False, seed=s).mr for s in (1, 2, 3)]
    return fit_novelty_model(training, n_components=8, patches_per_volume=5000, seed=0)


@pytest.fixture(scope="module")
def with_lesion() -> ShapesCase:
    return shapes_case(lesion=True, seed=9)


def test_model_shapes_and_config(model: NoveltyModel) -> None:
    assert model.n_echoes == 2
    assert model.n_components == 8
    assert model.components.shape == (8, 2 * 5**3)
    np.testing.assert_allclose(model.components @ model.components.T, np.eye(8), atol=1e-5)
    assert np.all(np.diff(model.variances) <= 0)  # sorted, largest first
    assert 0 < model.residual_variance < model.variances[-1]
    config = model.config()
    assert config["spacing_mm"] == [1.5, 1.5, 1.5]
    assert config["echo_times_ms"] == [1.15, 2.3]
    assert config["n_training_volumes"] == 3


def test_map_equals_the_ppca_likelihood_of_each_patch(
    model: NoveltyModel, with_lesion: ShapesCase
) -> None:
    """The convolutional map is the PPCA score of the patch centred on each voxel."""
    from synthct.synthesis.normalisation import body_mask_from_mri

    mr = with_lesion.mr
    values = novelty_map(model, mr).array
    body, _ = body_mask_from_mri(mr.array)
    data = normalised_echoes(mr, body)
    for index in [(32, 45, 16), (20, 20, 10), (40, 30, 20)]:
        i, j, k = index
        patch = data[:, i - 2 : i + 3, j - 2 : j + 3, k - 2 : k + 3].ravel().astype(np.float64)
        centred = patch - model.mean
        c = model.components.astype(np.float64) @ centred
        residual = centred @ centred - c @ c
        expected = (np.sum(c**2 / model.variances) + residual / model.residual_variance) / 250
        assert body[index]
        assert values[index] == pytest.approx(expected, rel=2e-3)


def test_unseen_lesion_is_more_novel_than_normal_anatomy(
    model: NoveltyModel, with_lesion: ShapesCase
) -> None:
    values = novelty_map(model, with_lesion.mr).array
    body = values > 0
    centre = with_lesion.mr.geometry.lps_to_index(LESION_CENTRE_LPS_MM).round().astype(int)
    normal = body.copy()
    normal[tuple(slice(c - 6, c + 7) for c in centre)] = False  # 9 mm around the lesion
    assert np.mean(values[with_lesion.lesion]) > 3 * np.percentile(values[normal], 99)
    assert np.median(values[normal]) == pytest.approx(1.0, abs=0.5)  # training-like patches


def test_save_and_load_give_the_same_map(
    model: NoveltyModel, with_lesion: ShapesCase, tmp_path: Path
) -> None:
    path = model.save(tmp_path / "novelty.npz")
    loaded = load_novelty_model(tmp_path)  # a folder holding novelty.npz
    assert loaded.config() == model.config()
    np.testing.assert_array_equal(
        novelty_map(loaded, with_lesion.mr).array, novelty_map(model, with_lesion.mr).array
    )
    assert not list(tmp_path.glob(".partial-*"))
    assert path.name == "novelty.npz"


def test_another_voxel_size_is_resampled(model: NoveltyModel, with_lesion: ShapesCase) -> None:
    fine_grid = model_grid(with_lesion.mr.geometry, (1.0, 1.0, 1.0))
    fine = resample_to(with_lesion.mr, fine_grid)
    values = novelty_map(model, fine)
    assert values.geometry.is_close(fine.geometry)
    lesion = resample_to(
        novelty_map(model, with_lesion.mr), fine_grid
    ).array  # same physical map, up to interpolation
    inside = lesion > 0
    assert np.corrcoef(values.array[inside], lesion[inside])[0, 1] > 0.8


def test_wrong_echo_count_and_bad_files_are_refused(
    model: NoveltyModel, with_lesion: ShapesCase, tmp_path: Path
) -> None:
    one_echo = MultiEchoMR(with_lesion.mr.array[:1], with_lesion.mr.affine)
    with pytest.raises(AuditModelError, match="2-echo"):
        novelty_map(model, one_echo)
    with pytest.raises(AuditModelError, match="no novelty model"):
        load_novelty_model(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros(3))
    with pytest.raises(AuditModelError, match="not a synthct novelty model"):
        load_novelty_model(bad)
