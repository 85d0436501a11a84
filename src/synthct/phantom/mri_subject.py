"""Per-subject MR tissue parameters and the within-tissue texture amplitudes, with sources.

Two kinds of variability make simulated MRI look like a population rather than one cartoon:

* **between subjects**: each subject's T1, T2*, proton density and fat fraction of a tissue are
  drawn around the tissue table's value (:mod:`synthct.imaging.tissues`) with the
  between-subject coefficient of variation (CV) or SD of :data:`VARIABILITY`;
* **within a tissue**: a small, spatially correlated fluctuation of PD, T1 and fat fraction
  (the texture amplitudes of :data:`VARIABILITY`, used by :mod:`synthct.phantom.mri`).

T1, T2* and PD factors are log-normal with mean 1 and the stated CV (so the population mean is
the table's value and they stay positive); fat fractions are Beta distributed with the table's
mean and the stated SD (so they stay in 0..1). Draws are seeded per tissue
(:func:`synthct.phantom.model.rng_for` keyed by the tissue's label), so adding a tissue to the
table does not change the draws of the others. Tissues without an entry in
:data:`VARIABILITY` get :data:`DEFAULT_VARIABILITY`.

Vertebral marrow fat fraction rises with age (Kugel 2001; Griffith 2005); given an age, the
marrow of the procedural phantom (:data:`AGE_DEPENDENT_MARROW`) is centred on
:func:`marrow_fat_fraction_for_age` instead of the table value.

References (short form used in the source strings)
---------------------------------------------------
de Bazelaire 2004
    de Bazelaire CMJ et al. MR imaging relaxation times of abdominal and pelvic tissues
    measured in vivo at 3.0 T. Radiology 2004;230:652-659 (mean +- SD over volunteers).
Stanisz 2005
    Stanisz GJ et al. T1, T2 relaxation and magnetization transfer in tissue at 3T.
    Magn Reson Med 2005;54:507-512 (mean +- SD over samples).
Gold 2004
    Gold GE et al. Musculoskeletal MRI at 3.0 T: relaxation times and image contrast.
    AJR 2004;183:343-351.
Kugel 2001
    Kugel H et al. Age- and sex-specific differences in the 1H-spectrum of vertebral bone
    marrow. J Magn Reson Imaging 2001;13:263-268 (marrow fat rises with age).
Griffith 2005
    Griffith JF et al. Vertebral bone mineral density, marrow perfusion, and fat content in
    healthy men and men with osteoporosis. Radiology 2005;236:945-951 (L3 marrow fat
    50.5 +- 8.7 % in men with normal bone density, mean age ~ 70 years).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from synthct.imaging.labels import Tissue
from synthct.imaging.tissues import TISSUES, Relaxation
from synthct.phantom.model import PhantomParameterError, check_seed, rng_for

# Random stream id (see synthct.phantom.model.rng_for); the MRI renderer uses 3..9.
_STREAM_SUBJECT = 5
# Sub-streams: one per tissue, plus the adipose component shared by every fatty tissue.
_SHARED_FAT_KEY = 1000


@dataclass(frozen=True)
class TissueVariability:
    """How much one tissue's MR parameters vary between subjects and within the tissue.

    Attributes
    ----------
    t1_cv, t2star_cv, pd_cv : float
        Between-subject coefficients of variation of T1, T2* and proton density.
    fat_fraction_sd : float
        Between-subject SD of the fat fraction (absolute, 0..1); ignored for tissues whose
        table fat fraction is 0 or 1.
    texture_pd_cv, texture_t1_cv : float
        Within-tissue CV of the spatially correlated PD and T1 fluctuation.
    texture_fat_fraction_sd : float
        Within-tissue SD of the correlated fat-fraction fluctuation (absolute).
    source : str
        Where the values come from.
    """

    t1_cv: float
    t2star_cv: float
    pd_cv: float
    fat_fraction_sd: float
    texture_pd_cv: float
    texture_t1_cv: float
    texture_fat_fraction_sd: float
    source: str

    def __post_init__(self) -> None:
        for name in (
            "t1_cv",
            "t2star_cv",
            "pd_cv",
            "fat_fraction_sd",
            "texture_pd_cv",
            "texture_t1_cv",
            "texture_fat_fraction_sd",
        ):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0.0 <= value <= 0.5):
                raise PhantomParameterError(f"{name} must lie in 0..0.5, got {value}", path=name)


_TEXTURE_SRC = (
    "texture: assumption, a few percent at a few mm (fascicles, fat septa, marrow islands), "
    "below the between-subject spread so tissue classes stay separable"
)

#: Tissues without an entry in :data:`VARIABILITY` (e.g. tissues added to the table later).
DEFAULT_VARIABILITY = TissueVariability(
    t1_cv=0.08,
    t2star_cv=0.10,
    pd_cv=0.05,
    fat_fraction_sd=0.03,
    texture_pd_cv=0.03,
    texture_t1_cv=0.03,
    texture_fat_fraction_sd=0.0,
    source="assumption: T1 CV 8% (typical in vivo between-subject spread, cf. de Bazelaire "
    "2004 liver 809 +- 71 ms at 3 T), T2* 10%, PD 5%; " + _TEXTURE_SRC,
)

# fmt: off
#: Between-subject and within-tissue variability per tissue, each with its source.
VARIABILITY: dict[Tissue, TissueVariability] = {
    Tissue.AIR: TissueVariability(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        source="air has no MR signal; nothing to vary"),
    Tissue.SUBCUTANEOUS_FAT: TissueVariability(0.04, 0.10, 0.03, 0.02, 0.02, 0.02, 0.01,
        source="T1 CV 3.4-11%: de Bazelaire 2004 subcutaneous fat 382 +- 13 ms (3 T), "
        "343 +- 37 ms (1.5 T); 4% used; T2*, PD, fat fraction: assumption; " + _TEXTURE_SRC),
    Tissue.MUSCLE: TissueVariability(0.05, 0.12, 0.04, 0.02, 0.03, 0.03, 0.02,
        source="T1 CV 3.7-7%: de Bazelaire 2004 muscle 898 +- 33 ms (3 T), 856 +- 61 ms "
        "(1.5 T), Gold 2004; T2* 12%: assumption; paraspinal fat fraction SD 2 points: "
        "assumption (healthy adults, rising with age); " + _TEXTURE_SRC),
    Tissue.CORTICAL_BONE: TissueVariability(0.10, 0.15, 0.20, 0.0, 0.05, 0.0, 0.0,
        source="assumption (UTE spread, Du 2010); invisible at TE > 1 ms either way"),
    Tissue.CANCELLOUS_BONE: TissueVariability(0.08, 0.15, 0.05, 0.087, 0.04, 0.03, 0.06,
        source="fat fraction SD 8.7 points: Griffith 2005 (L3 marrow fat 50.5 +- 8.7 %); "
        "T1 8%, T2* 15% (trabecular density), PD 5%: assumption; texture fat fraction SD "
        "6 points: assumption (red/yellow marrow islands); " + _TEXTURE_SRC),
    Tissue.DISC: TissueVariability(0.12, 0.15, 0.08, 0.0, 0.04, 0.04, 0.0,
        source="assumption: disc hydration varies with age and degeneration; " + _TEXTURE_SRC),
    Tissue.CSF: TissueVariability(0.05, 0.10, 0.02, 0.0, 0.0, 0.0, 0.0,
        source="T1 CV 5%, PD 2%: assumption (CSF is nearly pure water); no texture"),
    Tissue.SPINAL_CORD: TissueVariability(0.05, 0.10, 0.03, 0.0, 0.02, 0.02, 0.0,
        source="T1 CV 4.7%: Stanisz 2005 spinal cord 993 +- 47 ms (3 T); T2*, PD: "
        "assumption; " + _TEXTURE_SRC),
    Tissue.EPIDURAL_FAT: TissueVariability(0.04, 0.10, 0.03, 0.05, 0.03, 0.02, 0.03,
        source="as subcutaneous fat (de Bazelaire 2004); fat fraction SD 5 points: "
        "assumption (venous plexus varies); " + _TEXTURE_SRC),
}
# fmt: on

#: Tissues whose fat fraction is centred on :func:`marrow_fat_fraction_for_age` when an age is
#: given (the procedural phantom's vertebral marrow; tissues added for marrow fat-fraction
#: bins keep their bin's value, which already comes from the image).
AGE_DEPENDENT_MARROW = frozenset({Tissue.CANCELLOUS_BONE})

#: Age (years) at which the tissue table's marrow fat fraction applies: the cohort of
#: Griffith 2005 (mean age ~ 70 years, 50.5 % fat) rounded down to the BRIEF's adult spine.
MARROW_REFERENCE_AGE_YEARS = 65.0
#: Rise of vertebral marrow fat fraction per year of age: Kugel 2001 (from ~ 0.25 in the
#: twenties to ~ 0.5 in the sixties, i.e. about 0.6 percentage points per year).
MARROW_FAT_SLOPE_PER_YEAR = 0.006
#: Between-subject SD of marrow fat fraction at a given age (Griffith 2005: +- 8.7 points).
MARROW_FAT_SD_AT_AGE = 0.087


def variability(tissue: Tissue) -> TissueVariability:
    """The variability entry of ``tissue`` (:data:`DEFAULT_VARIABILITY` when it has none)."""
    return VARIABILITY.get(Tissue(tissue), DEFAULT_VARIABILITY)


def marrow_fat_fraction_for_age(age_years: float, table_fat_fraction: float) -> float:
    """Mean vertebral marrow fat fraction at ``age_years`` (clipped to 0.05..0.95).

    ``table_fat_fraction`` at :data:`MARROW_REFERENCE_AGE_YEARS`, changing by
    :data:`MARROW_FAT_SLOPE_PER_YEAR` (Kugel 2001).
    """
    if not (np.isfinite(age_years) and 0.0 <= age_years <= 120.0):
        raise PhantomParameterError(
            f"age_years must lie in 0..120, got {age_years}", path="age_years"
        )
    shift = MARROW_FAT_SLOPE_PER_YEAR * (float(age_years) - MARROW_REFERENCE_AGE_YEARS)
    return float(np.clip(table_fat_fraction + shift, 0.05, 0.95))


@dataclass(frozen=True)
class SubjectTissue:
    """One subject's MR parameters of one tissue at one field strength."""

    proton_density: float
    fat_fraction: float
    relaxation: Relaxation


def _lognormal_factor(rng: np.random.Generator, cv: float) -> float:
    """A log-normal factor with mean 1 and coefficient of variation ``cv``."""
    if cv == 0.0:
        return 1.0
    sigma2 = float(np.log1p(cv * cv))
    return float(np.exp(rng.normal(-sigma2 / 2.0, np.sqrt(sigma2))))


def _beta_fraction(rng: np.random.Generator, mean: float, sd: float) -> float:
    """A Beta-distributed fraction with ``mean`` and ``sd`` (``mean`` when it cannot vary)."""
    if sd == 0.0 or mean <= 0.0 or mean >= 1.0:
        return float(mean)
    # The Beta SD cannot exceed sqrt(m (1 - m)); cap it just below for near-0/1 tissues.
    var = min(sd * sd, 0.9 * mean * (1.0 - mean))
    nu = mean * (1.0 - mean) / var - 1.0
    return float(rng.beta(mean * nu, (1.0 - mean) * nu))


def draw_subject_tissues(
    seed: int,
    field_strength_t: float,
    *,
    tissues: Iterable[Tissue] | None = None,
    age_years: float | None = None,
) -> dict[Tissue, SubjectTissue]:
    """One subject's T1, T2*, PD and fat fraction per tissue, drawn around the tissue table.

    Parameters
    ----------
    seed : int
        Subject seed; the same seed gives the same subject.
    field_strength_t : float
        Main field (T), for the table's relaxation times.
    tissues : iterable of Tissue, optional
        Tissues to draw (default: every tissue of the table).
    age_years : float, optional
        Subject age; centres the marrow fat fraction of :data:`AGE_DEPENDENT_MARROW` on
        :func:`marrow_fat_fraction_for_age` with SD :data:`MARROW_FAT_SD_AT_AGE`.

    Returns
    -------
    dict
        ``Tissue -> SubjectTissue``. The fat component's relaxation (adipose T1 and T2*) is one
        draw per subject shared by every tissue, since it is the same fat everywhere; tissues
        whose table T1 is the fat T1 (nearly pure fat) follow that draw for both.
    """
    check_seed(seed)
    fat_rng = rng_for(seed, _STREAM_SUBJECT, _SHARED_FAT_KEY)
    fat_var = variability(Tissue.SUBCUTANEOUS_FAT)
    fat_t1_factor = _lognormal_factor(fat_rng, fat_var.t1_cv)
    fat_t2s_factor = _lognormal_factor(fat_rng, fat_var.t2star_cv)
    chosen = list(TISSUES) if tissues is None else [Tissue(t) for t in tissues]
    out: dict[Tissue, SubjectTissue] = {}
    for tissue in chosen:
        props = TISSUES[tissue]
        var = variability(tissue)
        rng = rng_for(seed, _STREAM_SUBJECT, int(tissue))
        relax = props.relaxation(field_strength_t)
        # Always draw the same number of values in the same order: one tissue's entries never
        # shift another draw.
        t1_factor = _lognormal_factor(rng, var.t1_cv)
        t2s_factor = _lognormal_factor(rng, var.t2star_cv)
        pd_factor = _lognormal_factor(rng, var.pd_cv)
        ff_mean, ff_sd = props.fat_fraction, var.fat_fraction_sd
        if age_years is not None and tissue in AGE_DEPENDENT_MARROW:
            ff_mean = marrow_fat_fraction_for_age(age_years, props.fat_fraction)
            ff_sd = MARROW_FAT_SD_AT_AGE
        fat_fraction = _beta_fraction(rng, ff_mean, ff_sd)
        single_t1 = relax.t1_ms == relax.t1_fat_ms
        out[tissue] = SubjectTissue(
            proton_density=props.proton_density * pd_factor,
            fat_fraction=fat_fraction,
            relaxation=Relaxation(
                t1_ms=relax.t1_ms * (fat_t1_factor if single_t1 else t1_factor),
                t1_fat_ms=relax.t1_fat_ms * fat_t1_factor,
                t2star_water_ms=relax.t2star_water_ms * t2s_factor,
                t2star_fat_ms=relax.t2star_fat_ms * fat_t2s_factor,
            ),
        )
    return out


def table_tissues(
    field_strength_t: float, *, tissues: Iterable[Tissue] | None = None
) -> dict[Tissue, SubjectTissue]:
    """The tissue table's own values in the form of :func:`draw_subject_tissues`."""
    chosen = list(TISSUES) if tissues is None else [Tissue(t) for t in tissues]
    return {
        t: SubjectTissue(
            proton_density=TISSUES[t].proton_density,
            fat_fraction=TISSUES[t].fat_fraction,
            relaxation=TISSUES[t].relaxation(field_strength_t),
        )
        for t in chosen
    }
