"""The lesion measurements as a Comprehensive 3D SR, TID 1500 (see
:mod:`synthct.validation.dicom_seg_sr`), and reading them back."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from synthct.errors import ReadError
from synthct.io.deidentify import mark_deidentified
from synthct.io.dicom_references import (
    MANUFACTURER,
    PRIVATE_SCHEME,
    CTSource,
    lesion_tracking_uid,
    private_code,
    read_ct_datasets,
    save_dataset,
)
from synthct.validation.lesion_metrics import LesionResult
from synthct.version import __version__

__all__ = ["lesion_measurements_from_sr", "write_lesion_sr"]

_IMAGES = {
    "ct": ("REFERENCE-CT", "Measured on the reference CT"),
    "sct": ("SYNTHETIC-CT", "Measured on the synthetic CT"),
}
_DIAMETER_METHODS = {"AXIAL-FERET": "diameter_axial_mm", "CRANIOCAUDAL": "diameter_sagittal_mm"}
#: SNOMED CT "Present".
_PRESENT = "52101004"
_GRADES = {
    "none_or_barely": ("NONE-OR-BARELY", "None or barely calcified"),
    "partial": ("PARTIAL", "Partially calcified"),
    "dense": ("DENSE", "Densely calcified"),
}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _flag(value: Any) -> bool | None:
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def _measurements(row: Mapping[str, Any], prefix: str) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    hu, mm = codes.UCUM.HounsfieldUnit, codes.UCUM.Millimeter
    specs = [
        ("mean_hu", codes.DCM.AttenuationCoefficient, hu, {"derivation": codes.SCT.Mean}),
        (
            "sd_hu",
            codes.DCM.AttenuationCoefficient,
            hu,
            {"derivation": codes.SCT.StandardDeviation},
        ),
        (
            "diameter_axial_mm",
            codes.SCT.Diameter,
            mm,
            {"method": private_code("AXIAL-FERET", "Maximal axial Feret diameter")},
        ),
        (
            "diameter_sagittal_mm",
            codes.SCT.Diameter,
            mm,
            {"method": private_code("CRANIOCAUDAL", "Cranio-caudal extent")},
        ),
        ("cnr", private_code("CNR", "Contrast-to-noise ratio"), codes.UCUM.NoUnits, {}),
    ]
    out = []
    for key, name, unit, extra in specs:
        value = _finite(row.get(f"{prefix}_{key}"))
        if value is not None:
            out.append(hd.sr.Measurement(name=name, value=value, unit=unit, **extra))
    return out


def _evaluations(row: Mapping[str, Any], prefix: str) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    out = []
    visible = _flag(row.get(f"{prefix}_visible"))
    if visible is not None:
        out.append(
            hd.sr.QualitativeEvaluation(
                name=private_code("VISIBLE", "Lesion visible"),
                value=codes.SCT.Present if visible else codes.SCT.Absent,
            )
        )
    grade = row.get("calcification_grade")
    if prefix == "ct" and grade in _GRADES:
        out.append(
            hd.sr.QualitativeEvaluation(
                name=private_code("CALC-GRADE", "Calcification grade"),
                value=private_code(*_GRADES[grade]),
            )
        )
    return out


def _segment_numbers(seg: Dataset | None) -> dict[int, int]:
    """``{lesion_id: segment_number}`` from the tracking ids ``lesion-<id>`` of a SEG."""
    if seg is None:
        return {}
    numbers = {}
    for item in seg.SegmentSequence:
        tracking = str(getattr(item, "TrackingID", ""))
        if tracking.startswith("lesion-"):
            numbers[int(tracking.split("-", 1)[1])] = int(item.SegmentNumber)
    return numbers


def _roi(row: Mapping[str, Any], seg: Dataset | None, number: int | None, ct0: Dataset) -> dict:
    import highdicom as hd

    # The reference is built from the UIDs (not ReferencedSegment.from_segmentation, which
    # fails on single-segment SEGs whose segment identification is in the shared groups).
    source = hd.sr.SourceSeriesForSegmentation(str(ct0.SeriesInstanceUID))
    if seg is not None and number is not None:
        return {
            "referenced_segment": hd.sr.ReferencedSegment(
                sop_class_uid=str(seg.SOPClassUID),
                sop_instance_uid=str(seg.SOPInstanceUID),
                segment_number=number,
                source_series=source,
            )
        }
    centre = np.array([[float(row[f"roi_center_{a}_mm"]) for a in ("l", "p", "s")]])
    return {
        "referenced_volume_surface": hd.sr.VolumeSurface(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=centre,
            frame_of_reference_uid=str(ct0.FrameOfReferenceUID),
            source_series=source,
        )
    }


def write_lesion_sr(
    ct: CTSource,
    lesions: Sequence[LesionResult | Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    seg: Dataset | str | os.PathLike[str] | None = None,
    series_number: int = 901,
    overwrite: bool = True,
    deidentify: bool = False,
) -> Path:
    """Write the lesion measurements as a Comprehensive 3D SR (TID 1500 measurement report).

    Parameters
    ----------
    ct : path or sequence of pydicom.Dataset
        The CT series the lesions were measured on.
    lesions : sequence of LesionResult or mapping
        The lesions, or their rows (:meth:`LesionResult.to_dict` keys).
    path : path
        Output file (e.g. ``lesions.sr.dcm``).
    seg : pydicom.Dataset or path, optional
        The SEG of :func:`write_lesion_seg` for these lesions: each group then references the
        lesion's segment; otherwise the ROI centre as a 3D point.
    series_number : int
        Of the new SR series.
    overwrite : bool
        Replace an existing file.
    deidentify : bool
        Apply the Basic Profile (:mod:`synthct.io.deidentify`) to what is copied from the CT
        headers (patient, study, UIDs); ``synthct validate`` does unless --keep-identifiers.

    Returns
    -------
    Path
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    datasets = read_ct_datasets(ct, deidentify=deidentify)
    ct0 = datasets[0]
    seg_ds = pydicom.dcmread(seg) if isinstance(seg, str | os.PathLike) else seg
    numbers = _segment_numbers(seg_ds)
    algorithm = hd.sr.AlgorithmIdentification(name="synthct", version=__version__)
    groups = []
    for lesion in lesions:
        row = lesion.to_dict() if isinstance(lesion, LesionResult) else dict(lesion)
        lesion_id = int(row["lesion_id"])
        tracking = hd.sr.TrackingIdentifier(
            uid=lesion_tracking_uid(str(ct0.SeriesInstanceUID), lesion_id),
            identifier=f"lesion-{lesion_id}",
        )
        roi = _roi(row, seg_ds, numbers.get(lesion_id), ct0)
        for prefix, (code, meaning) in _IMAGES.items():
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    finding_type=codes.SCT.Lesion,
                    method=private_code(code, meaning),
                    algorithm_id=algorithm,
                    measurements=_measurements(row, prefix),
                    qualitative_evaluations=_evaluations(row, prefix),
                    **roi,
                )
            )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["synthct", __version__]),
            name="synthct",
            manufacturer_name=MANUFACTURER,
            model_name="synthct",
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ComputerizedAxialTomography,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*datasets, *([seg_ds] if seg_ds is not None else [])],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="synthct lesion measurements",
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = "synthct private codes"
    scheme.CodingSchemeResponsibleOrganization = "synthct project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    if deidentify:
        mark_deidentified(sr)
    return save_dataset(sr, path, overwrite)


def _first(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        return int(value[0]) if len(value) else None
    return int(value)


def lesion_measurements_from_sr(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read back a synthct lesion SR: one flat dict per measurement group.

    Keys: ``lesion`` (tracking id), ``tracking_uid``, ``image`` (``ct`` or ``sct``),
    ``segment_number`` (or None), ``mean_hu``, ``sd_hu``, ``diameter_axial_mm``,
    ``diameter_sagittal_mm``, ``cnr`` (each present when stored), ``visible`` (bool) and, for
    the CT, ``calcification_grade``.
    """
    import highdicom as hd

    sr = hd.sr.srread(path)
    report = sr.content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise ReadError("not a TID 1500 measurement report", path=path)
    images = {code: key for key, (code, _) in _IMAGES.items()}
    grades = {code: key for key, (code, _) in _GRADES.items()}
    rows = []
    for group in report.get_volumetric_roi_measurement_groups():
        segment = group.referenced_segment
        method = group.method
        row: dict[str, Any] = {
            "lesion": str(group.tracking_identifier),
            "tracking_uid": str(group.tracking_uid),
            "image": None if method is None else images.get(str(method.value)),
            "segment_number": (
                None if segment is None else _first(segment.referenced_segment_numbers)
            ),
        }
        for m in group.get_measurements():
            row[_measurement_key(m)] = float(m.value)
        for q in group.get_qualitative_evaluations():
            answer: Any = q.value  # a CodedConcept for a CODE content item
            if q.name.value == "VISIBLE":
                row["visible"] = answer.value == _PRESENT
            elif q.name.value == "CALC-GRADE":
                row["calcification_grade"] = grades.get(str(answer.value), answer.meaning)
        rows.append(row)
    return rows


def _measurement_key(m: Any) -> str:
    """The row key of a measurement written by :func:`write_lesion_sr` (else its meaning)."""
    if m.name.value == "112031" and m.derivation is not None:  # Attenuation Coefficient
        return {"373098007": "mean_hu", "386136009": "sd_hu"}.get(
            str(m.derivation.value), str(m.name.meaning)
        )
    if m.method is not None and m.method.value in _DIAMETER_METHODS:
        return _DIAMETER_METHODS[str(m.method.value)]
    if m.name.value == "CNR":
        return "cnr"
    return str(m.name.meaning)
