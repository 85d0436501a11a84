"""The domain an audit calibration holds for, and where an input lies outside it.

A calibration's thresholds are the largest scores of lesion-free volumes of one kind: one field
strength, protocol, voxel size and MRI realism. On another kind the same signals may score
normal anatomy higher (on a 1.5 T cohort audited with the 3 T calibration and 3 T models,
normal anatomy raised 3.2 flags per volume, none a real sCT error by CT), so the calibration
records its domain (:meth:`AuditDomain.of_volumes`) and :func:`synthct.audit.pipeline.run_audit`
compares each input with it (:meth:`AuditDomain.departures`). The signals, which do not hold
outside it, are refused there (:func:`refused_signals`), with the reason in the audit's output
and a warning.

Which signal holds where
------------------------
Every threshold is set on the lesion-free sCTs of one synthesis model in the calibrated
domain, so none holds outside it, physics included: the MRI consistency signal predicts the
echoes from the protocol and field strength, and with the CT as the sCT a 1.5 T phantom raises
no flag against the 3 T calibration; but the audited model's sCT of a 1.5 T MRI (outside its
own training domain) disagrees with the MRI in ways the 3 T calibration never saw (1 and 3
flags on the first two 1.5 T volumes of ``benchmarks/audit_domain.py``, none a real sCT error
by CT). The learned signals (reference disagreement, learned consistency, novelty) and the
epistemic SD are made from data of the calibrated domain. So outside the domain every signal
is refused and the audit says that the MRI was not audited, and why; calibrating on
lesion-free cases of the new domain (``synthct audit-train``) is the way to audit there.

Tolerances (module constants) are those of one protocol family: a scanner's TR, TE and flip
angle vary by a few percent between sites and software versions.

Voxel size
----------
A calibration records the voxel sizes it saw (:attr:`AuditDomain.voxel_sizes_mm`, each
volume's edges sorted) and holds only within :data:`VOXEL_SIZE_TOLERANCE` of one of them: the
tolerance below which the synthesis models run on the input's own grid
(:data:`synthct.synthesis.inference_grid.SPACING_TOLERANCE`). Any other voxel size is
resampled to the model's planned spacing, and that alone changes the reference's scores of
normal anatomy. Measured on the same 24 lesion-free phantom anatomies of
``benchmarks/audit.py`` (shipped models, 128 x 160 x 64 mm), the largest reference score per
volume was (median / max):

- at 0.74 x 0.74 x 0.9 mm (the planned spacing, not resampled): 0.42 / 2.35;
- at 0.8 mm isotropic: 1.19 / 6.00 (the lesion-aware model paints up to 473 HU into CSF);
  the same 0.8 mm MRIs run on their own grid: 6.00 -> 1.32, 2.89 -> 0.62, 2.70 -> 0.93;
- at 0.77 x 0.77 x 0.87 mm (4 % off; 8 of the anatomies, 0.54 / 2.35 at the planned
  spacing): 1.94 / 3.77.

A windowed-sinc or B-spline interpolator did not help (case 23 at 0.8 mm: 7.6 and 7.3). The
shipped calibration's reference threshold (1.20, set at 0.74 x 0.74 x 0.9 mm) would flag 12
of the benchmark's 40 lesion-free 0.8 mm volumes by their largest score, so a voxel size
between the calibrated ones is not "inside" the domain. Calibrations written before this
record only the smallest and largest edge; they keep the older rule (within
:data:`VOXEL_SIZE_FACTOR` of that span).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synthct.synthesis.inference_grid import SPACING_TOLERANCE
from synthct.volume import MultiEchoMR

#: Field strengths closer than this are the same field, T.
FIELD_TOLERANCE_T = 0.1
#: Relative tolerance of TR, each TE and the flip angle around the calibrated range.
PROTOCOL_RELATIVE_TOLERANCE = 0.15
#: Calibrations without ``voxel_sizes_mm`` (older files): voxel edges within this factor of
#: the calibrated span hold.
VOXEL_SIZE_FACTOR = 1.25
#: Relative difference, per sorted voxel edge, from a calibrated voxel size that still holds:
#: the synthesis models' own tolerance for running on the input's grid.
VOXEL_SIZE_TOLERANCE = SPACING_TOLERANCE
#: The MRI realism of an input that does not declare it (``MRProtocol.extra["mr_realism"]``).
UNKNOWN_REALISM = "unknown"


@dataclass(frozen=True)
class AuditDomain:
    """What the calibration volumes were.

    Attributes
    ----------
    field_strength_t : tuple of float
        The field strengths seen.
    repetition_time_ms, flip_angle_deg : tuple of 2 float
        Smallest and largest TR and flip angle.
    echo_times_ms : tuple of tuple of float
        The distinct echo-time sets.
    voxel_size_mm : tuple of 2 float
        Smallest and largest voxel edge.
    mr_realism : tuple of str
        The MRI realism presets seen (``unknown`` when a volume did not declare one).
    voxel_sizes_mm : tuple of tuple of 3 float
        The distinct voxel sizes seen, each volume's edges sorted (rounded to 0.001 mm);
        empty for a calibration written before they were recorded.
    """

    field_strength_t: tuple[float, ...]
    repetition_time_ms: tuple[float, float]
    flip_angle_deg: tuple[float, float]
    echo_times_ms: tuple[tuple[float, ...], ...]
    voxel_size_mm: tuple[float, float]
    mr_realism: tuple[str, ...]
    voxel_sizes_mm: tuple[tuple[float, float, float], ...] = ()

    @classmethod
    def of_volumes(cls, volumes: Sequence[MultiEchoMR]) -> AuditDomain:
        """The domain spanned by ``volumes`` (each with a complete protocol)."""
        from synthct.audit.inputs import signal_protocol

        protocols = [signal_protocol(v) for v in volumes]
        spacing = [s for v in volumes for s in v.spacing_mm]
        trs = [float(p.repetition_time_ms or 0) for p in protocols]
        flips = [float(p.flip_angle_deg or 0) for p in protocols]
        return cls(
            field_strength_t=tuple(sorted({float(p.field_strength_t or 0) for p in protocols})),
            repetition_time_ms=(min(trs), max(trs)),
            flip_angle_deg=(min(flips), max(flips)),
            echo_times_ms=tuple(sorted({tuple(p.echo_times_ms) for p in protocols})),
            voxel_size_mm=(min(spacing), max(spacing)),
            mr_realism=tuple(sorted({realism_of(v) for v in volumes})),
            voxel_sizes_mm=tuple(sorted({_sorted_edges(v.spacing_mm) for v in volumes})),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "field_strength_t": list(self.field_strength_t),
            "repetition_time_ms": list(self.repetition_time_ms),
            "flip_angle_deg": list(self.flip_angle_deg),
            "echo_times_ms": [list(t) for t in self.echo_times_ms],
            "voxel_size_mm": list(self.voxel_size_mm),
            "mr_realism": list(self.mr_realism),
            "voxel_sizes_mm": [list(v) for v in self.voxel_sizes_mm],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditDomain:
        """From :meth:`to_dict`'s output.

        Raises
        ------
        AuditInputError
            Missing or malformed entries.
        """
        from synthct.audit.errors import AuditInputError

        try:
            return cls(
                field_strength_t=tuple(float(v) for v in data["field_strength_t"]),
                repetition_time_ms=_pair(data["repetition_time_ms"]),
                flip_angle_deg=_pair(data["flip_angle_deg"]),
                echo_times_ms=tuple(tuple(float(t) for t in tes) for tes in data["echo_times_ms"]),
                voxel_size_mm=_pair(data["voxel_size_mm"]),
                mr_realism=tuple(str(v) for v in data["mr_realism"]),
                voxel_sizes_mm=tuple(
                    _sorted_edges(v)
                    for v in data.get("voxel_sizes_mm", ())  # older: none
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditInputError(
                f"calibration domain: malformed entry ({exc!r})",
                path="calibration info.domain",
                fix="write it with AuditDomain.to_dict() (synthct audit-train does)",
            ) from exc

    def departures(self, mr: MultiEchoMR) -> dict[str, str]:
        """Where ``mr`` lies outside the domain: ``{property: reason}`` (empty: inside)."""
        found: dict[str, str] = {}
        p = mr.protocol
        field = None if p is None else p.field_strength_t
        if field is not None and not any(
            abs(float(field) - f) <= FIELD_TOLERANCE_T for f in self.field_strength_t
        ):
            calibrated = _listed(self.field_strength_t)
            found["field_strength_t"] = (
                f"field strength {float(field):g} T; calibrated at {calibrated} T"
            )
        tr = None if p is None else p.repetition_time_ms
        if tr is not None and not _within(float(tr), self.repetition_time_ms):
            found["repetition_time_ms"] = (
                f"TR {float(tr):g} ms; calibrated {_span(self.repetition_time_ms)} ms"
            )
        flip = None if p is None else p.flip_angle_deg
        if flip is not None and not _within(float(flip), self.flip_angle_deg):
            found["flip_angle_deg"] = (
                f"flip angle {float(flip):g} deg; calibrated {_span(self.flip_angle_deg)} deg"
            )
        if p is not None and not any(
            len(tes) == len(p.echo_times_ms)
            and all(_within(float(t), (c, c)) for t, c in zip(p.echo_times_ms, tes, strict=True))
            for tes in self.echo_times_ms
        ):
            found["echo_times_ms"] = (
                f"echo times {list(p.echo_times_ms)} ms; calibrated "
                f"{' or '.join(str(list(t)) for t in self.echo_times_ms)} ms"
            )
        voxel = self._voxel_size_departure(mr.spacing_mm)
        if voxel is not None:
            found["voxel_size_mm"] = voxel
        realism = realism_of(mr)
        if (
            realism != UNKNOWN_REALISM
            and UNKNOWN_REALISM not in self.mr_realism
            and realism not in self.mr_realism
        ):
            found["mr_realism"] = (
                f"MRI realism {realism!r}; calibrated on {_listed(self.mr_realism)} MRI"
            )
        return found

    def _voxel_size_departure(self, spacing: Sequence[float]) -> str | None:
        """Why ``spacing`` lies outside the calibrated voxel sizes, or None (module docstring)."""
        shown = " x ".join(f"{s:.2f}" for s in spacing)
        if self.voxel_sizes_mm:
            edges = _sorted_edges(spacing)
            if any(
                all(
                    abs(e - c) <= VOXEL_SIZE_TOLERANCE * c
                    for e, c in zip(edges, sizes, strict=True)
                )
                for sizes in self.voxel_sizes_mm
            ):
                return None
            calibrated = " or ".join(" x ".join(f"{c:.2f}" for c in v) for v in self.voxel_sizes_mm)
            return (
                f"voxel size {shown} mm; calibrated at {calibrated} mm (within "
                f"{VOXEL_SIZE_TOLERANCE:.0%}): the models resample any other voxel size, which "
                "raised the reference's scores of normal anatomy about 3x"
            )
        lo, hi = self.voxel_size_mm
        if min(spacing) < lo / VOXEL_SIZE_FACTOR or max(spacing) > hi * VOXEL_SIZE_FACTOR:
            return (
                f"voxel size {shown} mm; calibrated {lo:.2f}-{hi:.2f} mm "
                f"(x{VOXEL_SIZE_FACTOR:g} either way holds)"
            )
        return None


def realism_of(mr: MultiEchoMR) -> str:
    """The MRI realism preset ``mr`` declares in its protocol, or :data:`UNKNOWN_REALISM`."""
    extra = {} if mr.protocol is None else mr.protocol.extra
    return str(extra.get("mr_realism", UNKNOWN_REALISM))


def refused_signals(names: Sequence[str], departures: Mapping[str, str]) -> dict[str, str]:
    """The signals of ``names`` that do not hold given ``departures``, each with its reason.

    Every calibrated signal is refused for any departure (see the module docstring).
    """
    if not departures:
        return {}
    reason = "outside the calibrated domain: " + "; ".join(departures.values())
    return dict.fromkeys(names, reason)


def warn_out_of_domain(departures: Mapping[str, str], refused: Mapping[str, str]) -> None:
    """A ``UserWarning`` naming the departures and what the audit did about them."""
    if not departures:
        return
    action = (
        f"signals refused: {', '.join(sorted(refused))}; the MRI was not audited"
        if refused
        else "the check is off: every signal computed anyway"
    )
    warnings.warn(
        "the MRI lies outside the audit calibration's domain ("
        + "; ".join(departures.values())
        + f"); {action}. Calibrate an audit model on lesion-free cases of this domain "
        "(synthct audit-train) to audit it fully.",
        UserWarning,
        stacklevel=3,
    )


def _sorted_edges(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Voxel edges, smallest first, rounded to 0.001 mm (axial and sagittal alike)."""
    a, b, c = sorted(round(float(v), 3) for v in spacing)
    return (a, b, c)


def _pair(values: Any) -> tuple[float, float]:
    lo, hi = (float(v) for v in values)
    return (lo, hi)


def _within(value: float, span: tuple[float, float]) -> bool:
    lo, hi = span
    tol = PROTOCOL_RELATIVE_TOLERANCE
    return lo * (1 - tol) <= value <= hi * (1 + tol)


def _span(span: tuple[float, float]) -> str:
    lo, hi = span
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def _listed(values: Sequence[Any]) -> str:
    return " or ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
