"""The cohort runner: cases in parallel on Dask, resumable, tables rebuilt from per-case results.

:func:`run_validation` validates every case of a manifest and writes the outputs of
:mod:`synthct.validation.outputs`. Cases run as independent Dask tasks, on a
``distributed.LocalCluster`` sized to the machine (one thread per worker process) or on an
existing cluster given by its scheduler address; progress is reported through a callback as the
cases complete (``distributed.as_completed``). A failing case is recorded with its reason and the
others go on.

Resume
------
Each finished case is written atomically to ``OUT/cases/<case_id>/result.json`` (the lesion
masks to ``lesion_masks.npz`` and a registration to ``sct_to_ct.tfm`` before it), together with
a fingerprint of its inputs: the case's manifest entry, the size and modification time of every
input file (and of its JSON sidecar; every file of a DICOM folder), of the audit model's files
when the audit column is on, and the settings' fingerprint.
A rerun (after a crash, Ctrl-C, or a fixed input) reuses every successful result whose
fingerprint still matches and recomputes the others (missing, changed or failed cases). The
tables are then rebuilt from the per-case results of the manifest's cases only, in manifest
order, so nothing is duplicated or lost. A remote cluster's workers need the input files at the
same paths; results come back to this process, which writes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from synthct.errors import SynthctError, WriteError
from synthct.imaging.alignment import transform_from_dict, write_transform
from synthct.io.atomic import PARTIAL_PREFIX, atomic_file
from synthct.io.deidentify import relative_path, relative_paths_in
from synthct.io.output_safety import OutputLock, claim_output_folder
from synthct.validation.audit_column import CaseAuditor
from synthct.validation.case import CaseResult, ValidationSettings, require_auditor, validate_case
from synthct.validation.lesion_metrics import LesionMasks
from synthct.validation.manifest import CaseSpec, Manifest
from synthct.validation.outputs import (
    ReportWriter,
    decode_json,
    default_report_writer,
    encode_json,
    write_outputs,
    write_strict_json,
)

__all__ = [
    "CaseProgress",
    "RunSummary",
    "case_fingerprint",
    "load_case_result",
    "read_lesion_masks",
    "run_validation",
]

RESULT_FILE = "result.json"
MASKS_FILE = "lesion_masks.npz"
TRANSFORM_FILE = "sct_to_ct.tfm"
_MASK_NAMES = ("roi", "shell", "search", "ct_segmentation", "sct_segmentation")


@dataclass(frozen=True)
class CaseProgress:
    """One case done: ``status`` is ``"reused"`` (result from a previous run), ``"ok"`` or
    ``"failed"``; ``done`` of ``total`` cases are finished."""

    case_id: str
    status: Literal["reused", "ok", "failed"]
    done: int
    total: int
    error: str | None = None
    seconds: float | None = None


ProgressCallback = Callable[[CaseProgress], None]


@dataclass
class RunSummary:
    """What a run did and where its outputs are."""

    out_dir: Path
    results: list[CaseResult]
    computed: list[str]
    reused: list[str]
    files: dict[str, Path]
    statistics: dict[str, Any]
    report: Any = None
    report_error: str | None = None
    workers: int = 0
    wall_s: float = 0.0
    visibility: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def n_ok(self) -> int:
        """Cases validated."""
        return sum(r.ok for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        """The failed cases, in manifest order."""
        return [r for r in self.results if not r.ok]

    @property
    def results_paragraph(self) -> str | None:
        """The Results paragraph of the cohort statistics (None with fewer than 2 lesions)."""
        text = self.statistics.get("results_paragraph")
        return str(text) if text else None


# -- fingerprints --------------------------------------------------------------------------------
def _stat(path: Path) -> Any:
    if path.is_file():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return [[str(p.relative_to(path)), *_stat(p)] for p in files]
    return None


def _with_sidecars(paths: list[Path]) -> list[Path]:
    from synthct.io.image_files import image_suffix, sidecar_path

    out = []
    for p in paths:
        out.append(p)
        if image_suffix(p) is not None:
            out.append(sidecar_path(p))
    return out


def case_fingerprint(case: CaseSpec, settings: ValidationSettings) -> dict[str, Any]:
    """What a case's result depends on: its entry, its files' sizes and times, the settings.

    Returns
    -------
    dict
        ``{"digest": sha256, "case": ..., "files": {path: [size, mtime_ns] | listing | None},
        "settings": settings fingerprint, "synthct": version}``; the audit model's files are
        among ``files`` when the audit column is on.
    """
    from synthct.version import __version__

    paths = _with_sidecars([p for ps in case.input_paths().values() for p in ps])
    if settings.audit is not None and settings.audit.model is not None:
        paths.append(Path(settings.audit.model))  # a retrained audit model changes the flags
    body = {
        "case": case.describe(),
        "files": {str(p): _stat(p) for p in paths},
        "settings": settings.fingerprint(),
        "synthct": __version__,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()
    return {"digest": digest, **body}


# -- per-case files ------------------------------------------------------------------------------
def _case_dir(out_dir: Path, case_id: str) -> Path:
    return out_dir / "cases" / case_id


def _write_masks(path: Path, result: CaseResult) -> None:
    arrays: dict[str, Any] = {
        "lesion_id": np.array([row["lesion_id"] for row in result.lesion_rows], dtype=np.int64),
        "box": np.array(
            [[[s.start, s.stop] for s in m.box] for m in result.lesion_masks], dtype=np.int64
        ).reshape(-1, 3, 2),
        "affine": np.array([m.affine for m in result.lesion_masks]).reshape(-1, 4, 4),
    }
    for n, masks in enumerate(result.lesion_masks):
        for name in _MASK_NAMES:
            arrays[f"{name}_{n}"] = getattr(masks, name)
    with atomic_file(path) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def read_lesion_masks(case_dir: str | os.PathLike[str]) -> list[tuple[int, LesionMasks]]:
    """``(lesion_id, LesionMasks)`` of every lesion of a case folder, in table order.

    The boxes index the case's CT array; ``affine`` maps box indices to LPS mm.
    """
    path = Path(case_dir) / MASKS_FILE
    if not path.is_file():
        return []
    with np.load(path) as data:
        out = []
        for n, lesion_id in enumerate(data["lesion_id"]):
            box = data["box"][n]
            slices = tuple(slice(int(a), int(b)) for a, b in box)
            masks = {name: data[f"{name}_{n}"].astype(bool) for name in _MASK_NAMES}
            out.append(
                (
                    int(lesion_id),
                    LesionMasks(box=slices, affine=data["affine"][n], **masks),  # type: ignore[arg-type]
                )
            )
    return out


def write_case_result(out_dir: Path, result: CaseResult, fingerprint: dict[str, Any]) -> Path:
    """Write a case's files; ``result.json`` last, so its presence means the case is complete.

    Input paths inside the result and the fingerprint are written relative to ``out_dir``.
    """
    folder = _case_dir(out_dir, result.case_id)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (MASKS_FILE, TRANSFORM_FILE):
        (folder / stale).unlink(missing_ok=True)
    if result.lesion_masks:
        _write_masks(folder / MASKS_FILE, result)
    if result.registration_transform is not None:
        write_transform(transform_from_dict(result.registration_transform), folder / TRANSFORM_FILE)
    payload = {"fingerprint": fingerprint, "result": encode_json(result.to_json())}
    return write_strict_json(folder / RESULT_FILE, _relative(payload, out_dir))


def load_case_result(
    out_dir: str | os.PathLike[str], case_id: str
) -> tuple[CaseResult, str] | None:
    """A stored result and its fingerprint digest, or None when absent or unreadable."""
    path = _case_dir(Path(out_dir), case_id) / RESULT_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        result = CaseResult.from_json(decode_json(payload["result"]))
        return result, str(payload["fingerprint"]["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _path_replacements(value: Any, out_dir: Path) -> dict[str, str]:
    """Absolute path strings found in the case description -> relative to ``out_dir``."""
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for v in value.values():
            found |= _path_replacements(v, out_dir)
    elif isinstance(value, list | tuple):
        for v in value:
            found |= _path_replacements(v, out_dir)
    elif isinstance(value, str) and Path(value).is_absolute():
        for path in value.split(";"):  # echo files are joined by ';' in messages
            found[path] = relative_path(path, out_dir)
            folder = Path(path).parent
            if len(folder.parts) > 2:  # sidecars and DICOM files beside the input
                found[str(folder)] = relative_path(folder, out_dir)
    return found


def _relative(payload: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """``payload`` with the input paths of its case relative to ``out_dir`` (see module notes)."""
    case = payload.get("fingerprint", {}).get("case") or payload["result"].get("inputs", {})
    replacements = _path_replacements(case, out_dir)
    replacements |= {str(Path(k).resolve()): v for k, v in replacements.items()}
    return dict(relative_paths_in(payload, replacements))


def _relative_result(result: CaseResult, case: CaseSpec, out_dir: Path) -> CaseResult:
    """The result as it is stored: input paths relative to ``out_dir``, masks kept."""
    stored = _relative(
        {"fingerprint": {"case": case.describe()}, "result": result.to_json()}, out_dir
    )
    rewritten = CaseResult.from_json(stored["result"])
    return dataclasses.replace(
        rewritten,
        lesion_masks=result.lesion_masks,
        registration_transform=result.registration_transform,
    )


def _dicom_outputs_deidentified(folder: Path) -> bool:
    """False when the case's DICOM SEG/SR were written with identifiers (an older synthct)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from synthct.validation.case import SEG_FILE, SR_FILE

    for name in (SEG_FILE, SR_FILE):
        path = folder / name
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, ValueError, EOFError, InvalidDicomError):  # unreadable: recompute
            return False
        if str(ds.get("PatientIdentityRemoved", "")) != "YES":
            return False
    return True


def _remove_partials(out: Path) -> list[Path]:
    """Delete the ``.partial-*`` files and folders a killed run left; return them."""
    stale = [
        *out.glob(f"{PARTIAL_PREFIX}*"),
        *out.glob(f"cases/*/{PARTIAL_PREFIX}*"),
        *out.glob(f"cases/{PARTIAL_PREFIX}*"),
    ]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|ucx)://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}/?$|^inproc://\S+$")


def check_scheduler_address(address: str) -> str:
    """``address`` when it looks like a Dask scheduler address (``tcp://host:8786``).

    Raises
    ------
    SynthctError
        Naming ``--scheduler`` and the expected form.
    """
    if not _ADDRESS.match(address.strip()):
        raise SynthctError(
            f"{address!r} is not a Dask scheduler address",
            path="--scheduler",
            fix="give the scheduler's address as printed by `dask scheduler`, e.g. "
            "tcp://10.0.0.5:8786, or leave --scheduler out to use a local cluster",
        )
    return address.strip()


# -- running -------------------------------------------------------------------------------------
def _run_in_worker(
    case: CaseSpec,
    settings: ValidationSettings,
    figure_dir: Path | None,
    auditor: CaseAuditor | None = None,
) -> CaseResult:
    """A Dask task: one case, ITK limited to one thread (one case per worker process)."""
    import SimpleITK as sitk

    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if settings.metric_threads is None:
        settings = settings.model_copy(update={"metric_threads": 1})
    try:
        return validate_case(case, settings, figure_dir=figure_dir, auditor=auditor)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _lost(case: CaseSpec, exc: BaseException) -> CaseResult:
    return CaseResult(
        case_id=case.case_id,
        status="failed",
        error=f"case {case.case_id!r}: the worker running it failed ({type(exc).__name__}: "
        f"{exc}); it may have run out of memory",
        error_type=type(exc).__name__,
        error_stage="worker",
        inputs={"case": case.describe()},
    )


def _default_workers(n_cases: int) -> int:
    return max(1, min(os.cpu_count() or 1, n_cases))


class _Dask:
    """A client on an existing scheduler, or on a LocalCluster it owns."""

    def __init__(self, n_workers: int, scheduler_address: str | None) -> None:
        from distributed import Client, LocalCluster

        self.cluster = None
        if not scheduler_address:
            try:
                self.cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.cluster)
            except (OSError, RuntimeError, TimeoutError) as exc:  # e.g. a worker died starting
                if self.cluster is not None:
                    self.cluster.close()
                raise SynthctError(
                    f"the local Dask cluster did not start ({exc})",
                    path="LocalCluster",
                    fix="run the same command again (finished cases are kept), or use "
                    "--workers 0 to run the cases in this process",
                ) from exc
            return
        try:
            self.client = Client(scheduler_address, timeout="10s")
        except (OSError, ValueError, TypeError) as exc:  # unreachable, refused, malformed
            raise SynthctError(
                f"cannot connect to the Dask scheduler ({exc})",
                path=scheduler_address,
                fix="check the address (e.g. tcp://host:8786) and that the scheduler runs, or "
                "leave --scheduler out to use a local cluster",
            ) from exc

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _compute_all(
    todo: list[CaseSpec],
    settings: ValidationSettings,
    *,
    n_workers: int,
    scheduler_address: str | None,
    figure_dirs: dict[str, Path | None],
    on_result: Callable[[CaseResult, float], None],
    auditor: CaseAuditor | None = None,
) -> int:
    """Run ``todo``; call ``on_result`` as each case completes. Returns the workers used."""
    if not todo:
        return 0
    if n_workers == 0 and not scheduler_address:
        for case in todo:
            start = time.perf_counter()
            result = validate_case(
                case, settings, figure_dir=figure_dirs[case.case_id], auditor=auditor
            )
            on_result(result, time.perf_counter() - start)
        return 0
    from distributed import as_completed

    dask = _Dask(n_workers, scheduler_address)
    try:
        cases_by_key: dict[Any, CaseSpec] = {}
        started: dict[Any, float] = {}
        futures = []
        for case in todo:
            future = dask.client.submit(
                _run_in_worker,
                case,
                settings,
                figure_dirs[case.case_id],
                auditor,
                key=f"synthct-validate-{case.case_id}",
                pure=False,
            )
            futures.append(future)
            cases_by_key[future.key] = case
            started[future.key] = time.perf_counter()
        workers = len(dask.client.scheduler_info().get("workers", {}))
        for future in as_completed(futures):
            case = cases_by_key[future.key]
            try:
                result = future.result()
            except Exception as exc:  # the worker died or the task could not run
                result = _lost(case, exc)
            on_result(result, time.perf_counter() - started[future.key])
            future.release()
        return workers
    finally:
        dask.close()


def run_validation(
    cases: Manifest | Sequence[CaseSpec],
    out_dir: str | os.PathLike[str],
    settings: ValidationSettings | None = None,
    *,
    n_workers: int | None = None,
    scheduler_address: str | None = None,
    resume: bool = True,
    progress: ProgressCallback | None = None,
    figures: bool = True,
    report_writer: ReportWriter | Literal["auto"] | None = "auto",
    command: str = "validate",
    auditor: CaseAuditor | None = None,
) -> RunSummary:
    """Validate a cohort and write tables, JSON and (when available) the report.

    Parameters
    ----------
    cases : Manifest or sequence of CaseSpec
        The cases, in the order the tables list them.
    out_dir : path
        Output folder (created).
    settings : ValidationSettings, optional
        Defaults when omitted.
    n_workers : int, optional
        Worker processes of the local Dask cluster (one thread each). Default: the machine's
        cores, at most one per case to compute, and no cluster at all (this process) when a
        single case is to be computed. ``0`` runs every case in this process.
    scheduler_address : str, optional
        Address of an existing Dask scheduler (e.g. ``tcp://host:8786``) to run on instead.
    resume : bool
        Reuse the stored results whose input fingerprint still matches.
    progress : callable, optional
        Called with a :class:`CaseProgress` for every case, as it finishes (reused first).
    figures : bool
        Draw each lesion's figure into ``cases/<case_id>/lesion-<lesion_id>.png`` (needs
        :mod:`synthct.validation.lesion_figure`; drawn by the worker, so a remote cluster needs
        the output folder on a shared file system).
    report_writer : callable, "auto" or None
        Called with ``out_dir`` once the tables are written; ``"auto"`` uses
        ``synthct.report.validation_report.write_validation_report`` when it exists, ``None``
        writes no report.
    command : str
        The command that owns ``out_dir`` (its marker, see
        :func:`synthct.io.output_safety.claim_output_folder`): ``"evaluate"`` validates into the
        folder it made.
    auditor : CaseAuditor, optional
        The audit stage, needed when ``settings.audit`` is set
        (:func:`synthct.workflows.audit_column.audit_case_columns`).

    Returns
    -------
    RunSummary
    """
    start = time.perf_counter()
    s = settings or ValidationSettings()
    require_auditor(s, auditor)
    case_list = list(cases.cases if isinstance(cases, Manifest) else cases)
    manifest_path = (
        str(cases.source) if isinstance(cases, Manifest) and cases.source is not None else None
    )
    if isinstance(cases, Sequence) and not isinstance(cases, Manifest):
        Manifest(cases=tuple(case_list))  # duplicate case ids are an error here too
    if scheduler_address:
        scheduler_address = check_scheduler_address(scheduler_address)
    out = claim_output_folder(out_dir, command=command, legacy=("settings.json", "cases"))
    with OutputLock(out):
        _remove_partials(out)
        try:
            (out / "cases").mkdir(exist_ok=True)
        except OSError as exc:
            raise WriteError(f"cannot create the output folder ({exc})", path=out) from exc
        summary = _run_locked(
            case_list,
            out,
            s,
            manifest_path=manifest_path,
            n_workers=n_workers,
            scheduler_address=scheduler_address,
            resume=resume,
            progress=progress,
            figures=figures,
            auditor=auditor,
        )
        writer = default_report_writer() if report_writer == "auto" else report_writer
        if writer is not None:
            try:
                summary.report = writer(out)
            except SynthctError as exc:
                summary.report_error = str(exc)
    summary.wall_s = time.perf_counter() - start
    return summary


def _run_locked(
    case_list: list[CaseSpec],
    out: Path,
    s: ValidationSettings,
    *,
    manifest_path: str | None,
    n_workers: int | None,
    scheduler_address: str | None,
    resume: bool,
    progress: ProgressCallback | None,
    figures: bool,
    auditor: CaseAuditor | None = None,
) -> RunSummary:
    """The run inside the output folder's lock: compute, then write the tables."""
    total = len(case_list)
    fingerprints = {c.case_id: case_fingerprint(c, s) for c in case_list}
    results: dict[str, CaseResult] = {}
    reused: list[str] = []
    todo: list[CaseSpec] = []
    for case in case_list:
        stored = load_case_result(out, case.case_id) if resume else None
        digest = fingerprints[case.case_id]["digest"]
        if (
            stored is not None
            and stored[0].ok
            and stored[1] == digest
            and (s.keep_identifiers or _dicom_outputs_deidentified(_case_dir(out, case.case_id)))
        ):
            results[case.case_id] = stored[0]
            reused.append(case.case_id)
            if progress is not None:
                progress(CaseProgress(case.case_id, "reused", len(results), total))
        else:
            todo.append(case)

    by_id = {c.case_id: c for c in case_list}

    def on_result(result: CaseResult, seconds: float) -> None:
        write_case_result(out, result, fingerprints[result.case_id])
        result = _relative_result(result, by_id[result.case_id], out)
        results[result.case_id] = result
        if progress is not None:
            status: Literal["ok", "failed"] = "ok" if result.ok else "failed"
            progress(
                CaseProgress(result.case_id, status, len(results), total, result.error, seconds)
            )

    workers = n_workers
    if workers is None:
        workers = 0 if len(todo) <= 1 and not scheduler_address else _default_workers(len(todo))
    figure_dirs = {c.case_id: _case_dir(out, c.case_id) if figures else None for c in todo}
    used = _compute_all(
        todo,
        s,
        n_workers=workers,
        scheduler_address=scheduler_address,
        figure_dirs=figure_dirs,
        on_result=on_result,
        auditor=auditor,
    )
    ordered = [results[c.case_id] for c in case_list]
    manifest_rel = None if manifest_path is None else relative_path(manifest_path, out)
    files = write_outputs(out, ordered, s, manifest=manifest_rel)
    statistics = json.loads(files["statistics"].read_text(encoding="utf-8"))
    summary = RunSummary(
        out_dir=out,
        results=ordered,
        computed=[c.case_id for c in todo],
        reused=reused,
        files=files,
        statistics=statistics,
        workers=used,
        visibility=_visibility(ordered),
    )
    return summary


def _visibility(results: Sequence[CaseResult]) -> dict[str, tuple[int, int]]:
    rows = [row for r in results if r.ok for row in r.lesion_rows]
    out = {}
    for modality in ("ct", "sct", "mri"):
        flags = [row.get(f"{modality}_visible") for row in rows]
        known = [bool(f) for f in flags if f is not None]
        if known:
            out[modality] = (sum(known), len(known))
    return out
