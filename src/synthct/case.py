"""One case: named, lazily read volumes (CT, MR channels, sCT, label maps, masks) and metadata.

Every stage reads its inputs as a :class:`Case` (the phantom cohort, a dataset folder, training,
validation, the audit). A case holds *paths* by role and reads a volume only when asked, once;
:meth:`Case.unload` drops what was read, so a loop over a large dataset keeps one case in memory.

Roles
-----
==================  ==========================================================================
role                volume
==================  ==========================================================================
``ct``              CT in HU (:class:`~synthct.volume.CTVolume`)
``mr``              the MR channels, one file each or one 4D file: multi-echo magnitudes, a
                    single T1w or T2w, Dixon water/fat ... (:class:`~synthct.volume.MultiEchoMR`)
``sct``             the synthetic CT in HU (:class:`~synthct.volume.SyntheticCT`)
``sct_failure``     a phantom's failure sCT (the paper's failure: lesions rendered as CSF)
``tissue_labels``   ground-truth tissue labels (:class:`~synthct.volume.LabelMap`)
``lesion_labels``   lesion instance ids, 0 = none (on the MR grid for phantoms)
``lesion_labels_ct`` the same on the CT grid (phantoms whose CT has its own grid)
``body_mask``       body mask, non-zero = body
==================  ==========================================================================

Metadata (:attr:`Case.meta`) holds the known fields ``patient_id`` (defaults to the case id),
``region``, ``split``, ``protocol``, ``notes``, ``lesion_points``, ``n_lesions`` and
``lesion_types``; anything else a manifest carried is kept untouched in :attr:`Case.extra`.
Of those, ``ct_series_uid`` and ``mr_series_uid`` (:data:`SERIES_UID_COLUMNS`) pick one DICOM
series of a folder that holds several (a localizer beside the scan, a flat study export).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from synthct.errors import ReadError, VolumeKindError
from synthct.volume import CTVolume, LabelMap, MultiEchoMR, SyntheticCT, Volume

__all__ = ["IMAGE_ROLES", "META_FIELDS", "SERIES_UID_COLUMNS", "Case"]

#: Every image role, in the order manifests list them.
IMAGE_ROLES: tuple[str, ...] = (
    "ct",
    "mr",
    "sct",
    "sct_failure",
    "tissue_labels",
    "lesion_labels",
    "lesion_labels_ct",
    "body_mask",
)
#: Known metadata fields, in the order manifests list them.
META_FIELDS: tuple[str, ...] = (
    "patient_id",
    "region",
    "split",
    "protocol",
    "n_lesions",
    "lesion_types",
    "lesion_points",
    "notes",
)
#: Extra columns holding the SeriesInstanceUID to read from a role's DICOM folder.
SERIES_UID_COLUMNS: dict[str, str] = {"ct": "ct_series_uid", "mr": "mr_series_uid"}
_KIND = {
    "ct": "ct",
    "sct": "sct",
    "sct_failure": "sct",
    "tissue_labels": "label",
    "lesion_labels": "label",
    "lesion_labels_ct": "label",
    "body_mask": "label",
}

PathLike = str | os.PathLike[str]


class Case:
    """One case of a cohort or dataset: image paths by role, metadata, volumes read on demand.

    Parameters
    ----------
    case_id : str
        Unique name of the case within its manifest.
    images : mapping of role to path or sequence of paths
        Image files or DICOM folders by role (:data:`IMAGE_ROLES`); ``mr`` may list several
        channel files. Empty entries are dropped.
    meta : mapping, optional
        Known metadata (:data:`META_FIELDS`).
    extra : mapping, optional
        Any other columns, kept as they were read.

    Examples
    --------
    >>> case = Case("p1", {"ct": "p1/ct.nii.gz", "mr": ["p1/t1.nii.gz"]}, {"region": "HN"})
    >>> case.patient_id, case.has("sct")
    ('p1', False)
    """

    def __init__(
        self,
        case_id: str,
        images: Mapping[str, PathLike | Iterable[PathLike] | None],
        meta: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        unknown = sorted(set(images) - set(IMAGE_ROLES))
        if unknown:
            raise ValueError(f"unknown image role(s) {unknown}; roles are {IMAGE_ROLES}")
        self.case_id = str(case_id)
        self.images: dict[str, tuple[Path, ...]] = {}
        for role in IMAGE_ROLES:
            value = images.get(role)
            if value is None:
                continue
            paths = (
                (Path(value),)
                if isinstance(value, str | os.PathLike)
                else tuple(Path(p) for p in value)
            )
            paths = tuple(p for p in paths if str(p) not in ("", "."))
            if paths:
                self.images[role] = paths
        self.meta: dict[str, Any] = {k: v for k, v in (meta or {}).items() if v not in (None, "")}
        self.extra: dict[str, Any] = dict(extra or {})
        self._loaded: dict[str, Volume] = {}

    # -- metadata --------------------------------------------------------------------------------
    @property
    def patient_id(self) -> str:
        """The patient the case belongs to (``meta["patient_id"]``, else the case id)."""
        return str(self.meta.get("patient_id") or self.case_id)

    @property
    def region(self) -> str | None:
        """Anatomical region (e.g. ``HN``, ``TH``, ``AB``, ``brain``), when known."""
        value = self.meta.get("region")
        return None if value is None else str(value)

    @property
    def split(self) -> str | None:
        """The split the manifest assigns (``train``, ``validation``, ``test``), if any."""
        value = self.meta.get("split")
        return None if value is None else str(value).strip().lower() or None

    # -- paths -----------------------------------------------------------------------------------
    def has(self, role: str) -> bool:
        """Whether the case has an image for ``role``."""
        return role in self.images

    def paths(self, role: str) -> tuple[Path, ...]:
        """The paths of ``role`` (empty when absent)."""
        return self.images.get(role, ())

    def path(self, role: str) -> Path | None:
        """The single path of ``role`` (``None`` when absent)."""
        paths = self.paths(role)
        return paths[0] if paths else None

    def with_images(self, **images: PathLike | Iterable[PathLike] | None) -> Case:
        """A copy with some roles replaced (``None`` removes a role)."""
        merged: dict[str, Any] = dict(self.images)
        merged.update(images)
        return Case(self.case_id, merged, self.meta, self.extra)

    def with_meta(self, **meta: Any) -> Case:
        """A copy with some metadata fields replaced."""
        return Case(self.case_id, self.images, {**self.meta, **meta}, self.extra)

    # -- volumes ---------------------------------------------------------------------------------
    def volume(self, role: str) -> Volume:
        """The volume of ``role``, read on first use and kept until :meth:`unload`.

        Raises
        ------
        ReadError
            The case has no image for ``role``, or it cannot be read.
        """
        if role in self._loaded:
            return self._loaded[role]
        paths = self.paths(role)
        if not paths:
            raise ReadError(
                f"case {self.case_id!r} has no {role} image",
                path=self.case_id,
                fix=f"add a {role} column/file for this case",
            )
        series_uid = str(self.extra.get(SERIES_UID_COLUMNS.get(role, ""), "") or "") or None
        if role == "mr":
            from synthct.io.echoes import read_echoes

            volume: Volume = read_echoes(paths, series_uid=series_uid)
        else:
            from synthct.io import read_volume

            if len(paths) > 1:
                raise ReadError(
                    f"case {self.case_id!r}: {role} lists {len(paths)} files, it takes one",
                    path=paths[0],
                    fix=f"give a single {role} file",
                )
            volume = read_volume(paths[0], kind=_KIND[role], series_uid=series_uid)
        self._loaded[role] = volume
        return volume

    def ct(self) -> CTVolume:
        """The CT in HU."""
        return _typed(self.volume("ct"), CTVolume, self, "ct")

    def mr(self) -> MultiEchoMR:
        """All MR channels as one volume ``[channel, i, j, k]``."""
        return _typed(self.volume("mr"), MultiEchoMR, self, "mr")

    def sct(self) -> SyntheticCT:
        """The synthetic CT in HU."""
        return _typed(self.volume("sct"), SyntheticCT, self, "sct")

    def labels(self, role: str) -> LabelMap:
        """A label map role (``tissue_labels``, ``lesion_labels``, ``body_mask`` ...)."""
        return _typed(self.volume(role), LabelMap, self, role)

    def unload(self) -> None:
        """Forget the volumes read so far (they are read again when asked for)."""
        self._loaded.clear()

    def __repr__(self) -> str:
        parts = []
        for role, paths in self.images.items():
            if role in self._loaded:
                parts.append(f"{role}={self._loaded[role]!r}")
            else:
                shown = ";".join(p.name for p in paths)
                parts.append(f"{role}={shown!r} (not read)")
        meta = "".join(f", {k}={v!r}" for k, v in self.meta.items())
        return f"Case({self.case_id!r}{meta}, " + ", ".join(parts) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Case):
            return NotImplemented
        return (self.case_id, self.images, self.meta, self.extra) == (
            other.case_id,
            other.images,
            other.meta,
            other.extra,
        )

    __hash__ = None  # type: ignore[assignment]


def _typed(volume: Volume, cls: type[Any], case: Case, role: str) -> Any:
    if not isinstance(volume, cls):
        raise VolumeKindError(
            f"case {case.case_id!r}: the {role} image is a {volume.kind}, not a {cls.__name__}",
            path=case.path(role),
            fix=f"check the {role} column of the manifest",
        )
    return volume
