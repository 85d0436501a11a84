"""Epistemic signal: MC-dropout SD of a tiny network trained here on a phantom, and its checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audit.audit_cases import shapes_case
from synthct.audit.epistemic import (
    epistemic_map,
    mc_dropout_epistemic,
    precomputed_epistemic,
)
from synthct.audit.errors import AuditInputError
from synthct.audit.pipeline import run_audit
from synthct.io import write_volume
from synthct.volume import MultiEchoMR, ScalarVolume


def _prepare(mr: MultiEchoMR) -> torch.Tensor:
    data = np.asarray(mr.array, dtype=np.float32)
    return torch.from_numpy(data / np.float32(np.percentile(data, 99)))[None]


def _network(p: float) -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Dropout(p), nn.Conv3d(4, 1, 1)
    )


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, float, float]:
    """A tiny MRI-to-CT network with dropout, trained on a lesion-free phantom."""
    torch.manual_seed(0)
    case = shapes_case(lesion=False, seed=3)
    crop = (slice(None), slice(None), slice(16, 48), slice(16, 56), slice(8, 24))
    x = _prepare(case.mr)[crop]  # the canal, bone, muscle and fat: 32 x 40 x 16 voxels
    y = torch.from_numpy(np.asarray(case.ct.array, dtype=np.float32) / 1000.0)[None, None]
    y = y[crop]
    net = _network(0.2)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    first = last = 0.0
    for step in range(60):
        optimiser.zero_grad()
        loss = torch.mean(torch.abs(net(x) - y))
        loss.backward()
        optimiser.step()
        first = float(loss.detach()) if step == 0 else first
        last = float(loss.detach())
    net.eval()
    return net, first, last


def test_mc_dropout_sd_of_a_trained_network(trained: tuple[nn.Module, float, float]) -> None:
    net, first, last = trained
    assert last < 0.5 * first  # it learned something
    case = shapes_case(lesion=True, seed=9)
    source = mc_dropout_epistemic(net, _prepare, passes=6, seed=1)
    sd = epistemic_map(source, case.mr)
    assert sd.geometry.is_close(case.mr.geometry)
    assert float(sd.array.mean()) > 0.5  # HU
    again = epistemic_map(mc_dropout_epistemic(net, _prepare, passes=6, seed=1), case.mr)
    np.testing.assert_array_equal(sd.array, again.array)  # seeded
    assert not net.training and not any(m.training for m in net.modules())  # modes restored


def test_no_dropout_gives_zero_sd() -> None:
    case = shapes_case(lesion=False, seed=3)
    sd = epistemic_map(mc_dropout_epistemic(_network(0.0), _prepare, passes=3), case.mr)
    assert np.all(sd.array == 0)
    with pytest.raises(AuditInputError, match="at least 2 passes"):
        mc_dropout_epistemic(_network(0.0), _prepare, passes=1)


def test_audit_uses_the_epistemic_signal(trained: tuple[nn.Module, float, float]) -> None:
    net, _, _ = trained
    case = shapes_case(lesion=True, seed=9)
    result = run_audit(
        case.mr, case.failure, epistemic=mc_dropout_epistemic(net, _prepare, passes=4)
    )
    assert set(result.signals) == {"consistency", "epistemic"}
    assert result.z["epistemic"].array.shape == case.lesion.shape
    assert result.calibration.for_signal("epistemic").in_rule is False
    assert result.n_flags >= 1  # the consistency signal flags the omitted lesion
    assert "epistemic" in result.regions[0].signal_peaks


def test_bad_maps_are_refused(tmp_path: Path) -> None:
    case = shapes_case(lesion=False, seed=3)
    values = np.ones(case.lesion.shape, dtype=np.float32)

    def with_nan(mr: MultiEchoMR) -> ScalarVolume:
        out = ScalarVolume(values.copy(), mr.affine)
        out.array[0, 0, 0] = np.nan  # the map is built, then corrupted by a faulty model
        return out

    with pytest.raises(AuditInputError, match="NaN"):
        epistemic_map(with_nan, case.mr)
    with pytest.raises(AuditInputError, match="negative"):
        epistemic_map(lambda mr: ScalarVolume(-values, mr.affine), case.mr)
    far = case.mr.affine.copy()
    far[:3, 3] += 500.0
    with pytest.raises(AuditInputError, match="overlap"):
        epistemic_map(lambda mr: ScalarVolume(values, far), case.mr)


def test_precomputed_map_on_another_grid(tmp_path: Path) -> None:
    case = shapes_case(lesion=False, seed=3)
    coarse_affine = case.mr.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    sd = ScalarVolume(np.full((32, 32, 16), 7.0, dtype=np.float32), coarse_affine)
    path = write_volume(sd, tmp_path / "sct_epistemic_sd.nii.gz")
    loaded = epistemic_map(precomputed_epistemic(path), case.mr)
    assert loaded.geometry.is_close(case.mr.geometry)
    assert float(np.median(loaded.array)) == pytest.approx(7.0)
