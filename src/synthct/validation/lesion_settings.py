"""Settings of the lesion-level metrics: every rule and threshold, stated in words.

:class:`LesionSettings` is immutable (a frozen pydantic model); ``to_dict()`` returns the values
and each rule in words, so tables, JSON and reports can state the conventions they used. The
defaults follow the study of Fischer et al. [1]_ (calcified >= 130 HU, dense >= 400 HU) and
the Rose criterion for visibility [2]_ (|CNR| >= 3).

References
----------
.. [1] G. Fischer et al., "Evaluation of magnetic resonance imaging and deep learning-based
   synthetic computed tomography for calcified intradural tumors", Acta Neurochirurgica, 2025,
   doi:10.1007/s00701-025-06731-0.
.. [2] A. Rose, "The sensitivity performance of the human eye on an absolute scale", JOSA 38(2),
   1948.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from synthct.settings import SettingsBase

__all__ = ["LesionSettings"]


class LesionSettings(SettingsBase):
    """Every rule and threshold of the lesion-level metrics (immutable).

    ``to_dict()`` returns the values and, under ``"rules"``, each rule in words with the values
    filled in, for the outputs' metadata.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    calcified_threshold_hu: float = Field(
        default=130.0, description="voxels at or above this HU count as calcified"
    )
    grade_partial_min_hu: float = Field(
        default=130.0, description="CT ROI mean from which a lesion is partially calcified"
    )
    grade_dense_min_hu: float = Field(
        default=400.0, description="CT ROI mean from which a lesion is densely calcified"
    )
    shell_inner_mm: float = Field(default=2.0, ge=0, description="inner distance of the shell")
    shell_outer_mm: float = Field(default=5.0, gt=0, description="outer distance of the shell")
    shell_hu_window: tuple[float, float] | None = Field(
        default=(-30.0, 130.0),
        description="keep shell voxels whose reference-CT HU lies in this window (CSF, cord, "
        "dura, ligament, muscle; not bone, fat or air); None keeps all",
    )
    min_shell_voxels: int = Field(
        default=10, ge=1, description="fewer windowed shell voxels fall back to the whole shell"
    )
    search_margin_mm: float = Field(default=3.0, ge=0, description="ROI dilation for segmentation")
    rose_threshold: float = Field(default=3.0, ge=0, description="|CNR| needed to be visible")
    min_voxels: int = Field(default=3, ge=1, description="smallest visible segmentation, voxels")
    min_diameter_mm: float = Field(default=2.0, ge=0, description="smallest visible diameter, mm")
    connectivity: Literal[1, 2, 3] = Field(default=3, description="component neighbourhood 6/18/26")

    @model_validator(mode="after")
    def _check_order(self) -> LesionSettings:
        if self.shell_inner_mm >= self.shell_outer_mm:
            raise ValueError(
                f"shell_inner_mm ({self.shell_inner_mm}) must be below shell_outer_mm "
                f"({self.shell_outer_mm})"
            )
        if self.grade_partial_min_hu > self.grade_dense_min_hu:
            raise ValueError(
                f"grade_partial_min_hu ({self.grade_partial_min_hu}) must not exceed "
                f"grade_dense_min_hu ({self.grade_dense_min_hu})"
            )
        return self

    def rules(self) -> dict[str, str]:
        """Each rule in words, with the current values."""
        return {
            "roi": "the annotation: label-map voxels (resampled nearest onto the CT grid) or "
            "voxels whose centre lies within the radius of a point; the same voxels on CT and sCT; "
            "it should cover the whole lesion",
            "roi_statistics": "mean, SD (ddof=1), median, 5th and 95th percentile of HU in the "
            f"ROI; calcified fraction = share of ROI voxels >= {self.calcified_threshold_hu:g} HU",
            "shell": f"voxels whose centre is > {self.shell_inner_mm:g} and <= "
            f"{self.shell_outer_mm:g} mm from the nearest ROI voxel centre (Euclidean, in mm), "
            "restricted to the background mask when one is given and to voxels whose "
            + (
                f"reference-CT HU lies in [{self.shell_hu_window[0]:g}, "
                f"{self.shell_hu_window[1]:g}] (the CSF/cord/soft-tissue surround of the paper's "
                "ROI, not bone, fat or air)"
                if self.shell_hu_window is not None
                else "any HU"
            )
            + f"; with fewer than {self.min_shell_voxels} such voxels the unwindowed shell is "
            "used",
            "cnr": "(mean_roi_hu - mean_shell_hu) / sd_shell_hu (ddof=1); +-inf when the shell "
            "SD is 0 and the means differ, 0 when they are equal",
            "visible": f"|CNR| >= {self.rose_threshold:g} (Rose criterion) and the segmentation "
            f"has >= {self.min_voxels} voxels and a largest diameter >= "
            f"{self.min_diameter_mm:g} mm",
            "segmentation": "threshold half-way between ROI mean and shell mean, on the side of "
            f"the contrast; inside the ROI dilated by {self.search_margin_mm:g} mm; "
            f"connected components ({ {1: 6, 2: 18, 3: 26}[self.connectivity] }-connectivity) "
            "overlapping the ROI; candidate voxels outside the ROI whose component (of such "
            "voxels) continues past the search region belong to an adjacent structure (e.g. "
            "bone) and are left out; empty when not visible",
            "diameter_axial_mm": "largest Feret diameter in the L-P plane over axial slices "
            "(slices along the array axis closest to S; voxel edge centres projected on L-P); "
            "0 when not visible",
            "diameter_sagittal_mm": "cranio-caudal voxel extent along S (range of S over the "
            "voxel face centres); 0 when not visible",
            "calcification_grade": f"from the CT ROI mean: none_or_barely < "
            f"{self.grade_partial_min_hu:g} HU <= partial < {self.grade_dense_min_hu:g} HU <= "
            "dense",
            "differences": "sCT minus CT; mean_relative_difference = (sCT - CT) / |CT| of the "
            "ROI means (NaN when |CT mean| < 1 HU)",
            "dice": "2|A&B|/(|A|+|B|) of the CT and sCT segmentations; 1 when both are empty, "
            "0 when one is",
            "mri": "when an MRI is given (resampled linearly onto the CT grid, same frame "
            "assumed): per-echo CNR = (ROI mean - shell mean) / noise SD of the echo (Rayleigh "
            "background outside the CT body; the shell SD when there is none); mri_cnr is the "
            "echo with the "
            f"largest |CNR|, mri_visible = |mri_cnr| >= {self.rose_threshold:g}",
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values plus the rules in words (under ``"rules"``)."""
        return {**self.model_dump(), "rules": self.rules()}
