"""Layout of a phantom cohort on disk, and reading a case back.

::

    cohort/
      manifest.csv         one row per case: case_id, ct, mr_echoes (';'-separated), labels ...
      manifest.json        the cohort specification, synthct version, per-case file lists
      case-000/
        ct.nii.gz          CT in HU (on the CT grid)
        mr_echo-1.nii.gz   one file per echo, protocol in the JSON sidecar
        mr_echo-2.nii.gz
        tissue_labels.nii.gz   ground-truth tissue labels on the MR grid
        lesion_labels.nii.gz   lesion instance ids on the MR grid (0 = none)
        lesion_labels_ct.nii.gz  the same on the CT grid (when the grids differ)
        sct_lesions_as_csf.nii.gz  optional: the paper's failure, lesions rendered as CSF
        case.json          spine, lesions (type, level, centre, diameters, HU), grids, seeds,
                           the CT-to-MR rigid offset and a checksum of every voxel array
        montage.png        optional: axial and sagittal CT and echoes, lesions outlined

A case folder is written under a temporary name and renamed when complete, so a folder named
``case-NNN`` is always whole; ``case.json`` inside it is the last file written. ``case.json``
holds the SHA-256 of each file's bytes (``file_sha256``, image files and their sidecars) besides
the voxel checksums; :func:`verify_case` checks a finished case against them (a resumed cohort
regenerates the cases it finds damaged).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from synthct.errors import ReadError, SynthctError
from synthct.io import read_volume, write_volume
from synthct.io.atomic import write_json_atomic
from synthct.io.checksums import sha256_of
from synthct.io.echoes import read_echoes
from synthct.io.image_files import sidecar_path
from synthct.volume import CTVolume, LabelMap, MRProtocol, MultiEchoMR, SyntheticCT, Volume

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
CASE_JSON = "case.json"
CT_FILE = "ct.nii.gz"
TISSUE_FILE = "tissue_labels.nii.gz"
LESION_FILE = "lesion_labels.nii.gz"
LESION_CT_FILE = "lesion_labels_ct.nii.gz"
MONTAGE_FILE = "montage.png"
FAILURE_SCT_FILE = "sct_lesions_as_csf.nii.gz"
MANIFEST_COLUMNS = (
    "case_id",
    "ct",
    "mr_echoes",
    "tissue_labels",
    "lesion_labels",
    "lesion_labels_ct",
    "n_lesions",
    "lesion_types",
    "sct_failure",
)


def echo_file(index: int) -> str:
    """File name of echo ``index`` (0-based) inside a case folder."""
    return f"mr_echo-{index + 1}.nii.gz"


def case_id(index: int) -> str:
    """Folder name and id of case ``index``."""
    return f"case-{index:03d}"


def array_checksum(volume: Volume) -> str:
    """sha256 of the voxel bytes, dtype and shape (identical data <=> identical checksum)."""
    digest = hashlib.sha256()
    digest.update(f"{volume.dtype.str}{volume.shape}".encode())
    digest.update(np.ascontiguousarray(volume.array).tobytes())
    return digest.hexdigest()


def write_case_files(
    folder: Path,
    *,
    meta: dict[str, Any],
    ct: CTVolume,
    mr: MultiEchoMR,
    tissue: LabelMap,
    lesions_mr: LabelMap,
    lesions_ct: LabelMap | None = None,
    montage_point_lps_mm: ArrayLike | None = None,
    failure_sct: CTVolume | None = None,
) -> None:
    """Write one case in the cohort layout; ``case.json`` (``meta`` + files) goes last.

    The CT is stored as whole HU in int16, as scanners store it. Each echo gets its own file
    whose sidecar holds that echo's time and the shared TR, flip angle and field strength.
    """
    ct = ct.with_array(np.rint(ct.array).astype(np.int16))
    protocol = mr.protocol
    # the MRI realism preset travels with the echoes (the audit's calibrated domain reads it)
    declared = {"mr_realism": str(meta["mr_realism"])} if "mr_realism" in meta else {}
    outputs: list[tuple[Volume, Path]] = [(ct, folder / CT_FILE)]
    echo_names = []
    for e in range(mr.n_echoes):
        echo_protocol = None
        if protocol is not None:
            echo_protocol = MRProtocol(
                (protocol.echo_times_ms[e],),
                protocol.repetition_time_ms,
                protocol.flip_angle_deg,
                protocol.field_strength_t,
                {**protocol.extra, **declared},
            )
        name = echo_file(e)
        echo = MultiEchoMR(mr.array[e : e + 1], mr.affine, protocol=echo_protocol)
        outputs.append((echo, folder / name))
        echo_names.append(name)
    outputs += [(tissue, folder / TISSUE_FILE), (lesions_mr, folder / LESION_FILE)]
    if lesions_ct is not None:
        outputs.append((lesions_ct, folder / LESION_CT_FILE))
    if failure_sct is not None:
        failure_sct = SyntheticCT(np.rint(failure_sct.array).astype(np.int16), failure_sct.affine)
        outputs.append((failure_sct, folder / FAILURE_SCT_FILE))
    # gzip compression dominates writing and releases the GIL: write files side by side.
    with ThreadPoolExecutor(max_workers=min(len(outputs), os.cpu_count() or 1)) as pool:
        list(pool.map(lambda item: write_volume(*item), outputs))
    checksums = {
        CT_FILE: array_checksum(ct),
        TISSUE_FILE: array_checksum(tissue),
        LESION_FILE: array_checksum(lesions_mr),
    }
    for e, name in enumerate(echo_names):
        checksums[name] = array_checksum(mr.echo(e))
    if lesions_ct is not None:
        checksums[LESION_CT_FILE] = array_checksum(lesions_ct)
    if failure_sct is not None:
        checksums[FAILURE_SCT_FILE] = array_checksum(failure_sct)
    if montage_point_lps_mm is not None:
        from synthct.figures.montage import save_montage

        save_montage(
            folder / MONTAGE_FILE,
            ct=ct,
            mr=mr,
            point_lps_mm=montage_point_lps_mm,
            lesions=(lesions_ct if lesions_ct is not None else lesions_mr)
            if lesions_mr.labels()
            else None,
            title=f"{meta.get('case_id', folder.name)}: "
            + (", ".join(lesions_mr.label_names.values()) or "no lesion"),
        )
    written = [path for _, path in outputs]
    written += [p for p in (sidecar_path(path) for path in written) if p.is_file()]
    record = {
        **meta,
        "protocol": None if protocol is None else protocol.to_dict(),
        "mr_geometry": mr.geometry.to_dict(),
        "ct_geometry": ct.geometry.to_dict(),
        "files": {
            "ct": CT_FILE,
            "mr_echoes": echo_names,
            "tissue_labels": TISSUE_FILE,
            "lesion_labels": LESION_FILE,
            "lesion_labels_ct": LESION_CT_FILE if lesions_ct is not None else LESION_FILE,
            "sct_failure": FAILURE_SCT_FILE if failure_sct is not None else "",
        },
        "checksums_sha256": checksums,
        "file_sha256": {p.name: sha256_of(p) for p in sorted(written)},
    }
    write_json_atomic(folder / CASE_JSON, record)


def verify_case(folder: str | os.PathLike[str]) -> list[str]:
    """What is wrong with a finished case folder: ``[]`` when every file matches ``case.json``.

    Files are checked by the SHA-256 of their bytes (``file_sha256``); a case written before
    those existed is checked by reading each image and comparing its voxel checksum.
    """
    case_dir = Path(folder)
    try:
        meta = json.loads((case_dir / CASE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{CASE_JSON} unreadable ({exc})"]
    problems = []
    by_bytes = meta.get("file_sha256")
    expected = by_bytes if isinstance(by_bytes, dict) else meta.get("checksums_sha256", {})
    for name, digest in expected.items():
        path = case_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif (sha256_of(path) if by_bytes else _voxel_checksum(path)) != digest:
            problems.append(f"{name} does not match its checksum (truncated or changed)")
    return problems


def _voxel_checksum(path: Path) -> str | None:
    kind = "ct" if path.name == CT_FILE else "sct" if path.name == FAILURE_SCT_FILE else None
    try:
        volume = read_volume(path, kind=kind or ("mr" if path.name.startswith("mr_") else "label"))
    except SynthctError:
        return None
    if isinstance(volume, MultiEchoMR):
        return array_checksum(volume.echo(0))
    return array_checksum(volume)


def manifest_rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The manifest CSV text for ``rows`` (columns :data:`MANIFEST_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in MANIFEST_COLUMNS})
    return buffer.getvalue()


def read_manifest(folder: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Rows of a cohort's ``manifest.csv`` as written (paths relative to the cohort folder).

    Read by the one manifest reader (:func:`synthct.manifest.read_rows`); use
    :func:`synthct.manifest.read_manifest` for :class:`~synthct.case.Case` objects.
    """
    from synthct.manifest import read_rows

    path = Path(folder) / MANIFEST_CSV
    if not path.is_file():
        raise ReadError(
            "no manifest.csv: not a synthct phantom cohort (or the run did not finish)",
            path=folder,
            fix="generate it with `synthct phantom --out FOLDER` (rerun to complete it)",
        )
    rows, columns, _ = read_rows(path)
    return [{c: str(row.get(c, "")) for c in columns} for _, row in rows]


class PhantomCase:
    """One case of a cohort folder, loaded lazily.

    Parameters
    ----------
    folder : path
        The ``case-NNN`` folder.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / CASE_JSON
        if not meta_path.is_file():
            raise ReadError(
                "no case.json: not a complete phantom case",
                path=self.folder,
                fix="regenerate the cohort (incomplete cases are never left under this name)",
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))

    @property
    def case_id(self) -> str:
        """The case's id (its folder name)."""
        return str(self.meta["case_id"])

    def ct(self) -> CTVolume:
        """The CT in HU."""
        volume = read_volume(self.folder / CT_FILE, kind="ct")
        assert isinstance(volume, CTVolume)
        return volume

    def mr(self) -> MultiEchoMR:
        """All echoes as one multi-echo volume."""
        return read_echoes([self.folder / f for f in self.meta["files"]["mr_echoes"]])

    def tissue_labels(self) -> LabelMap:
        """Ground-truth tissue labels on the MR grid."""
        return self._labels(TISSUE_FILE)

    def failure_sct(self) -> SyntheticCT:
        """The paper's failure sCT (lesions rendered as CSF), when the cohort has it."""
        name = self.meta["files"].get("sct_failure")
        if not name:
            raise ReadError(
                "this case has no failure sCT",
                path=self.folder,
                fix="generate the cohort with failure_sct=True (--failure-sct)",
            )
        volume = read_volume(self.folder / name, kind="sct")
        assert isinstance(volume, SyntheticCT)
        return volume

    def lesion_labels(self, *, grid: str = "mr") -> LabelMap:
        """Lesion instance ids on the MR grid (``grid="mr"``) or on the CT grid (``"ct"``)."""
        name = (
            LESION_CT_FILE
            if grid == "ct" and (self.folder / LESION_CT_FILE).exists()
            else (LESION_FILE)
        )
        return self._labels(name)

    def lesions(self) -> list[dict[str, Any]]:
        """Lesion metadata (type, level, centre_lps_mm, diameters, HU, ...)."""
        return list(self.meta.get("lesions", []))

    def _labels(self, name: str) -> LabelMap:
        volume = read_volume(self.folder / name, kind="label")
        assert isinstance(volume, LabelMap)
        return volume


def manifest_row(cohort: Path, case_dir: Path) -> dict[str, Any]:
    """The manifest row of a finished case folder, paths relative to the cohort."""
    meta = json.loads((case_dir / CASE_JSON).read_text(encoding="utf-8"))
    rel = case_dir.relative_to(cohort).as_posix()
    f = meta["files"]
    return {
        "case_id": meta["case_id"],
        "ct": f"{rel}/{f['ct']}",
        "mr_echoes": ";".join(f"{rel}/{e}" for e in f["mr_echoes"]),
        "tissue_labels": f"{rel}/{f['tissue_labels']}",
        "lesion_labels": f"{rel}/{f['lesion_labels']}",
        "lesion_labels_ct": f"{rel}/{f['lesion_labels_ct']}",
        "n_lesions": len(meta.get("lesions", [])),
        "lesion_types": ";".join(str(x["type"]) for x in meta.get("lesions", [])),
        "sct_failure": f"{rel}/{f['sct_failure']}" if f.get("sct_failure") else "",
    }
