"""Physical properties of every phantom tissue: one table, each value with its source.

The CT renderer (:mod:`synthct.phantom.ct`) reads ``ct_hu`` and ``ct_texture_sd_hu``; the MRI
renderer (:mod:`synthct.phantom.mri`) reads proton density, fat fraction, relaxation times at
1.5 T and 3 T and the susceptibility of microscopic inclusions. The lesion library uses
``TISSUES[Tissue.MENINGIOMA].ct_hu`` and ``TISSUES[Tissue.CALCIFICATION].ct_hu`` to choose the
calcified sub-voxel fraction that gives a target lesion mean HU.

Conventions
-----------
* Proton density is relative to pure water (CSF ~ 1).
* ``t1_ms`` and ``t2star_water_ms`` describe the water component, ``t1_fat_ms`` and
  ``t2star_fat_ms`` the fat component (single-peak fat at -3.4 ppm unless the renderer is told
  to use a multi-peak spectrum). For tissues that are almost all fat, ``t1_ms`` equals the fat
  T1, so the single-T1 equation of the BRIEF and the two-T1 form agree.
* T2* (not T2) enters a gradient echo; where only T2 is published the T2* here is an
  assumption, shorter than T2, and says so in its source string.
* Values marked "assumption" are engineering choices within the plausible physiological range,
  not measurements; replace them when a measured value is available.

References (short form used in the source strings)
---------------------------------------------------
BRIEF
    synthct product brief, "Physics for the phantom" (starting values).
Stanisz 2005
    Stanisz GJ et al. T1, T2 relaxation and magnetization transfer in tissue at 3T.
    Magn Reson Med 2005;54:507-512.
Smith 2008
    Smith SA et al. Measurement of T1 and T2 in the cervical spinal cord at 3 tesla.
    Magn Reson Med 2008;60:213-219 (WM T1 876 ms, GM 973 ms, T2 73-76 ms).
Gold 2004
    Gold GE et al. Musculoskeletal MRI at 3.0 T: relaxation times and image contrast.
    AJR 2004;183:343-351 (subcutaneous fat T1 ~290 / ~370 ms at 1.5 / 3 T).
de Bazelaire 2004
    de Bazelaire CMJ et al. MR imaging relaxation times of abdominal and pelvic tissues
    measured in vivo at 3.0 T. Radiology 2004;230:652-659 (muscle, liver).
Hamilton 2011
    Hamilton G et al. In vivo characterization of the liver fat 1H MR spectrum.
    NMR Biomed 2011;24:784-790 (fat main peak -3.4 ppm from water).
Du 2010
    Du J et al. Qualitative and quantitative ultrashort echo time (UTE) imaging of cortical
    bone. J Magn Reson 2010;207:304-311 (cortical bone T2* ~0.3-0.5 ms, T1 a few 100 ms).
Yablonskiy 1994
    Yablonskiy DA, Haacke EM. Theory of NMR signal behavior in magnetically inhomogeneous
    tissues: the static dephasing regime. Magn Reson Med 1994;32:749-763.
Lu 2004
    Lu H et al. Determining the longitudinal relaxation time (T1) of blood at 3.0 Tesla.
    Magn Reson Med 2004;52:679-682 (blood T1 ~1.6-1.7 s at 3 T, Hct 0.42).
Zhang 2013
    Zhang X et al. In vivo blood T1 measurements at 1.5 T, 3 T, and 7 T. Magn Reson Med
    2013;70:1082-1086 (arterial blood T1 ~1.48 s at 1.5 T, ~1.65 s at 3 T).
New 1976
    New PFJ, Aronow S. Attenuation measurements of whole blood and blood fractions in computed
    tomography. Radiology 1976;121:635-640 (unenhanced blood ~40-55 HU with haematocrit).
Yu 2011
    Yu J, Xue Y, Song HK. Comparison of lung T2* during free-breathing at 1.5 T and 3.0 T with
    ultrashort echo time imaging. Magn Reson Med 2011;66:248-254 (T2* ~2.1 / ~0.7 ms).
Hatabu 1999
    Hatabu H et al. Quantitative assessment of lung T1 and T2* at 1.5 T. Eur J Radiol
    1999;29:245-252 (lung T1 ~1.2-1.3 s; short T2*).
Stadler 2005
    Stadler A et al. Magnetic field strength dependence of human lung T1: 1.5 T ~1.3 s,
    3 T ~1.4 s. Magn Reson Med 2005;53:732-737 (as cited in the review literature).
Gevenois 1996
    Gevenois PA et al. Comparison of computed density and microscopic morphometry in pulmonary
    emphysema. Am J Respir Crit Care Med 1996;154:187-192 (normal lung ~ -850 HU).
Messroghli 2007
    Messroghli DR et al. Myocardial T1 mapping: application to patients with acute and chronic
    myocardial infarction. Magn Reson Med 2007 (native myocardium T1 ~980 ms at 1.5 T).
Anderson 2001
    Anderson LJ et al. Cardiovascular T2-star magnetic resonance for the early diagnosis of
    myocardial iron overload. Eur Heart J 2001;22:2171-2179 (normal myocardial T2* ~52 ms at
    1.5 T).
Schwenzer 2008
    Schwenzer NF et al. T2* relaxometry in liver, pancreas and spleen in a healthy cohort of
    one hundred twenty-nine subjects. Invest Radiol 2008;43:854-860 (3 T; liver ~20-30 ms).
Glueer 1989
    Glueer CC, Genant HK. Impact of marrow fat on accuracy of quantitative CT. J Comput Assist
    Tomogr 1989;13:1023-1035 (trabecular HU falls linearly with marrow fat; see
    :mod:`synthct.imaging.marrow`).
Fischer 2025
    the reproduced study (calcified meningiomas 113-766 HU, mean 463.6 HU on CT).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from synthct.errors import PhantomParameterError
from synthct.imaging.labels import MARROW_TISSUES, Tissue
from synthct.imaging.marrow import BIN_CENTRES, DEFAULT_MARROW

#: Field strengths (T) at which the table holds relaxation times.
TABULATED_FIELDS_T = (1.5, 3.0)
#: Field strengths (T) accepted by :meth:`TissueProperties.relaxation` (linear in B0 between
#: and slightly beyond the tabulated fields).
SUPPORTED_FIELD_RANGE_T = (1.0, 3.5)


@dataclass(frozen=True)
class Relaxation:
    """Relaxation times of one tissue at one field strength, in ms."""

    t1_ms: float
    t1_fat_ms: float
    t2star_water_ms: float
    t2star_fat_ms: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not np.isfinite(value) or value <= 0:
                raise PhantomParameterError(
                    f"{f.name} must be positive and finite, got {value}", path=f.name
                )


@dataclass(frozen=True)
class TissueProperties:
    """CT and MR properties of one tissue, with the source of each group of values.

    Attributes
    ----------
    ct_hu : float
        Mean CT number in HU.
    ct_texture_sd_hu : float
        Standard deviation of the tissue's own spatially correlated texture, in HU (added on top
        of scanner noise; e.g. trabecular pattern).
    proton_density : float
        MR-visible proton density relative to water.
    fat_fraction : float
        Fraction of the proton density in fat (0 to 1).
    relaxation_1p5t, relaxation_3t : Relaxation
        Relaxation times at 1.5 T and 3 T.
    inclusion_susceptibility_ppm : float
        Volume susceptibility difference (SI, ppm) of the tissue as microscopic inclusions
        relative to soft tissue; non-zero only for tissues whose fine grains dephase the water
        around them within a voxel (calcification). Used by the MRI renderer's static
        dephasing term (Yablonskiy 1994).
    ct_source, mr_source, relaxation_source : str
        Where the CT values, the PD/fat/susceptibility values and the relaxation times come
        from.
    """

    tissue: Tissue
    ct_hu: float
    ct_texture_sd_hu: float
    proton_density: float
    fat_fraction: float
    relaxation_1p5t: Relaxation
    relaxation_3t: Relaxation
    inclusion_susceptibility_ppm: float
    ct_source: str
    mr_source: str
    relaxation_source: str

    def __post_init__(self) -> None:
        name = self.tissue.name
        if not -1024.0 <= self.ct_hu <= 3071.0:
            raise PhantomParameterError(
                f"{name}: ct_hu must lie in -1024..3071 HU, got {self.ct_hu}", path="ct_hu"
            )
        if self.ct_texture_sd_hu < 0:
            raise PhantomParameterError(
                f"{name}: ct_texture_sd_hu must be >= 0, got {self.ct_texture_sd_hu}",
                path="ct_texture_sd_hu",
            )
        if not 0.0 <= self.proton_density <= 1.2:
            raise PhantomParameterError(
                f"{name}: proton_density must lie in 0..1.2 (relative to water), got "
                f"{self.proton_density}",
                path="proton_density",
            )
        if not 0.0 <= self.fat_fraction <= 1.0:
            raise PhantomParameterError(
                f"{name}: fat_fraction must lie in 0..1, got {self.fat_fraction}",
                path="fat_fraction",
            )

    def relaxation(self, field_strength_t: float) -> Relaxation:
        """Relaxation times at ``field_strength_t``.

        Exact at 1.5 T and 3 T; linear in B0 in between and up to 0.5 T beyond (a first-order
        approximation of the field dependence, good enough for 1.0-3.5 T systems).

        Raises
        ------
        PhantomParameterError
            Outside :data:`SUPPORTED_FIELD_RANGE_T`.
        """
        lo, hi = SUPPORTED_FIELD_RANGE_T
        b0 = float(field_strength_t)
        if not lo <= b0 <= hi:
            raise PhantomParameterError(
                f"field_strength_t must lie in {lo}..{hi} T, got {field_strength_t}",
                path="field_strength_t",
                fix="the tissue table holds 1.5 T and 3 T values; use a field in that range",
            )
        if b0 == 1.5:
            return self.relaxation_1p5t
        if b0 == 3.0:
            return self.relaxation_3t
        w = (b0 - 1.5) / 1.5
        a, b = self.relaxation_1p5t, self.relaxation_3t
        values = {
            f.name: max((1 - w) * getattr(a, f.name) + w * getattr(b, f.name), 0.05)
            for f in fields(Relaxation)
        }
        return Relaxation(**values)


def _r(t1: float, t1_fat: float, t2s_w: float, t2s_f: float) -> Relaxation:
    return Relaxation(t1_ms=t1, t1_fat_ms=t1_fat, t2star_water_ms=t2s_w, t2star_fat_ms=t2s_f)


# Fat component relaxation shared by every fatty tissue: T1 (Gold 2004 / BRIEF) and an
# effective single-peak T2* (assumption: adipose T2* is tens of ms, shorter at 3 T).
_FAT_T1_MS = {1.5: 290.0, 3.0: 370.0}
_FAT_T2STAR_MS = {1.5: 25.0, 3.0: 18.0}
_FAT_SRC = (
    "fat T1 290/370 ms: BRIEF, cf. Gold 2004 (subcutaneous fat); fat T2* 25/18 ms: assumption"
)


def _tp(
    tissue: Tissue,
    ct_hu: float,
    ct_texture_sd_hu: float,
    pd: float,
    ff: float,
    t1_ms: tuple[float, float],
    t2star_water_ms: tuple[float, float],
    *,
    ct_source: str,
    mr_source: str,
    relaxation_source: str,
    t1_fat_ms: tuple[float, float] | None = None,
    t2star_fat_ms: tuple[float, float] | None = None,
    inclusion_susceptibility_ppm: float = 0.0,
) -> TissueProperties:
    t1f = t1_fat_ms or (_FAT_T1_MS[1.5], _FAT_T1_MS[3.0])
    t2f = t2star_fat_ms or (_FAT_T2STAR_MS[1.5], _FAT_T2STAR_MS[3.0])
    return TissueProperties(
        tissue=tissue,
        ct_hu=ct_hu,
        ct_texture_sd_hu=ct_texture_sd_hu,
        proton_density=pd,
        fat_fraction=ff,
        relaxation_1p5t=_r(t1_ms[0], t1f[0], t2star_water_ms[0], t2f[0]),
        relaxation_3t=_r(t1_ms[1], t1f[1], t2star_water_ms[1], t2f[1]),
        inclusion_susceptibility_ppm=inclusion_susceptibility_ppm,
        ct_source=ct_source,
        mr_source=mr_source,
        relaxation_source=relaxation_source,
    )


_T = Tissue


def _disc(tissue: Tissue) -> TissueProperties:
    # Herniated disc material is modelled as disc: same composition, displaced.
    return _tp(
        tissue,
        80.0,
        8.0,
        0.8,
        0.0,
        (1000.0, 1200.0),
        (40.0, 30.0),
        ct_source="disc ~70-90 HU (clinical CT range; assumption within it)",
        mr_source="PD 0.8: assumption (hydrated nucleus, drier annulus)",
        relaxation_source="assumption: disc T1 ~1.0-1.2 s, T2 ~80-110 ms with T2* shorter",
    )


def _marrow(tissue: Tissue, fat_fraction: float) -> TissueProperties:
    # Trabecular bone with marrow of one fat fraction: HU from the mixing model; PD, water T1
    # and T2* as generic cancellous bone (the fat fraction is what differs between bins).
    hu = float(DEFAULT_MARROW.hu_of_fat_fraction(fat_fraction))
    return _tp(
        tissue,
        round(hu, 1),
        30.0,
        0.7,
        fat_fraction,
        (856.0, 898.0),
        (15.0, 10.0),
        t2star_fat_ms=(15.0, 10.0),
        ct_source=f"linear mixing of trabeculae (BV/TV 0.10), red marrow and fat at fat fraction "
        f"{fat_fraction:g}: Glueer 1989 (see synthct.imaging.marrow); texture SD: assumption",
        mr_source=f"fat fraction {fat_fraction:g} (bin centre); PD 0.7 as cancellous bone "
        "(assumption: trabeculae occupy part of the volume)",
        relaxation_source=f"water T1 856/898 ms: BRIEF; {_FAT_SRC}; T2* 15/10 ms: assumption "
        "(trabecular susceptibility shortens marrow T2*)",
    )


# The table, one row per tissue: HU, texture SD, PD, fat fraction, T1 and T2* (1.5 T, 3 T).
# fmt: off
_ENTRIES = [
    _tp(_T.AIR, -1000.0, 0.0, 0.0, 0.0, (1000.0, 1000.0), (1.0, 1.0),
        ct_source="air is -1000 HU by definition of the HU scale",
        mr_source="air has no MR-visible protons",
        relaxation_source="placeholders (no signal since PD = 0)"),
    _tp(_T.SUBCUTANEOUS_FAT, -100.0, 10.0, 0.9, 0.95, (290.0, 370.0), (25.0, 18.0),
        ct_source="BRIEF: fat -120..-90 HU",
        mr_source="fat fraction ~0.95: BRIEF; PD 0.9 relative to water: assumption",
        relaxation_source=f"T1 = fat T1 (single-T1 tissue); {_FAT_SRC}"),
    _tp(_T.MUSCLE, 45.0, 8.0, 0.75, 0.03, (856.0, 898.0), (33.0, 28.0),
        ct_source="BRIEF: muscle 10..55 HU",
        mr_source="PD ~0.75 (muscle water content): assumption; fat fraction 0.03: assumption "
        "(healthy paraspinal muscle, a few percent)",
        relaxation_source="T1 856/898 ms: BRIEF, cf. de Bazelaire 2004; T2* ~30-35 ms: BRIEF"),
    _tp(_T.CORTICAL_BONE, 1850.0, 80.0, 0.05, 0.0, (180.0, 230.0), (0.5, 0.4),
        ct_source="BRIEF: cortical bone +1800..+1900 HU",
        mr_source="PD ~0.05: BRIEF (bound + pore water of cortical bone)",
        relaxation_source="T2* ~0.4 ms at 3 T: BRIEF and Du 2010; T1 of a few 100 ms "
        "(UTE, Du 2010) rather than the BRIEF's ~1000 ms; either way no signal at TE > 1 ms"),
    _tp(_T.CANCELLOUS_BONE, 350.0, 50.0, 0.7, 0.5, (856.0, 898.0), (15.0, 10.0),
        t2star_fat_ms=(15.0, 10.0),
        ct_source="BRIEF: cancellous bone +300..+400 HU (lower in osteoporotic elderly spines)",
        mr_source="fat fraction ~0.5: BRIEF (adult vertebral marrow); PD 0.7: assumption "
        "(trabeculae occupy part of the volume)",
        relaxation_source=f"water T1 856/898 ms: BRIEF; {_FAT_SRC}; T2* 15/10 ms: assumption "
        "(trabecular susceptibility shortens marrow T2*)"),
    _disc(_T.DISC),
    _tp(_T.CSF, 8.0, 3.0, 1.0, 0.0, (4280.0, 4160.0), (400.0, 250.0),
        ct_source="BRIEF: CSF 0..15 HU",
        mr_source="PD 1.0: water",
        relaxation_source="T1 4280/4160 ms: BRIEF; T2* 400/250 ms: assumption (T2 ~2 s, "
        "shortened by B0 inhomogeneity and pulsation; irrelevant at TE of a few ms)"),
    _tp(_T.SPINAL_CORD, 30.0, 4.0, 0.72, 0.0, (745.0, 993.0), (60.0, 45.0),
        ct_source="BRIEF: spinal cord ~20..40 HU",
        mr_source="PD 0.72: assumption (white-matter-like water content)",
        relaxation_source="T1 745/993 ms: BRIEF, cf. Stanisz 2005 and Smith 2008 (3 T WM "
        "876 ms, GM 973 ms); T2* 60/45 ms: assumption (T2 74/78 ms)"),
    _tp(_T.EPIDURAL_FAT, -90.0, 12.0, 0.9, 0.85, (290.0, 370.0), (25.0, 18.0),
        ct_source="assumption: fat with epidural veins, slightly above subcutaneous fat",
        mr_source="fat fraction 0.85: assumption (venous plexus)",
        relaxation_source=f"as subcutaneous fat; {_FAT_SRC}"),
    _tp(_T.DURA, 70.0, 6.0, 0.6, 0.0, (800.0, 1000.0), (10.0, 7.0),
        ct_source="assumption: dense fibrous tissue like ligament (60..90 HU)",
        mr_source="PD 0.6: assumption (collagen-rich, short-T2 water)",
        relaxation_source="assumption: collagen-rich tissue, T2* ~10 ms or less"),
    _tp(_T.LIGAMENT, 75.0, 8.0, 0.6, 0.0, (800.0, 1000.0), (12.0, 8.0),
        ct_source="assumption within 60..90 HU (dense connective tissue)",
        mr_source="PD 0.6: assumption",
        relaxation_source="assumption: between tendon (T2* 1-2 ms) and elastin-rich "
        "ligamentum flavum (tens of ms)"),
    _tp(_T.SOFT_TISSUE, 40.0, 8.0, 0.8, 0.02, (586.0, 809.0), (30.0, 20.0),
        ct_source="assumption: parenchymal soft tissue 30..60 HU",
        mr_source="PD 0.8, fat fraction 0.02: assumption",
        relaxation_source="T1 586/809 ms: liver, de Bazelaire 2004; T2* 30/20 ms: assumption"),
    _tp(_T.LUNG, -850.0, 60.0, 0.2, 0.0, (1270.0, 1400.0), (2.1, 0.74),
        ct_source="normal lung parenchyma ~ -850 HU: Gevenois 1996; texture SD (vessels, "
        "septa): assumption",
        mr_source="PD 0.2: assumption (lung density ~0.2 g/ml, mostly air)",
        relaxation_source="T1 ~1.27/1.4 s: Hatabu 1999, Stadler 2005; T2* 2.1/0.74 ms: Yu 2011"),
    _tp(_T.BOWEL_GAS, -1000.0, 0.0, 0.0, 0.0, (1000.0, 1000.0), (1.0, 1.0),
        ct_source="gas is air: -1000 HU by definition of the HU scale",
        mr_source="gas has no MR-visible protons",
        relaxation_source="placeholders (no signal since PD = 0)"),
    _tp(_T.BLOOD, 45.0, 5.0, 0.85, 0.0, (1480.0, 1650.0), (100.0, 50.0),
        ct_source="unenhanced whole blood 40-55 HU: New 1976 (contrast raises it; a real CT "
        "keeps its own HU)",
        mr_source="PD 0.85: assumption (blood water content ~0.8-0.85)",
        relaxation_source="T1 1480/1650 ms: Zhang 2013, cf. Lu 2004 (1664 ms at 3 T); T2* "
        "100/50 ms: assumption (arterial blood T2 ~250/150 ms, shortened by field gradients)"),
    _tp(_T.LIVER, 60.0, 6.0, 0.75, 0.03, (586.0, 809.0), (28.0, 22.0),
        ct_source="unenhanced liver 55-65 HU: standard CT range (e.g. Kalender 2011)",
        mr_source="PD 0.75: assumption; fat fraction 0.03: assumption (normal PDFF < 0.05)",
        relaxation_source="T1 586/809 ms: de Bazelaire 2004; T2* 28/22 ms: Schwenzer 2008 "
        "(3 T), 1.5 T value assumption"),
    _tp(_T.SPLEEN, 48.0, 5.0, 0.8, 0.0, (1057.0, 1328.0), (50.0, 40.0),
        ct_source="unenhanced spleen 45-50 HU (a few HU below liver): standard CT range",
        mr_source="PD 0.8: assumption",
        relaxation_source="T1 1057/1328 ms: de Bazelaire 2004; T2* 50/40 ms: Schwenzer 2008 "
        "(3 T), 1.5 T value assumption"),
    _tp(_T.KIDNEY, 32.0, 6.0, 0.82, 0.0, (966.0, 1142.0), (55.0, 40.0),
        ct_source="unenhanced renal parenchyma 30-35 HU: standard CT range",
        mr_source="PD 0.82: assumption",
        relaxation_source="T1 966/1142 ms (renal cortex): de Bazelaire 2004; T2* 55/40 ms: "
        "assumption"),
    _tp(_T.HEART, 42.0, 5.0, 0.8, 0.0, (1200.0, 1500.0), (45.0, 30.0),
        ct_source="unenhanced myocardium and blood pool 40-45 HU: New 1976 for blood",
        mr_source="PD 0.8: assumption (myocardium ~0.75, blood ~0.85)",
        relaxation_source="T1 between myocardium (~980 ms at 1.5 T, Messroghli 2007; ~1470 ms "
        "at 3 T, Stanisz 2005) and blood (Zhang 2013): assumption; T2* 45/30 ms: cf. "
        "Anderson 2001 (myocardium ~52 ms at 1.5 T)"),
    *(_marrow(t, ff) for t, ff in zip(MARROW_TISSUES, BIN_CENTRES, strict=True)),
    _tp(_T.MENINGIOMA, 40.0, 8.0, 0.8, 0.0, (1000.0, 1250.0), (50.0, 40.0),
        ct_source="non-calcified meningioma ~40 HU (Fischer 2025 barely calcified tumours "
        "~113 HU include some calcification)",
        mr_source="PD 0.8: assumption (cellular tumour)",
        relaxation_source="assumption: iso- to slightly hypointense to cord on T1w "
        "(T1 a little longer than cord), T2* 50/40 ms"),
    _tp(_T.CALCIFICATION, 1400.0, 100.0, 0.08, 0.0, (400.0, 500.0), (0.8, 0.6),
        inclusion_susceptibility_ppm=-1.5,
        ct_source="assumption: dense psammomatous calcification ~1400 HU, so that 5-55% "
        "calcified sub-voxels give the 113-766 HU tumours of Fischer 2025",
        mr_source="PD 0.08: assumption (mineral-bound water, like cortical bone ~0.05); "
        "susceptibility -1.5 ppm relative to tissue: assumption (diamagnetic calcium "
        "phosphate; cortical bone is about -2 ppm, QSM of calcified lesions a few tenths of a "
        "ppm after partial volume)",
        relaxation_source="assumption: T2* 0.8/0.6 ms (between cortical bone ~0.4 ms, Du 2010, "
        "and tendon ~1-2 ms); T1 of a few 100 ms like other mineralised tissue"),
    _tp(_T.SCHWANNOMA, 35.0, 8.0, 0.85, 0.0, (1200.0, 1500.0), (70.0, 55.0),
        ct_source="assumption: non-calcified nerve sheath tumour 30..40 HU",
        mr_source="PD 0.85: assumption (Antoni B, water-rich)",
        relaxation_source="assumption: long T1 (hypointense to cord on T1w) and long T2*"),
    _tp(_T.OSSIFICATION, 700.0, 80.0, 0.45, 0.3, (800.0, 900.0), (8.0, 6.0),
        t2star_fat_ms=(8.0, 6.0),
        ct_source="assumption: heterotopic lamellar bone (OPLL/OLF) ~700 HU; its cortical rim "
        "is drawn by the anatomy as CORTICAL_BONE",
        mr_source="PD 0.45, fat fraction 0.3: assumption (denser than vertebral cancellous "
        "bone, less marrow)",
        relaxation_source=f"water T1: assumption like marrow; {_FAT_SRC}; T2* 8/6 ms: "
        "assumption (denser trabeculae than vertebral bodies)"),
    _disc(_T.DISC_HERNIATION),
    _tp(_T.SYNOVIAL_CYST, 15.0, 5.0, 0.95, 0.0, (2500.0, 3000.0), (150.0, 100.0),
        ct_source="assumption: proteinaceous fluid 10..20 HU",
        mr_source="PD 0.95: assumption (fluid)",
        relaxation_source="assumption: fluid with protein, T1 shorter than CSF"),
]
# fmt: on

#: The tissue table: physical properties of every :class:`Tissue`.
TISSUES: dict[Tissue, TissueProperties] = {p.tissue: p for p in _ENTRIES}

_SCALAR_ATTRIBUTES = (
    "ct_hu",
    "ct_texture_sd_hu",
    "proton_density",
    "fat_fraction",
    "inclusion_susceptibility_ppm",
)


def lookup_table(attribute: str) -> NDArray[np.float64]:
    """A 256-entry table of one scalar property indexed by label (NaN for unused labels).

    Parameters
    ----------
    attribute : str
        One of ``ct_hu``, ``ct_texture_sd_hu``, ``proton_density``, ``fat_fraction``,
        ``inclusion_susceptibility_ppm``.
    """
    if attribute not in _SCALAR_ATTRIBUTES:
        raise PhantomParameterError(
            f"unknown tissue attribute {attribute!r}; choose one of {list(_SCALAR_ATTRIBUTES)}",
            path="attribute",
        )
    table = np.full(256, np.nan)
    for tissue, props in TISSUES.items():
        table[int(tissue)] = getattr(props, attribute)
    return table
