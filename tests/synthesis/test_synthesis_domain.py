"""The training domain: built from the training MRIs, and each kind of mismatch."""

from __future__ import annotations

import numpy as np
import pytest

from synthct.geometry import affine_from_parameters
from synthct.synthesis.config import CardConfig
from synthct.synthesis.domain import check_domain, domain_from_volumes, domain_mismatches
from synthct.synthesis.errors import DomainMismatchError, OutOfDomainWarning
from synthct.volume import MRProtocol, MultiEchoMR


def _mr(
    tes: tuple[float, ...], b0: float | None = 3.0, spacing=(1.0, 1.0, 1.2), tr=7.0, flip=10.0
) -> MultiEchoMR:
    protocol = MRProtocol(tes, tr, flip, b0)
    return MultiEchoMR(
        np.ones((len(tes), 2, 2, 2)),
        affine_from_parameters(spacing),
        protocol=protocol,
        source="in.nii.gz",
    )


DOMAIN = domain_from_volumes(
    [_mr((1.1, 2.2)), _mr((1.3, 2.5), spacing=(1.2, 1.0, 0.9)), _mr((1.2, 2.4), b0=1.5)],
    CardConfig(pathologies=("none",)),
    n_training_cases=3,
    n_validation_cases=0,
)


def test_domain_spans_the_training_protocols() -> None:
    assert DOMAIN.n_echoes == 2 and DOMAIN.n_cases == 3
    assert DOMAIN.echo_times_ms == ((1.1, 1.3), (2.2, 2.5))
    assert DOMAIN.field_strengths_t == (1.5, 3.0)
    assert DOMAIN.voxel_size_mm == ((0.9, 1.0), (1.0, 1.0), (1.2, 1.2))
    assert DOMAIN.anatomy == ("spine",) and DOMAIN.pathologies == ("none",)


def test_inside_the_domain_nothing_is_reported() -> None:
    assert domain_mismatches(DOMAIN, _mr((1.2, 2.3), b0=1.5, spacing=(1.1, 1.0, 0.95))) == []


@pytest.mark.parametrize(
    ("mr", "expected"),
    [
        (_mr((1.2, 2.3), b0=7.0), "field strength 7 T (trained on 1.5, 3 T)"),
        (_mr((1.2, 4.6)), "echo 2 TE 4.6 ms (trained on 2.2-2.5 ms)"),
        (_mr((1.2, 2.3), tr=20.0), "TR 20 ms"),
        (_mr((1.2, 2.3), flip=25.0), "flip angle 25 deg"),
        (_mr((1.2, 2.3), spacing=(0.4, 0.4, 0.4)), "voxel size 0.4 x 0.4 x 0.4 mm"),
    ],
    ids=["field", "te", "tr", "flip", "voxel"],
)
def test_each_mismatch_is_named(mr: MultiEchoMR, expected: str) -> None:
    with pytest.warns(OutOfDomainWarning) as record:
        found = check_domain(DOMAIN, mr, model_name="m")
    assert found == [expected] or expected in " ".join(found)
    assert expected in str(record[0].message) and "in.nii.gz" in str(record[0].message)


def test_unknown_protocol_warns_and_echo_count_is_an_error() -> None:
    bare = MultiEchoMR(np.ones((2, 2, 2, 2)), np.eye(4))
    assert "no protocol" in domain_mismatches(DOMAIN, bare)[0]
    with pytest.raises(DomainMismatchError, match="3 echoes but the model was trained on 2"):
        domain_mismatches(DOMAIN, _mr((1.1, 2.2, 3.3)))
