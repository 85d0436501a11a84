"""Quality assurance of a paired MR/CT dataset: one row per case, cohort-level flags.

Per case (:func:`qa_case`): the grids of MR and CT (shape, spacing, orientation), the share of
the MR's field of view inside the CT's, a rigid MR-to-CT registration with Mattes mutual
information before and after (:mod:`synthct.dataset.registration`), CT sanity in HU (range,
air level, an MR passed as CT), the body mask (given or derived from the CT with
:func:`synthct.imaging.body_mask.body_mask_volume`) and its coverage of the body, the MR
intensity range per channel, and checksums of the voxel data.

From DICOM headers: ``patient_mismatch`` when the MR's and the CT's PatientID differ (compared
as pseudonyms, see :mod:`synthct.dataset.readers`).

Across cases (:func:`flag_cohort`): channel counts that differ from the most common one,
identical image content under two case ids, a patient in two splits, and a mutual information
after registration far below the cohort's (an MR that belongs to another patient). The issues
of a case are listed in its ``issues`` column; ``status`` is ``ok``, ``flag`` or ``error``
(the case could not be read at all).

Rules (all in :class:`QASettings`): ``no_overlap`` when below 5 % of the MR's field of view lies
inside the CT's by the headers and the registration's global search (``search``, see
:mod:`synthct.dataset.registration`) found no position either; when it did, the case is
registered and noted ``header_offset`` (scans never registered to each other need not share a
frame: another scanner, another table position); ``partial_overlap`` below 50 % (by the
headers, or of the registered MR when an applied registration puts more of it in the CT);
``registration_rotation`` when an applied registration rotates the MR by more than 20 degrees
(a wrong optimum, most likely); ``mi_outlier`` when the MI after registration is below half
the median of the other cases' (at least 3 cases with a registration); ``hu_range`` when the
CT's 99.5th percentile exceeds 3500 HU; ``mask_coverage`` when a given mask covers less than
90 % of the body found in the CT where the MR images it (a registered pair's mask stops where
its MR does). Five issues are notes that do not flag a case
(:data:`NOTES`): ``header_offset`` (above), ``dicom_skipped`` (series of a DICOM study that
were not read: localizers, scouts, dose pages, a reformat beside the original), ``no_mask``
(the mask was derived), ``no_air`` (the CT's 0.5th percentile is above -900 HU: a field of
view inside the body, or a CT without air at -1000 HU) and ``ct_padding`` (CT voxels at or
below -1500 HU, the -2048 or -3024 HU many scanners store outside the reconstruction circle,
not the noise of air a little below -1024 HU; training neither centres patches below -1024 HU
nor learns those values).

The ``registration`` column says whether the registration is applied (``applied``: it moves
some MR corner by at least ``apply_min_shift_mm`` and raises the MI by at least
``apply_min_mi_gain``) or the case keeps the identity (``identity``: aligned already); an
applied transform travels with the case (:mod:`synthct.dataset.pairs`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from synthct.case import Case
from synthct.dataset.readers import DICOM_SKIPPED_COLUMN, read_error
from synthct.errors import SynthctError
from synthct.geometry import Geometry
from synthct.manifest import Manifest
from synthct.settings import SettingsBase

__all__ = ["NOTES", "QASettings", "flag_cohort", "qa_case", "run_qa"]

#: CT values at or below this are scanner padding for the ``ct_padding`` note (-2048 or -3024 HU
#: outside the reconstruction circle); air's noise reaches a few tens of HU below -1024 only.
PADDING_NOTE_AT_OR_BELOW_HU = -1500.0

#: Issues that are reported but do not flag a case.
NOTES: tuple[str, ...] = ("no_mask", "no_air", "ct_padding", "header_offset", "dicom_skipped")


# pydantic warns that the field `register` shadows ABCMeta.register (its metaclass's): on an
# instance the name reads the field, which is all QA uses.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class QASettings(SettingsBase):
        """Thresholds of the QA rules (see the module docstring)."""

        invalid_error: ClassVar[type[SynthctError] | None] = SynthctError
        settings_label: ClassVar[str] = "dataset QA settings"

        no_overlap_fraction: float = 0.05
        partial_overlap_fraction: float = 0.5
        mi_outlier_fraction: float = 0.5
        air_ceiling_hu: float = -900.0
        max_p99_5_hu: float = 3500.0
        min_mask_coverage: float = 0.9
        registration_spacing_mm: float = 3.0
        register: bool = True
        #: Start the registration also from a global translation search (pairs whose headers
        #: are far apart or do not overlap at all).
        search: bool = True
        #: A pair whose headers do not overlap is registered only when the search's best
        #: position stands out: its MI at least this many times the median along S-I
        #: (measured: 4-5 for the same anatomy 600 mm away, 1.1 for another subject's MR).
        search_min_peak_ratio: float = 2.0
        #: No ``mi_outlier`` for a case whose search peak stands out at least this much (the
        #: MR's anatomy was found in the CT; measured: 4.5 for a 60 % field of view MR whose MI
        #: was a third of the cohort's median).
        mi_outlier_exempt_peak_ratio: float = 3.0
        #: The registration is applied (travels with the case) when it moves some MR corner at
        #: least this far and raises the MI by at least ``apply_min_mi_gain`` (relative); else
        #: the case keeps the identity (it was aligned already).
        apply_min_shift_mm: float = 1.0
        apply_min_mi_gain: float = 0.05
        #: A registration that rotates the MR further than this is flagged
        #: (``registration_rotation``) and the case left out of splits: patients lie within a
        #: few degrees on either table, and a large rotation from a translation start is a
        #: wrong optimum (measured: 36-60 degrees on cropped MRs before the search's fix).
        max_rotation_deg: float = 20.0


def overlap_fraction(
    mr: Geometry,
    ct: Geometry,
    *,
    points_per_axis: int = 12,
    max_points_per_axis: int = 128,
    mr_to_ct: NDArray[np.float64] | None = None,
) -> float:
    """Share of the MR field of view inside the CT's (a regular lattice of MR points), by the
    headers or, with ``mr_to_ct`` (a 4 x 4 LPS affine from registration), once registered.

    The lattice has at least ``points_per_axis`` points along each MR axis and is made finer
    (up to one per voxel, at most ``max_points_per_axis``) until its step is a quarter of the
    CT's thinnest extent, so a thin CT slab across a long MR (40 mm of CT in 450 mm of MR) is
    hit rather than stepped over.
    """
    ct_thinnest_mm = float(np.min(np.asarray(ct.shape) * np.asarray(ct.spacing_mm)))
    step_mm = ct_thinnest_mm / 4.0
    counts = [
        min(n, max(points_per_axis, min(max_points_per_axis, int(np.ceil(n * s / step_mm)))))
        for n, s in zip(mr.shape, mr.spacing_mm, strict=True)
    ]
    axes = [np.linspace(0, n - 1, c) for n, c in zip(mr.shape, counts, strict=True)]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    points = mr.index_to_lps(ijk)
    if mr_to_ct is not None:
        points = points @ mr_to_ct[:3, :3].T + mr_to_ct[:3, 3]
    return float(np.mean(ct.contains_lps(points)))


def voxel_checksum(array: np.ndarray) -> str:
    """sha256 of shape, dtype and voxel bytes (first 16 hex digits)."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _grid(prefix: str, g: Geometry) -> dict[str, Any]:
    return {
        f"{prefix}_shape": "x".join(str(n) for n in g.shape),
        f"{prefix}_spacing_mm": "x".join(f"{s:.3g}" for s in g.spacing_mm),
        f"{prefix}_orientation": g.orientation_code + (" oblique" if g.is_oblique else ""),
    }


def _mr_imaged(case: Case, grid: Geometry) -> NDArray[np.bool_]:
    """Voxels of ``grid`` the MR images by the headers: inside its field of view and not the
    exact zero (every channel) that a resampled MR holds where it had no data."""
    from synthct.resample import resample_to
    from synthct.volume import LabelMap

    mr = case.mr()
    data = LabelMap(np.any(mr.array != 0, axis=0).astype(np.uint8), mr.affine)
    return np.asarray(resample_to(data, grid, fill_value=0).array > 0)


def _ct_rows(case: Case, settings: QASettings, issues: list[str]) -> dict[str, Any]:
    from synthct.imaging.body_mask import CT_PADDING_BELOW_HU, body_mask_volume

    ct = case.ct()
    data = ct.array
    p = np.percentile(data, [0.5, 50, 99.5])
    row: dict[str, Any] = {
        **_grid("ct", ct.geometry),
        "ct_min_hu": float(data.min()),
        "ct_p0_5_hu": float(p[0]),
        "ct_median_hu": float(p[1]),
        "ct_p99_5_hu": float(p[2]),
        "ct_max_hu": float(data.max()),
        "ct_checksum": voxel_checksum(data),
    }
    if p[0] > settings.air_ceiling_hu:
        issues.append(f"no_air: CT 0.5th percentile {p[0]:.0f} HU (air is -1000 HU)")
    # Air reconstructs with noise a few tens of HU below -1024; padding is -2048 or -3024 HU.
    padding = float((data <= PADDING_NOTE_AT_OR_BELOW_HU).mean())
    if padding > 0:
        issues.append(
            f"ct_padding: {100 * padding:.1f}% of CT voxels at or below "
            f"{PADDING_NOTE_AT_OR_BELOW_HU:.0f} HU (scanner padding outside the reconstruction); "
            f"training treats every voxel below {CT_PADDING_BELOW_HU:.0f} HU as unmeasured"
        )
    if p[2] > settings.max_p99_5_hu:
        issues.append(f"hu_range: CT 99.5th percentile {p[2]:.0f} HU (metal, or not HU?)")
    body = body_mask_volume(ct).array > 0
    if case.has("body_mask"):
        from synthct.resample import resample_to

        mask = case.labels("body_mask")
        if not mask.same_geometry(ct):
            mask = resample_to(mask, ct)
        given = mask.array > 0
        # A mask is the body where the MR images it: a registered pair's MR (its field of view
        # turned inside the CT's box) leaves body voxels it does not image, outside its mask.
        imaged = body & _mr_imaged(case, ct.geometry)
        judged = imaged if imaged.any() else body  # the headers put the MR elsewhere
        coverage = float((given & judged).sum() / max(1, judged.sum()))
        row.update(mask_source="given", mask_fraction=float(given.mean()), mask_coverage=coverage)
        if coverage < settings.min_mask_coverage:
            issues.append(f"mask_coverage: the mask covers {100 * coverage:.0f}% of the body")
    else:
        row.update(mask_source="derived", mask_fraction=float(body.mean()), mask_coverage=1.0)
        issues.append("no_mask: body mask derived from the CT")
    return row


def _mr_rows(case: Case, issues: list[str]) -> dict[str, Any]:
    mr = case.mr()
    lows, highs = [], []
    for c in range(mr.array.shape[0]):
        lo, hi = np.percentile(mr.array[c], [0.5, 99.5])
        lows.append(f"{lo:.4g}")
        highs.append(f"{hi:.4g}")
    if float(mr.array.min()) < -500 and float(np.percentile(mr.array, 1)) < -500:
        issues.append("mr_looks_like_ct: MR values reach below -500 (Hounsfield units?)")
    return {
        **_grid("mr", mr.geometry),
        "mr_channels": int(mr.array.shape[0]),
        "mr_p0_5": ";".join(lows),
        "mr_p99_5": ";".join(highs),
        "mr_checksum": voxel_checksum(mr.array),
    }


def qa_case(case: Case, settings: QASettings | None = None) -> dict[str, Any]:
    """The QA row of one case (see the module docstring); reading errors become the row's error.

    Parameters
    ----------
    case : Case
        Needs ``ct`` and ``mr``; ``body_mask`` is optional.
    settings : QASettings, optional
        Thresholds.
    """
    s = settings or QASettings()
    issues: list[str] = []
    row: dict[str, Any] = {
        "case_id": case.case_id,
        "patient_id": case.patient_id,
        "region": case.region or "",
        "split": case.split or "",
    }
    headers = (case.extra.get("dicom_patient_mr"), case.extra.get("dicom_patient_ct"))
    if all(headers) and headers[0] != headers[1]:
        issues.append("patient_mismatch: the MR's and the CT's DICOM PatientID differ")
    skipped = str(case.extra.get(DICOM_SKIPPED_COLUMN, "") or "")
    if skipped:
        issues.append(f"dicom_skipped: {skipped}")
    unreadable = read_error(case)
    if unreadable is not None:  # the reader could not choose its series: nothing to read
        row["error"] = unreadable
        row["issues"] = issues
        return row
    try:
        row.update(_mr_rows(case, issues))
        row.update(_ct_rows(case, s, issues))
        mr, ct = case.mr(), case.ct()
        overlap = overlap_fraction(mr.geometry, ct.geometry)
        row["fov_overlap"] = overlap
        apart = overlap < s.no_overlap_fraction
        applied = False
        if s.register and (s.search or not apart):
            from synthct.dataset.registration import register_mr_to_ct

            result = register_mr_to_ct(
                mr, mr.array[0], ct, spacing_mm=s.registration_spacing_mm, search=s.search
            )
            corners = mr.geometry.index_to_lps(
                np.array(np.meshgrid(*[(0, n - 1) for n in mr.geometry.shape], indexing="ij"))
                .reshape(3, -1)
                .T
            )
            shift_mm = float(result.displacement_mm(corners).max())
            gain = result.mi_after >= (1.0 + s.apply_min_mi_gain) * result.mi_before
            ratio = result.search_peak_ratio
            distinct = ratio is not None and ratio >= s.search_min_peak_ratio
            applied = shift_mm >= s.apply_min_shift_mm and gain and (distinct or not apart)
            row.update(
                mi_before=result.mi_before,
                mi_after=result.mi_after,
                registration_rotation_deg=result.rotation_deg,
                registration_shift_mm=shift_mm,
                registration="applied" if applied else "identity",
                registration_matrix=result.matrix if applied else None,
                search_peak_ratio=ratio if ratio is not None else "",
            )
        overlap_used = overlap
        if applied:
            # A registration may rescue a pair the headers put apart (training sees the
            # registered MR); it does not make a partial pair of one the headers overlap.
            registered = overlap_fraction(
                mr.geometry, ct.geometry, mr_to_ct=row["registration_matrix"]
            )
            row["fov_overlap_registered"] = registered
            overlap_used = max(overlap, registered)
            if row["registration_rotation_deg"] > s.max_rotation_deg:
                issues.append(
                    f"registration_rotation: the registration rotates the MR by "
                    f"{row['registration_rotation_deg']:.0f} degrees (more than "
                    f"{s.max_rotation_deg:g}): likely a wrong optimum; check the pair, or "
                    "register it yourself and give the registered MR"
                )
        if overlap_used < s.partial_overlap_fraction and (applied or not apart):
            issues.append(
                f"partial_overlap: {100 * overlap_used:.0f}% of the MR field of view in CT"
            )
        if apart and applied:
            issues.append(
                f"header_offset: by the headers {100 * overlap:.0f}% of the MR field of view lies "
                f"inside the CT's; a global search registered it ({row['mi_after']:.3f} MI, "
                f"moved up to {row['registration_shift_mm']:.0f} mm)"
            )
        elif apart:
            if not s.register:
                why = " (not registered: registration is off)"
            elif not s.search:
                why = " (not registered: the global search is off)"
            else:
                why = "; the global search found no position that stands out"
            issues.append(
                f"no_overlap: {100 * overlap:.0f}% of the MR field of view lies inside the CT's"
                + why
            )
    except SynthctError as exc:
        row["error"] = (
            f"{exc.problem}"
            + (f" ({exc.path})" if exc.path else "")
            + (f"; fix: {exc.fix}" if exc.fix else "")
        )
    finally:
        case.unload()
    row["issues"] = issues
    return row


def _mi_outliers(rows: Sequence[dict[str, Any]], s: QASettings) -> None:
    values = {r["case_id"]: r.get("mi_after") for r in rows}
    known = {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}
    if len(known) < 3:
        return
    for row in rows:
        mine = known.get(row["case_id"])
        if mine is None:
            continue
        ratio = row.get("search_peak_ratio")
        if isinstance(ratio, float) and ratio >= s.mi_outlier_exempt_peak_ratio:
            # The search found one position along the whole CT that stands out: the MR shows
            # this CT's anatomy. Its MI is low for another reason (a small field of view,
            # another contrast), not because it is another patient's.
            continue
        median = float(np.median([v for k, v in known.items() if k != row["case_id"]]))
        if mine < s.mi_outlier_fraction * median:
            # first: the likely cause of what else its registration shows (a wild rotation)
            row["issues"].insert(
                0,
                f"mi_outlier: MI after registration {mine:.3f} vs cohort median {median:.3f} "
                "(is this MR another patient's?)",
            )


def flag_cohort(rows: Sequence[dict[str, Any]], settings: QASettings | None = None) -> None:
    """Add the cohort-level issues to ``rows`` in place (see the module docstring)."""
    s = settings or QASettings()
    channels = Counter(r["mr_channels"] for r in rows if "mr_channels" in r)
    if len(channels) > 1:
        usual = channels.most_common(1)[0][0]
        for row in rows:
            if row.get("mr_channels", usual) != usual:
                row["issues"].append(
                    f"channel_count: {row['mr_channels']} MR channels, most cases have {usual}"
                )
    for key in ("ct_checksum", "mr_checksum"):
        by_sum: dict[str, list[str]] = {}
        for row in rows:
            if row.get(key):
                by_sum.setdefault(row[key], []).append(row["case_id"])
        for row in rows:
            twins = [c for c in by_sum.get(row.get(key, ""), []) if c != row["case_id"]]
            if twins:
                what = key.split("_")[0].upper()
                row["issues"].append(f"duplicate_{what.lower()}: same {what} voxels as {twins}")
    splits: dict[str, set[str]] = {}
    for row in rows:
        if row.get("split"):
            splits.setdefault(row["patient_id"], set()).add(row["split"])
    for row in rows:
        if len(splits.get(row["patient_id"], ())) > 1:
            row["issues"].append(
                f"patient_leak: patient {row['patient_id']!r} is in the splits "
                f"{sorted(splits[row['patient_id']])}"
            )
    _mi_outliers(rows, s)
    for row in rows:
        serious = [i for i in row["issues"] if not i.startswith(NOTES)]
        row["status"] = "error" if row.get("error") else ("flag" if serious else "ok")


def run_qa(
    manifest: Manifest,
    settings: QASettings | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """QA rows of every case, cohort flags included (one case in memory at a time)."""
    rows = []
    for done, case in enumerate(manifest, start=1):
        rows.append(qa_case(case, settings))
        if progress is not None:
            progress(case.case_id, done, len(manifest))
    flag_cohort(rows, settings)
    return rows
