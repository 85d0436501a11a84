"""A cohort of many subjects drawn from a few real CTs, in the phantom cohort layout.

Each case is one :func:`~synthct.phantom.subject_variation.make_subject` draw from one of the
source CTs (elastic deformation, scaling, marrow by age), its tissue map and the multi-echo MRI
simulated from it, written like :func:`synthct.phantom.cohort.generate_cohort`'s cases so
training, evaluation and the audit read them unchanged. Cases are lesion-free; insert lesions
with :func:`synthct.phantom.ct_insertion.write_ct_derived_case` (``variation=``) per case.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthct.phantom.ct_derived import derive_tissue_map
from synthct.phantom.model import PhantomParameterError
from synthct.phantom.subject_variation import SubjectVariation, make_subject
from synthct.version import __version__
from synthct.volume import CTVolume, LabelMap


def write_ct_derived_cohort(
    sources: Sequence[tuple[CTVolume, LabelMap | None]],
    out_dir: str | os.PathLike[str],
    *,
    subjects_per_ct: int,
    protocol: str = "paper_3t",
    variation: SubjectVariation | None = None,
    supersample: int = 2,
    mr_noise_sd: float = 1e-3,
    seed: int = 0,
    overwrite: bool = False,
    mr_realism: str = "classic",
) -> Path:
    """Write ``len(sources) * subjects_per_ct`` lesion-free subjects and their manifest.

    Parameters
    ----------
    sources : sequence of (CTVolume, LabelMap or None)
        Real CTs in HU with their TotalSegmentator labels (or None).
    out_dir : path
        Cohort folder to create (``case-000``, ... and ``manifest.csv``); written atomically.
    subjects_per_ct : int
        Subjects drawn from each CT.
    protocol : str
        MRI protocol preset; the MRI is rendered on the CT grid.
    variation : SubjectVariation, optional
        Amplitudes of the subject draw (its defaults when omitted).
    supersample : int
        Sub-voxels per voxel edge of the MRI render.
    mr_noise_sd : float
        MRI noise SD (see :func:`synthct.phantom.mri.render_mri`).
    seed : int
        Seeds subject ``n`` with ``[seed, n]`` and its MRI noise with ``seed + n``.
    overwrite : bool
        Replace an existing folder.
    mr_realism : {"classic", "realistic"}
        MRI realism preset (:data:`synthct.phantom.mri.REALISM_PRESETS`).

    Returns
    -------
    Path
        The cohort folder.
    """
    from synthct.io.atomic import atomic_directory, write_json_atomic, write_text_atomic
    from synthct.phantom import cohort_files as files
    from synthct.phantom.mri import realism_preset, render_mri
    from synthct.phantom.protocols import get_preset

    if subjects_per_ct < 1 or not sources:
        raise PhantomParameterError(
            f"need at least one source CT and one subject per CT, got {len(sources)} and "
            f"{subjects_per_ct}",
            path="subjects_per_ct",
            fix="give one or more CTs and subjects_per_ct >= 1",
        )
    preset = get_preset(protocol)
    realism = realism_preset(mr_realism)
    out = Path(out_dir)
    rows = []
    with atomic_directory(out, overwrite=overwrite) as tmp:
        n = 0
        for ct, labels in sources:
            derived = derive_tissue_map(ct, labels)
            for _ in range(subjects_per_ct):
                subject_seed = int(np.random.SeedSequence([seed, n]).generate_state(1)[0])
                subject = make_subject(
                    ct, labels, seed=subject_seed, variation=variation, derived=derived
                )
                mr = render_mri(
                    subject.model(),
                    ct.geometry,
                    preset,
                    supersample=supersample,
                    noise_sd=mr_noise_sd,
                    seed=seed + n,
                    realism=realism,
                )
                no_lesions = LabelMap(
                    np.zeros(ct.spatial_shape, dtype=np.uint16), ct.affine, label_names={}
                )
                centre = ct.geometry.index_to_lps((np.asarray(ct.spatial_shape) - 1) / 2.0)
                meta = {
                    "case_id": files.case_id(n),
                    "synthct_version": __version__,
                    "mode": "ct-derived-subject",
                    "source_ct": ct.source,
                    "source_labels": None if labels is None else labels.source,
                    "derived_from_hu_alone": list(subject.hu_only),
                    "subject": subject.describe(),
                    "render_seed": seed + n,
                    "protocol_preset": preset.name,
                    "mr_realism": mr_realism,
                    "lesions": [],
                    "ct_to_mr": {
                        "rotation_deg_xyz": [0.0, 0.0, 0.0],
                        "translation_mm": [0.0, 0.0, 0.0],
                        "about_lps_mm": [float(v) for v in centre],
                    },
                }
                case_dir = tmp / files.case_id(n)
                case_dir.mkdir()
                files.write_case_files(
                    case_dir,
                    meta=meta,
                    ct=subject.ct,
                    mr=mr,
                    tissue=subject.tissue_map,
                    lesions_mr=no_lesions,
                )
                rows.append(files.manifest_row(tmp, case_dir))
                n += 1
        write_text_atomic(tmp / files.MANIFEST_CSV, files.manifest_rows_csv(rows))
        write_json_atomic(
            tmp / files.MANIFEST_JSON,
            {"synthct_version": __version__, "mode": "ct-derived-subject", "cases": rows},
        )
    return out
