"""The audit model: one folder, found, checked and read here and nowhere else.

An audit model folder, as ``synthct audit-train`` writes it
(:func:`synthct.audit.training.train_audit_model`), holds::

    calibration.json                      thresholds of every signal (synthct.audit.combine)
    novelty.npz                           input novelty model (synthct.audit.novelty)
    learned_consistency.{json,safetensors}  the learned consistency network, when trained
    checksums.json                        SHA-256 of every file, verified on load

One is shipped with the package (``synthct/models/audit``, name :data:`SHIPPED_AUDIT_MODEL`):
``synthct audit`` and ``synthct validate --audit`` use it when no audit model is given.
:func:`load_audit_model` verifies the folder's checksums before it reads any file, so a changed
or truncated model is refused with the file it found changed; :func:`save_audit_model` writes a
folder (atomically, with its checksums).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from synthct.audit.errors import AuditModelError

if TYPE_CHECKING:
    from synthct.audit.combine import AuditCalibration
    from synthct.audit.learned_consistency import LearnedConsistencyModel
    from synthct.audit.novelty import NoveltyModel

#: Name of the audit model shipped with the package (folder ``synthct/models/audit``).
SHIPPED_AUDIT_MODEL = "audit"


def shipped_audit_model_path() -> Path:
    """The folder of the shipped audit model.

    Raises
    ------
    AuditModelError
        The shipped model is missing from this installation.
    """
    folder = Path(str(resources.files("synthct"))) / "models" / SHIPPED_AUDIT_MODEL
    if not (folder / "calibration.json").is_file():
        raise AuditModelError(
            "the shipped audit model is missing from this installation",
            path=folder,
            fix="reinstall synthct, or name an audit model folder written by `synthct audit-train`",
        )
    return folder


def audit_model_path(model: str | os.PathLike[str]) -> Path:
    """The folder (or ``novelty.npz``) of ``model``: a path, or the shipped model's name."""
    if str(model) == SHIPPED_AUDIT_MODEL and not Path(model).exists():
        return shipped_audit_model_path()
    return Path(model)


@dataclass(frozen=True, eq=False)
class AuditModel:
    """What an audit model folder gives the audit.

    Attributes
    ----------
    path : Path or None
        The folder (or ``novelty.npz``) it was read from; ``None`` for no model.
    calibration : AuditCalibration or None
        Thresholds; ``None`` means the defaults (:data:`synthct.audit.combine.DEFAULT_CALIBRATION`).
    novelty : NoveltyModel or None
        Input novelty model, when read.
    learned : LearnedConsistencyModel or None
        Learned consistency network, when the folder holds one and it was asked for.
    """

    path: Path | None
    calibration: AuditCalibration | None
    novelty: NoveltyModel | None
    learned: LearnedConsistencyModel | None


#: No audit model: the default calibration, the MRI consistency signal only.
NO_AUDIT_MODEL = AuditModel(None, None, None, None)


def load_audit_model(
    model: str | os.PathLike[str] | None,
    *,
    all_signals: bool = False,
    learned: bool = True,
    calibration: str | os.PathLike[str] | None = None,
) -> AuditModel:
    """Read an audit model folder (or a bare ``novelty.npz``) after checking its checksums.

    Parameters
    ----------
    model : str or path-like, optional
        Audit model folder, ``novelty.npz``, or :data:`SHIPPED_AUDIT_MODEL`; ``None`` gives
        :data:`NO_AUDIT_MODEL` (with ``calibration`` when given).
    all_signals : bool
        Also read the novelty model when the calibration leaves it out of the flag rule (it is
        then reported, not flagging; it costs ~9 s a case to compute).
    learned : bool
        Read the learned consistency network when the folder holds one.
    calibration : str or path-like, optional
        A ``calibration.json`` (or folder) that replaces the model's own.

    Raises
    ------
    AuditModelError
        Missing or malformed files.
    ReadError
        A folder whose ``checksums.json`` does not match its files.
    """
    from synthct.audit.combine import CALIBRATION_FILE, load_calibration
    from synthct.audit.learned_consistency import has_learned_consistency, load_learned_consistency
    from synthct.audit.novelty import load_novelty_model
    from synthct.io.checksums import verify_checksums

    cal = None if calibration is None else load_calibration(calibration)
    if model is None:
        return AuditModel(None, cal, None, None)
    path = audit_model_path(model)
    folder = path.is_dir()
    if folder:
        verify_checksums(path, what="audit model folder")  # when it has checksums.json
        if cal is None and (path / CALIBRATION_FILE).is_file():
            cal = load_calibration(path)
    novelty_in_rule = cal is None or cal.for_signal("novelty").in_rule
    novelty = load_novelty_model(path) if novelty_in_rule or all_signals else None
    network = (
        load_learned_consistency(path)
        if learned and folder and has_learned_consistency(path)
        else None
    )
    return AuditModel(path, cal, novelty, network)


def save_audit_model(
    out_dir: str | os.PathLike[str],
    *,
    calibration: AuditCalibration,
    novelty: NoveltyModel,
    learned: LearnedConsistencyModel | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an audit model folder atomically, with ``checksums.json`` over every file.

    Raises
    ------
    WriteError
        ``out_dir`` exists (without ``overwrite``) or cannot be written.
    """
    from synthct.audit.combine import CALIBRATION_FILE
    from synthct.audit.novelty import NOVELTY_FILE
    from synthct.io.atomic import atomic_directory
    from synthct.io.checksums import write_checksums

    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        novelty.save(tmp / NOVELTY_FILE)
        if learned is not None:
            learned.save(tmp)
        calibration.save(tmp / CALIBRATION_FILE)
        write_checksums(tmp)  # verified by load_audit_model
    return Path(out_dir)
