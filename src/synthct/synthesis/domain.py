"""The training domain a model declares, and the check of an input MRI against it.

A model trained on 3 T spine phantoms with TE 1.15 / 2.30 ms at 1.5 mm has no business being
trusted on a 1.5 T brain at 0.5 mm, and it should say so. The training domain is gathered from
the training cases (echo count, echo times, TR, flip angle, field strengths, voxel sizes) and
from the configuration's card section (anatomy, pathologies, lesion types), and written to the
model card. Before synthesising, :func:`check_domain`

* raises :class:`~synthct.synthesis.errors.DomainMismatchError` when the echo count differs
  (the network cannot run);
* warns with :class:`~synthct.synthesis.errors.OutOfDomainWarning`, naming each mismatch, when
  the field strength is not one seen in training, an echo time, TR or flip angle lies outside
  the training range widened by a tolerance, or the voxel size is far from the training sizes.

A model that declares ``planned_spacing_mm`` (the spacing its training data were resampled to)
is run at that spacing: inference resamples the MRI to it and the sCT back
(:mod:`synthct.synthesis.inference_grid`), so the voxel size alone is no mismatch. An older
model without it is run at the input's own voxel size unless inference is asked to resample
to the middle of its training voxel sizes (``resample=True``; ``synthct synthesize
--resample``), which also takes the voxel size out of the check.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol

from synthct.settings import SettingsBase
from synthct.synthesis.config import CardConfig
from synthct.synthesis.errors import DomainMismatchError, OutOfDomainWarning
from synthct.volume import MRProtocol, MultiEchoMR


class MRHeaderLike(Protocol):
    """What a training domain reads of an MRI: a :class:`MultiEchoMR` or its header alone."""

    @property
    def n_echoes(self) -> int:
        """Input channels."""
        ...

    @property
    def protocol(self) -> MRProtocol | None:
        """Acquisition parameters."""
        ...

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        ...


#: Relative widening of the echo time, TR and flip angle ranges before a warning.
PROTOCOL_TOLERANCE = 0.15
#: Field strengths within this many tesla of a training field count as the same.
FIELD_TOLERANCE_T = 0.1
#: A voxel size more than this factor away from the training range is "far off".
VOXEL_SIZE_FACTOR = 1.5
#: The contrast a domain-randomised model declares (:mod:`synthct.synthesis.randomised_source`).
CONTRAST_AGNOSTIC = "contrast-agnostic (domain randomised)"

Range = tuple[float, float]


class TrainingDomain(SettingsBase):
    """What a model was trained on (JSON-ready; part of the model card).

    Sizes are sorted per voxel (smallest first), so an axial and a sagittal acquisition of the
    same voxel compare equal.
    """

    n_echoes: int
    echo_times_ms: tuple[Range, ...] | None = None
    repetition_time_ms: Range | None = None
    flip_angle_deg: Range | None = None
    field_strengths_t: tuple[float, ...] = ()
    voxel_size_mm: tuple[Range, Range, Range] | None = None
    planned_spacing_mm: tuple[float, float, float] | None = None
    anatomy: tuple[str, ...] = ()
    pathologies: tuple[str, ...] = ()
    lesion_types: tuple[str, ...] = ()
    n_cases: int = 0
    n_training_cases: int = 0
    n_validation_cases: int = 0
    n_cases_with_lesions: int = 0
    #: ``CONTRAST_AGNOSTIC`` for a model trained on random MR contrasts (domain randomisation:
    #: no protocol is checked); empty: the contrast of the training MRIs.
    contrast: str = ""
    #: Names of the input channels in order (``("T2w",)``, ``("water", "fat")``); empty for
    #: models made before channels were named (``n_echoes`` is always the channel count).
    channel_names: tuple[str, ...] = ()
    #: The array orientation every training case was brought into (``plan.orientation``,
    #: e.g. ``"LPS"``); inference brings each MRI into it. None: models trained on each case's
    #: own array layout, run on the input's.
    orientation: str | None = None


def _range(values: Sequence[float | None]) -> Range | None:
    known = [float(v) for v in values if v is not None]
    if len(known) != len(values) or not known:
        return None
    return (min(known), max(known))


def domain_from_volumes(
    volumes: Sequence[MRHeaderLike],
    card: CardConfig,
    *,
    n_training_cases: int,
    n_validation_cases: int,
    n_cases_with_lesions: int = 0,
    lesion_types: Sequence[str] = (),
    channel_names: Sequence[str] = (),
    planned_spacing_mm: Sequence[float] | None = None,
    voxel_sizes_mm: Sequence[Sequence[float]] | None = None,
    contrast: str = "",
    orientation: str | None = None,
) -> TrainingDomain:
    """The domain spanned by the training MRIs plus what the card configuration declares.

    ``lesion_types`` (from the manifest's training cases) are added to the card's.
    ``channel_names`` are the declared input channels (:attr:`NormalisationConfig.channels`),
    ``planned_spacing_mm`` the spacing the cases were resampled to for training, and
    ``voxel_sizes_mm`` the native voxel sizes of the training cases when ``volumes`` were
    resampled (default: the volumes' own spacings). ``contrast`` is
    :data:`CONTRAST_AGNOSTIC` for a domain-randomised model. ``orientation`` is the array
    orientation the cases were brought into (``plan.orientation``).
    """
    if not volumes:
        raise ValueError("a training domain needs at least one MRI")
    n_echoes = volumes[0].n_echoes
    protocols = [v.protocol for v in volumes]
    echo_times: tuple[Range, ...] | None = None
    if all(p is not None for p in protocols):
        per_echo = [[p.echo_times_ms[e] for p in protocols if p] for e in range(n_echoes)]
        ranges = [_range(v) for v in per_echo]
        echo_times = tuple(r for r in ranges if r is not None) or None
    fields = sorted(
        {round(p.field_strength_t, 3) for p in protocols if p and p.field_strength_t is not None}
    )
    native = voxel_sizes_mm if voxel_sizes_mm is not None else [v.spacing_mm for v in volumes]
    sizes = [sorted(float(x) for x in s) for s in native]
    voxel = tuple((min(s[a] for s in sizes), max(s[a] for s in sizes)) for a in range(3))
    return TrainingDomain(
        n_echoes=n_echoes,
        echo_times_ms=echo_times,
        repetition_time_ms=_range([p.repetition_time_ms if p else None for p in protocols]),
        flip_angle_deg=_range([p.flip_angle_deg if p else None for p in protocols]),
        field_strengths_t=tuple(fields),
        voxel_size_mm=voxel,  # type: ignore[arg-type]
        anatomy=card.anatomy,
        pathologies=card.pathologies,
        lesion_types=tuple(sorted(set(card.lesion_types) | set(lesion_types))),
        n_cases=len(volumes),
        n_training_cases=n_training_cases,
        n_validation_cases=n_validation_cases,
        n_cases_with_lesions=n_cases_with_lesions,
        channel_names=tuple(channel_names),
        contrast=contrast,
        orientation=orientation,
        planned_spacing_mm=(
            None if planned_spacing_mm is None else tuple(float(x) for x in planned_spacing_mm)  # type: ignore[arg-type]
        ),
    )


def _outside(value: float, bounds: Range, tolerance: float) -> bool:
    lo, hi = bounds
    return value < lo * (1 - tolerance) or value > hi * (1 + tolerance)


def domain_mismatches(
    domain: TrainingDomain, mr: MultiEchoMR, *, resampled: bool | None = None
) -> list[str]:
    """Every way ``mr`` lies outside ``domain`` (empty when inside).

    ``resampled`` says whether inference resamples the input to the model's spacing (then the
    voxel size is not a mismatch); ``None`` means it does exactly when the domain declares a
    ``planned_spacing_mm``.

    Raises
    ------
    DomainMismatchError
        When the echo count differs from the training echo count.
    """
    if mr.n_echoes != domain.n_echoes:
        raise DomainMismatchError(
            f"the MRI has {mr.n_echoes} echoes but the model was trained on {domain.n_echoes}",
            path=mr.source,
            fix=f"pass exactly {domain.n_echoes} echo magnitudes in training order, or use a "
            f"model trained on {mr.n_echoes}-echo data",
        )
    found: list[str] = []
    protocol = mr.protocol
    if domain.contrast == CONTRAST_AGNOSTIC:
        pass  # trained on random contrasts: no protocol to compare with
    elif protocol is None:
        found.append("the MRI has no protocol (echo times, field strength unknown)")
    else:
        if domain.field_strengths_t and protocol.field_strength_t is not None:
            b0 = protocol.field_strength_t
            if all(abs(b0 - f) > FIELD_TOLERANCE_T for f in domain.field_strengths_t):
                seen = ", ".join(f"{f:g}" for f in domain.field_strengths_t)
                found.append(f"field strength {b0:g} T (trained on {seen} T)")
        if domain.echo_times_ms is not None:
            for e, (te, bounds) in enumerate(
                zip(protocol.echo_times_ms, domain.echo_times_ms, strict=False)
            ):
                if _outside(te, bounds, PROTOCOL_TOLERANCE):
                    found.append(
                        f"echo {e + 1} TE {te:g} ms (trained on {bounds[0]:g}-{bounds[1]:g} ms)"
                    )
        checks: tuple[tuple[str, float | None, Range | None, str], ...] = (
            ("TR", protocol.repetition_time_ms, domain.repetition_time_ms, "ms"),
            ("flip angle", protocol.flip_angle_deg, domain.flip_angle_deg, "deg"),
        )
        for name, value, limits, unit in checks:
            if value is not None and limits is not None and _outside(value, limits, 0.25):
                found.append(
                    f"{name} {value:g} {unit} (trained on {limits[0]:g}-{limits[1]:g} {unit})"
                )
    if resampled is None:
        resampled = domain.planned_spacing_mm is not None
    if domain.voxel_size_mm is not None and not resampled:
        size = sorted(mr.spacing_mm)
        far = any(
            s < lo / VOXEL_SIZE_FACTOR or s > hi * VOXEL_SIZE_FACTOR
            for s, (lo, hi) in zip(size, domain.voxel_size_mm, strict=True)
        )
        if far:
            trained = " x ".join(f"{lo:g}-{hi:g}" for lo, hi in domain.voxel_size_mm)
            found.append(
                f"voxel size {' x '.join(f'{s:.3g}' for s in size)} mm (trained on "
                f"{trained} mm, sorted)"
            )
    return found


def check_domain(
    domain: TrainingDomain,
    mr: MultiEchoMR,
    *,
    model_name: str = "model",
    resampled: bool | None = None,
) -> list[str]:
    """Raise on an echo-count mismatch; warn (:class:`OutOfDomainWarning`) on the others.

    ``resampled`` as in :func:`domain_mismatches`.

    Returns
    -------
    list of str
        The mismatches found (also the warning's text).
    """
    found = domain_mismatches(domain, mr, resampled=resampled)
    if found:
        warnings.warn(
            f"{mr.source or 'the MRI'} is outside the training domain of {model_name}: "
            + "; ".join(found)
            + ". The sCT may be wrong there; check it against the model card.",
            OutOfDomainWarning,
            stacklevel=3,
        )
    return found


def domain_summary(domain: TrainingDomain) -> dict[str, Any]:
    """The domain as a JSON-ready dictionary."""
    return domain.model_dump(mode="json")
