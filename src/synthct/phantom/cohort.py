"""Phantom cohorts: seeded, deterministic sets of spine cases with CT, multi-echo MRI and truth.

A :class:`CohortSpec` (pydantic, loadable from YAML) says how many cases, which MRI protocol,
how anatomy varies and which lesions appear. :func:`generate_cohort` writes one folder per case
and a manifest (layout in :mod:`synthct.phantom.cohort_files`). The same spec, seed and synthct
version give identical voxel data: every random choice of case ``i`` comes from
``numpy.random.default_rng([seed, i])``, and rendering seeds derive from it.

:func:`paper_cohort` is the five-patient cohort of Fischer et al. 2025.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from scipy.spatial.transform import Rotation

from synthct.errors import SynthctError, WriteError
from synthct.geometry import Geometry
from synthct.imaging.labels import LESION_TISSUES, Tissue
from synthct.imaging.tissues import TISSUES
from synthct.io.atomic import (
    PARTIAL_PREFIX,
    atomic_directory,
    write_json_atomic,
    write_text_atomic,
)
from synthct.phantom import cohort_files as files
from synthct.phantom.anatomy import SpineSpec
from synthct.phantom.ct import render_ct
from synthct.phantom.lesions import LESION_TYPES, LesionSpec, PhantomModel
from synthct.phantom.levels import LEVEL_NAMES, level_index, parse_level
from synthct.phantom.mri import realism_preset, render_ct_and_mri, render_mri
from synthct.phantom.protocols import PRESETS, SpgrProtocol
from synthct.settings import SettingsBase
from synthct.version import __version__
from synthct.volume import LabelMap

#: Most voxels one phantom image may have (512 x 512 x 512): a finer grid would not fit in a
#: workstation's memory once supersampled and is refused before anything is rendered.
MAX_GRID_VOXELS = 512**3

#: Vertebrae drawn above and below the centre level: enough to fill a 250 mm field of view.
_LEVEL_MARGIN = 7


class CohortSpecError(SynthctError, ValueError):
    """A cohort specification outside the allowed values."""


class _Model(SettingsBase):
    """Frozen; unknown keys are refused (:class:`~synthct.settings.SettingsBase`)."""


class LesionRange(_Model):
    """How random lesions are drawn (uniform within each range)."""

    types: tuple[str, ...] = ("meningioma",)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    mean_hu: tuple[float, float] = (40.0, 1000.0)
    axial_diameter_mm: tuple[float, float] = (5.0, 12.0)
    sagittal_diameter_mm: tuple[float, float] = (8.0, 22.0)

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in value if t not in LESION_TYPES]
        if unknown or not value:
            raise ValueError(
                f"unknown lesion type(s) {unknown or value}; allowed: {', '.join(LESION_TYPES)}"
            )
        return value

    @field_validator("mean_hu", "axial_diameter_mm", "sagittal_diameter_mm")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"range must be (low, high) with low <= high, got {value}")
        return value


class CaseSpec(_Model):
    """An explicit case: where the field of view is centred and which lesions it holds."""

    centre_level: str
    lesions: tuple[dict[str, Any], ...] = ()
    spine: dict[str, Any] = Field(default_factory=dict)
    note: str = ""


class CohortSpec(_Model):
    """Everything that defines a phantom cohort (see the module docstring).

    Either ``cases`` lists explicit cases, or ``n_cases`` random ones are drawn with centre
    levels in ``levels`` and lesions from ``lesions``.
    """

    n_cases: int = Field(4, ge=1, le=10_000)
    seed: int = Field(0, ge=0)
    protocol: str = "paper_3t"
    voxel_size_mm: tuple[float, float, float] | None = None
    field_of_view_mm: tuple[float, float, float] | None = None
    orientation: Literal["sagittal", "axial", "coronal"] = "sagittal"
    levels: tuple[str, str] = ("C4", "L2")
    vary_anatomy: bool = True
    #: Draw lungs, aorta and ribs, and textured marrow (SpineSpec.thorax / trabecular_texture).
    thorax: bool = False
    trabecular_texture: bool = False
    lesions: LesionRange | None = LesionRange()
    cases: tuple[CaseSpec, ...] | None = None
    ct_voxel_size_mm: tuple[float, float, float] | None = None
    ct_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ct_translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    supersample: int = Field(2, ge=1, le=4)
    mr_noise_sd: float = Field(1e-3, ge=0.0)
    ct_noise_sd_hu: float = Field(12.0, ge=0.0)
    bias_field_strength: float = Field(0.1, ge=0.0)
    #: MRI realism preset (synthct.phantom.mri.REALISM_PRESETS): "classic" flat tissues and
    #: image-domain noise, or "realistic" (per-subject tissues, texture, B1 fields, k-space).
    mr_realism: Literal["classic", "realistic"] = "classic"
    montage: bool = False
    #: Also write the paper's failure: an sCT equal to the CT but with every lesion tissue
    #: rendered as CSF (same noise outside the lesions).
    failure_sct: bool = False

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown protocol {value!r}; allowed: {', '.join(PRESETS)}")
        return value

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: tuple[str, str]) -> tuple[str, str]:
        first = level_index(value[0], parameter="levels")
        last = level_index(value[1], parameter="levels")
        if last < first:
            raise ValueError(f"levels must go cranial to caudal, got {value}")
        return value

    @model_validator(mode="after")
    def _grids_fit_in_memory(self) -> CohortSpec:
        protocol = self.mr_protocol()
        grids: dict[str, tuple[int, ...]] = {"voxel_size_mm (--voxel-size)": protocol.shape}
        if self.ct_voxel_size_mm is not None:
            n = np.rint(np.asarray(protocol.field_of_view_mm) / np.asarray(self.ct_voxel_size_mm))
            grids["ct_voxel_size_mm (--ct-voxel-size)"] = tuple(int(max(v, 1)) for v in n)
        for option, shape in grids.items():
            voxels = int(np.prod(np.asarray(shape, dtype=np.float64)))
            if voxels > MAX_GRID_VOXELS:
                raise ValueError(
                    f"{option} gives a {' x '.join(map(str, shape))} grid ({voxels:.3g} voxels) "
                    f"over the {' x '.join(f'{v:g}' for v in protocol.field_of_view_mm)} mm field "
                    f"of view, more than the {MAX_GRID_VOXELS:.3g} synthct renders; use a voxel "
                    "size of at least ~0.5 mm (the paper's is 0.74 x 0.74 x 0.9) or a smaller "
                    "field_of_view_mm"
                )
        return self

    @property
    def case_count(self) -> int:
        """Number of cases the cohort will hold."""
        return len(self.cases) if self.cases is not None else self.n_cases

    def mr_protocol(self) -> SpgrProtocol:
        """The MRI protocol preset with the grid overrides applied."""
        protocol = PRESETS[self.protocol]
        changes: dict[str, object] = {}
        if self.voxel_size_mm is not None:
            changes["voxel_size_mm"] = self.voxel_size_mm
        if self.field_of_view_mm is not None:
            changes["field_of_view_mm"] = self.field_of_view_mm
        return protocol.with_changes(**changes) if changes else protocol

    @property
    def ct_offset(self) -> bool:
        """Whether the CT is written on its own grid (different voxels or a rigid offset)."""
        return (
            self.ct_voxel_size_mm is not None
            or any(self.ct_rotation_deg)
            or any(self.ct_translation_mm)
        )


def load_cohort_spec(**values: Any) -> CohortSpec:
    """Validate ``values`` into a :class:`CohortSpec`, turning pydantic errors into ours."""
    try:
        return CohortSpec(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise CohortSpecError(
            f"invalid cohort specification ({problems})",
            path="cohort spec",
            fix="see `synthct phantom --help` for the allowed values",
        ) from None


#: The paper's five patients (Fischer et al. 2025, Results and Figs. 1 and 3): levels as
#: published; the per-patient HU and sizes are our choices that reproduce the published means
#: (463.6 HU, 11.6 x 19.6 mm), the Fig. 1 case (550.8 HU, 13.8 x 16 mm) and the Fig. 3 case
#: (113 HU at T5-7). Positions in the canal are assumptions.
PAPER_PATIENTS: tuple[dict[str, Any], ...] = (
    {"level": "C5/6", "mean_hu": 551.0, "axial_diameter_mm": 13.8, "sagittal_diameter_mm": 16.0,
     "thickness_mm": 7.0, "position": "dorsal", "pattern": "dense"},
    {"level": "T1/2", "mean_hu": 320.0, "axial_diameter_mm": 10.5, "sagittal_diameter_mm": 18.5,
     "thickness_mm": 7.0, "position": "dorsolateral_left", "pattern": "partial"},
    {"level": "T4/5", "mean_hu": 568.0, "axial_diameter_mm": 11.0, "sagittal_diameter_mm": 19.0,
     "thickness_mm": 7.0, "position": "dorsolateral_right", "pattern": "dense"},
    {"level": "T5-7", "mean_hu": 113.0, "axial_diameter_mm": 10.9, "sagittal_diameter_mm": 24.5,
     "thickness_mm": 7.0, "position": "dorsal", "pattern": "partial"},
    {"level": "T8/9", "mean_hu": 766.0, "axial_diameter_mm": 11.8, "sagittal_diameter_mm": 20.0,
     "thickness_mm": 7.0, "position": "ventral", "pattern": "dense"},
)  # fmt: skip


def paper_cohort(**overrides: Any) -> CohortSpec:
    """The paper's cohort: five intradural meningiomas at C5/6, T1/2, T4/5, T5-7 and T8/9."""
    cases = tuple(
        CaseSpec(
            centre_level=_vertebra_of(p["level"]),
            lesions=({"type": "meningioma", **p},),
            note="Fischer 2025 patient-like case",
        )
        for p in PAPER_PATIENTS
    )
    values: dict[str, Any] = {"cases": cases, "protocol": "paper_3t", "seed": 2025}
    values.update(overrides)
    return load_cohort_spec(**values)


def _vertebra_of(level: str) -> str:
    """A vertebra at or next to a level reference (``"T5-7"`` -> ``"T6"``)."""
    ref = parse_level(level)
    names = ref.vertebrae
    return names[len(names) // 2]


# -- generation ------------------------------------------------------------------------------
ProgressCallback = Callable[[str, int, int], None]


def generate_cohort(
    spec: CohortSpec,
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    on_repair: Callable[[str, list[str]], None] | None = None,
) -> Path:
    """Write the cohort described by ``spec`` into ``out_dir``.

    Parameters
    ----------
    spec : CohortSpec
        What to generate.
    out_dir : path
        Cohort folder; must not exist unless ``overwrite`` (delete and regenerate) or
        ``resume`` (keep complete cases made from the same spec, generate the rest).
    progress : callable, optional
        Called as ``progress(case_id, done, total)`` after each case.
    on_repair : callable, optional
        With ``resume``: called as ``on_repair(case_id, problems)`` for each finished case whose
        files no longer match its checksums (missing, truncated or changed); that case is
        regenerated. Stale ``.partial-*`` folders of an interrupted run are removed.

    Returns
    -------
    Path
        The cohort folder (with ``manifest.csv`` and ``manifest.json``).
    """
    out = Path(out_dir)
    spec_json = spec.model_dump(mode="json")
    if out.exists() and not (overwrite or resume):
        raise WriteError(
            "the output folder already exists",
            path=out,
            fix="choose a new folder, or pass --overwrite to replace it or --resume to finish it",
        )
    if out.exists() and overwrite:
        _remove_cohort(out)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "cohort_spec.json"
    if resume and spec_path.exists():
        previous = json.loads(spec_path.read_text(encoding="utf-8"))
        if previous != spec_json:
            raise WriteError(
                "--resume asked, but the folder was made from a different cohort specification",
                path=out,
                fix="rerun with the same options, or use --overwrite",
            )
    write_json_atomic(spec_path, spec_json)
    for stale in out.glob(f"{PARTIAL_PREFIX}*"):  # left by a killed run
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink()
    rows = []
    total = spec.case_count
    for index in range(total):
        cid = files.case_id(index)
        case_dir = out / cid
        done = (case_dir / files.CASE_JSON).is_file()
        if done and resume:
            problems = files.verify_case(case_dir)
            if problems:
                done = False
                if on_repair is not None:
                    on_repair(cid, problems)
        if not done:
            with atomic_directory(case_dir, overwrite=True) as tmp:
                _write_case(spec, index, tmp)
        rows.append(files.manifest_row(out, case_dir))
        if progress is not None:
            progress(cid, index + 1, total)
    write_text_atomic(out / files.MANIFEST_CSV, files.manifest_rows_csv(rows))
    write_json_atomic(
        out / files.MANIFEST_JSON,
        {"synthct_version": __version__, "spec": spec_json, "cases": rows},
    )
    return out


def _remove_cohort(folder: Path) -> None:
    if not (folder / "cohort_spec.json").exists() and any(folder.iterdir()):
        raise WriteError(
            "refusing to overwrite a folder that is not a synthct phantom cohort",
            path=folder,
            fix="choose an empty or new output folder",
        )
    shutil.rmtree(folder)


def case_plan(spec: CohortSpec, index: int) -> tuple[SpineSpec, list[LesionSpec], str, int]:
    """The spine, lesions, centre level and render seed of case ``index`` (deterministic)."""
    rng = np.random.default_rng([spec.seed, index])
    explicit = spec.cases[index] if spec.cases is not None else None
    if explicit is not None:
        centre = explicit.centre_level
    else:
        lo, hi = (level_index(v) for v in spec.levels)
        centre = LEVEL_NAMES[int(rng.integers(lo, hi + 1))]
    c = level_index(centre, parameter="centre_level")
    spine_values: dict[str, Any] = {
        "first_level": LEVEL_NAMES[max(c - _LEVEL_MARGIN, 0)],
        "last_level": LEVEL_NAMES[min(c + _LEVEL_MARGIN, len(LEVEL_NAMES) - 1)],
        "seed": int(rng.integers(0, 2**31 - 1)),
        "thorax": spec.thorax,
        "trabecular_texture": spec.trabecular_texture,
    }
    if spec.vary_anatomy:
        spine_values.update(
            cervical_lordosis_deg=float(rng.uniform(10, 30)),
            thoracic_kyphosis_deg=float(rng.uniform(25, 45)),
            lumbar_lordosis_deg=float(rng.uniform(35, 55)),
            scoliosis_deg=float(rng.uniform(-6, 6)),
            subcutaneous_fat_mm=float(rng.uniform(6, 25)),
            body_size_scale=float(rng.uniform(0.9, 1.1)),
        )
    if explicit is not None:
        spine_values.update(explicit.spine)
    spine = SpineSpec(**spine_values)
    lesions: list[LesionSpec] = []
    if explicit is not None:
        for k, values in enumerate(explicit.lesions):
            lesions.append(LesionSpec(**{"seed": int(rng.integers(0, 2**31 - 1)) + k, **values}))
    elif spec.lesions is not None and rng.random() < spec.lesions.probability:
        r = spec.lesions
        kind = str(rng.choice(r.types))
        offset = float(rng.uniform(-4.0, 4.0))
        lesions.append(
            LesionSpec(
                type=kind,
                level=centre,
                axial_diameter_mm=float(rng.uniform(*r.axial_diameter_mm)),
                sagittal_diameter_mm=float(rng.uniform(*r.sagittal_diameter_mm)),
                mean_hu=_draw_mean_hu(rng, kind, r.mean_hu),
                offset_mm=offset,
                seed=int(rng.integers(0, 2**31 - 1)),
            )
        )
    render_seed = int(rng.integers(0, 2**31 - 1))
    return spine, lesions, centre, render_seed


def _draw_mean_hu(rng: np.random.Generator, kind: str, wanted: tuple[float, float]) -> float | None:
    """A mean HU within ``wanted`` that the lesion type can reach (None: not calcifiable)."""
    info = LESION_TYPES[kind]
    if info.dense_tissue is None:
        return None
    base_hu = TISSUES[info.base_tissue].ct_hu
    dense_hu = TISSUES[info.dense_tissue].ct_hu
    lo, hi = max(wanted[0], base_hu), min(wanted[1], dense_hu)
    if lo > hi:
        raise CohortSpecError(
            f"lesion mean HU range {wanted} does not overlap what a {kind} can have "
            f"({base_hu:g}..{dense_hu:g} HU)",
            path="lesions.mean_hu",
            fix="widen the HU range or drop that lesion type",
        )
    return float(rng.uniform(lo, hi))


class LesionsAsCSF:
    """A tissue model that shows every lesion tissue as CSF: the paper's sCT failure."""

    def __init__(self, model: PhantomModel) -> None:
        self.model = model
        self._table = np.arange(256, dtype=np.uint8)
        self._table[[int(t) for t in LESION_TISSUES]] = Tissue.CSF

    def labels_on(self, geometry: Geometry) -> NDArray[np.uint8]:
        """The model's labels with lesion tissues relabelled as CSF."""
        return self._table[self.model.labels_on(geometry)]


def ct_geometry(spec: CohortSpec, mr_geometry: Geometry, centre_lps_mm: np.ndarray) -> Geometry:
    """The CT grid: the MR grid, or a copy moved by the spec's rigid offset about the centre."""
    if not spec.ct_offset:
        return mr_geometry
    spacing = np.asarray(spec.ct_voxel_size_mm or mr_geometry.spacing_mm)
    extent = np.asarray(mr_geometry.extent_mm)
    shape = np.maximum(np.rint(extent / spacing).astype(int), 1)
    rotation = Rotation.from_euler("xyz", spec.ct_rotation_deg, degrees=True).as_matrix()
    direction = rotation @ mr_geometry.direction
    centre = centre_lps_mm + np.asarray(spec.ct_translation_mm)
    origin = centre - direction @ (spacing * (shape - 1) / 2.0)
    return Geometry.from_parameters(tuple(shape), tuple(spacing), tuple(origin), direction)


def _write_case(spec: CohortSpec, index: int, folder: Path) -> None:
    spine, lesions, centre, seed = case_plan(spec, index)
    model = PhantomModel(spine, lesions)
    protocol = spec.mr_protocol()
    centre_lps = model.spine.canal_centre_lps_mm(centre)
    mr_grid = protocol.geometry(center_lps_mm=centre_lps, orientation=spec.orientation)
    ct_grid = ct_geometry(spec, mr_grid, centre_lps)
    if ct_grid is mr_grid:
        # One sampling pass gives both images (identical to two separate renders).
        ct, mr = render_ct_and_mri(
            model,
            mr_grid,
            protocol,
            supersample=spec.supersample,
            seed=seed,
            noise_sd_hu=spec.ct_noise_sd_hu,
            noise_sd=spec.mr_noise_sd,
            bias_field_strength=spec.bias_field_strength,
            realism=realism_preset(spec.mr_realism),
        )
    else:
        ct = render_ct(
            model,
            ct_grid,
            supersample=spec.supersample,
            noise_sd_hu=spec.ct_noise_sd_hu,
            seed=seed,
        )
        mr = render_mri(
            model,
            mr_grid,
            protocol,
            supersample=spec.supersample,
            noise_sd=spec.mr_noise_sd,
            bias_field_strength=spec.bias_field_strength,
            seed=seed,
            realism=realism_preset(spec.mr_realism),
        )
    failure = None
    if spec.failure_sct:
        failure = render_ct(
            LesionsAsCSF(model),
            ct_grid,
            supersample=spec.supersample,
            noise_sd_hu=spec.ct_noise_sd_hu,
            seed=seed,
        )
    names = {int(t): t.name.lower() for t in Tissue}
    tissue = LabelMap(model.labels_on(mr_grid), mr_grid.affine, label_names=names)
    lesion_names = {inst.id: f"{inst.type}@{inst.level}" for inst in model.lesions}
    lesion_mr = LabelMap(model.lesion_labels_on(mr_grid), mr_grid.affine, label_names=lesion_names)
    lesion_ct = None
    if spec.ct_offset:
        lesion_ct = LabelMap(
            model.lesion_labels_on(ct_grid), ct_grid.affine, label_names=lesion_names
        )
    meta = {
        "case_id": files.case_id(index),
        "synthct_version": __version__,
        "centre_level": centre,
        "render_seed": seed,
        **model.to_dict(),
        "protocol_preset": protocol.name,
        "mr_realism": spec.mr_realism,
        "ct_to_mr": {
            "rotation_deg_xyz": list(spec.ct_rotation_deg),
            "translation_mm": list(spec.ct_translation_mm),
            "about_lps_mm": [float(v) for v in centre_lps],
            "note": "the CT grid is the MR grid rotated (extrinsic x, y, z in LPS) about "
            "about_lps_mm and translated; both show the same anatomy",
        },
    }
    point = model.lesions[0].centre_lps_mm if model.lesions else centre_lps
    files.write_case_files(
        folder,
        meta=meta,
        ct=ct,
        mr=mr,
        tissue=tissue,
        lesions_mr=lesion_mr,
        lesions_ct=lesion_ct,
        montage_point_lps_mm=point if spec.montage else None,
        failure_sct=failure,
    )
