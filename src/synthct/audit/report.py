"""Writing an audit: volumes, the JSON report and a short HTML report with a figure per region.

Layout of the output folder (written under a temporary name and renamed when complete)::

    OUT/
      audit.json                 inputs, rule and calibration, signals, flagged regions
      report.html                the same for people, one figure per region
      flag_score.nii.gz          max_s z_s / t_s on the MRI grid (flagged where >= 1)
      flag_regions.nii.gz        flagged region ids (1 = strongest)
      signals/<name>.nii.gz      raw map of each signal (consistency score, novelty, SD in HU)
      signals/<name>_z.nii.gz    standardised map of each signal
      sct_on_mri_grid.nii.gz     the sCT resampled onto the MRI grid (only when it was)
      reference_sct.nii.gz       the reference model's sCT (only with the reference signal)
      figures/region-NNN.png     MRI | sCT | flag overlay, axial and sagittal, through the peak
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from synthct.audit.pipeline import AuditResult
from synthct.audit.regions import FlaggedRegion
from synthct.io import write_volume
from synthct.io.atomic import atomic_directory, write_json_atomic, write_text_atomic
from synthct.volume import LabelMap, MultiEchoMR

#: At most this many regions get a figure (the strongest).
MAX_FIGURES = 20

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>synthct audit</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc;
padding: 0.3em 0.6em; text-align: left; } th { background: #f3f3f3; }
.warn { background: #fff4e0; border-left: 4px solid #e69500; padding: 0.5em 1em; }
.ok { background: #eef8ee; border-left: 4px solid #3a3; padding: 0.5em 1em; }
figure { margin: 1.5em 0; } img { max-width: 100%; } code { font-size: 0.9em; }
</style></head><body>
<h1>Omission audit</h1>
{% for w in out_of_domain %}
<p class="warn">The sCT was made outside its model's training domain: {{ w }}</p>{% endfor %}
{% for w in reference_out_of_domain %}
<p class="warn">The reference model is outside its training domain ({{ w }}): its flags may
be false.</p>{% endfor %}
{% if reference_is_audited %}<p class="warn">The audited sCT is the reference model's own: the
reference signal cannot find anything.</p>{% endif %}
<p>MRI: <code>{{ mri }}</code><br>sCT: <code>{{ sct }}</code>{% if resampled %}
(resampled onto the MRI grid){% endif %}</p>
{% for name, why in refused.items() %}
<p class="warn"><strong>Signal {{ name }} refused</strong>, {{ why }}.</p>{% endfor %}
{% if not signals %}<p class="warn"><strong>Not audited</strong>: no signal holds for this
MRI. Calibrate an audit model on lesion-free cases of its domain (synthct audit-train).</p>
{% elif n == 0 %}<p class="ok">No region flagged: nothing the MRI shows contradicts the sCT
beyond the thresholds below. This is not proof of correctness.</p>
{% else %}<p class="warn"><strong>{{ n }} region{{ "s" if n > 1 else "" }} flagged</strong>
where the sCT probably omits or invents something the MRI shows. Check them on CT or by
reading the MRI before trusting the sCT there.</p>{% endif %}
<h2>Signals and rule</h2>
<table><tr><th>signal</th><th>what it measures</th><th>centre</th><th>scale</th>
<th>threshold</th><th>flags</th><th>calibration</th></tr>
{% for s in signals %}<tr><td>{{ s.name }}</td><td>{{ s.description }}</td>
<td>{{ s.centre }}</td><td>{{ s.scale }}</td><td>{{ s.threshold }}</td>
<td>{{ s.flags }}</td><td>{{ s.source }}</td></tr>{% endfor %}</table>
<p>{{ rule }}</p>
{% if default_calibration %}<p class="warn">No calibration on lesion-free data was given:
the thresholds are defaults (see synthct.audit.combine). Train one with
<code>synthct audit-train</code>.</p>{% endif %}
{% if n %}<h2>Flagged regions</h2>
<table><tr><th>id</th><th>centre (LPS mm)</th><th>size (mm)</th><th>volume (mm&sup3;)</th>
<th>peak score</th><th>signals fired</th><th>MRI vs sCT</th></tr>
{% for r in regions %}<tr><td>{{ r.id }}</td><td>{{ r.centre }}</td><td>{{ r.size }}</td>
<td>{{ r.volume }}</td><td>{{ r.peak }}</td><td>{{ r.fired }}</td><td>{{ r.direction }}</td>
</tr>{% endfor %}</table>
{% for r in regions %}{% if r.figure %}<figure><img src="{{ r.figure }}"
alt="region {{ r.id }}"><figcaption>Region {{ r.id }}: MRI (echo {{ echo }}) | sCT |
flag score over the MRI (outline: the region), through its peak at {{ r.peak_at }}.
</figcaption></figure>{% endif %}{% endfor %}{% endif %}
<p><small>synthct {{ version }}; timings {{ timings }}</small></p>
</body></html>
"""


def _fmt(values: Any, digits: int = 1) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def region_figure(result: AuditResult, mr: MultiEchoMR, region: FlaggedRegion, path: Path) -> Path:
    """Axial and sagittal MRI | sCT | flag overlay through the region's peak, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthct.figures.slices import Plane, extract_slice

    echo = mr.n_echoes - 1
    half = float(max(25.0, 1.5 * max(region.size_mm)))
    point = region.peak_lps_mm
    mask = LabelMap((result.region_labels.array == region.id).astype(np.uint8), mr.affine)
    fig, axes = plt.subplots(2, 3, figsize=(9.6, 6.4), dpi=100)
    planes: tuple[Plane, Plane] = ("axial", "sagittal")
    for row, plane in enumerate(planes):
        image, extent = extract_slice(mr, plane, point, channel=echo, half_width_mm=half)
        sct, _ = extract_slice(result.sct, plane, point, half_width_mm=half)
        score, _ = extract_slice(result.flag_score, plane, point, half_width_mm=half)
        outline, _ = extract_slice(mask, plane, point, half_width_mm=half)
        vmax = float(np.percentile(image, 99.5)) or 1.0
        axes[row, 0].imshow(image, cmap="gray", vmin=0, vmax=vmax, extent=extent)
        axes[row, 1].imshow(sct, cmap="gray", vmin=-200, vmax=1200, extent=extent)
        axes[row, 2].imshow(image, cmap="gray", vmin=0, vmax=vmax, extent=extent)
        shown = np.ma.masked_less(score, 0.5)
        axes[row, 2].imshow(shown, cmap="autumn_r", vmin=0.5, vmax=3, alpha=0.6, extent=extent)
        if outline.max() > 0:
            axes[row, 2].contour(
                outline,
                levels=[0.5],
                colors="cyan",
                linewidths=0.8,
                extent=extent,
                origin="upper",
            )
        for col, title in enumerate((f"MRI echo {echo + 1}", "sCT (-200..1200 HU)", "flag score")):
            axes[row, col].set_title(f"{title}, {plane}", fontsize=9)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
    fig.suptitle(
        f"region {region.id}: peak score {region.peak_score:.2f}, "
        f"{'+'.join(region.signals_fired)}"
        + (f", MRI {region.direction}" if region.direction else ""),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def render_html(result: AuditResult, mr: MultiEchoMR, figures: dict[int, str]) -> str:
    """The HTML report text."""
    import jinja2

    from synthct.audit.combine import rule_signals
    from synthct.audit.pipeline import SIGNAL_DESCRIPTIONS
    from synthct.version import __version__

    cal = result.calibration
    flagging = rule_signals(list(result.signals), cal)
    signals = []
    for name in result.signals:
        c = cal.for_signal(name)
        signals.append(
            {
                "name": name,
                "description": SIGNAL_DESCRIPTIONS[name],
                "centre": "this volume" if c.centre is None else f"{c.centre:.4g}",
                "scale": "this volume" if c.scale is None else f"{c.scale:.4g}",
                "threshold": f"{c.threshold:.4g}",
                "flags": "yes (in the rule)" if name in flagging else "no (reported only)",
                "source": c.source,
            }
        )
    regions = [
        {
            "id": r.id,
            "centre": _fmt(r.centre_lps_mm),
            "peak_at": _fmt(r.peak_lps_mm) + " mm LPS",
            "size": " x ".join(f"{v:.1f}" for v in r.size_mm),
            "volume": f"{r.volume_mm3:.0f}",
            "peak": f"{r.peak_score:.2f}",
            "fired": ", ".join(r.signals_fired),
            "direction": r.direction or "",
            "figure": figures.get(r.id),
        }
        for r in result.regions
    ]
    env = jinja2.Environment(autoescape=True)
    return env.from_string(_TEMPLATE).render(
        mri=mr.source or "(in memory)",
        sct=result.info.get("sct", {}).get("source") or "(in memory)",
        resampled=result.info.get("sct", {}).get("resampled_to_mri_grid", False),
        out_of_domain=result.info.get("sct", {}).get("out_of_domain", []),
        reference_out_of_domain=result.info.get("reference", {}).get("out_of_domain", []),
        reference_is_audited=result.info.get("reference", {}).get("same_as_audited_sct", False),
        n=result.n_flags,
        signals=signals,
        rule=cal.to_dict()["rule"],
        default_calibration=any(
            cal.for_signal(name).source in ("default", "self-standardised")
            for name in result.signals
        ),
        regions=regions,
        refused=result.info.get("domain", {}).get("refused_signals", {}),
        echo=mr.n_echoes,
        version=__version__,
        timings=result.info.get("timings_s", {}),
    )


def write_audit(
    result: AuditResult,
    mr: MultiEchoMR,
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    figures: bool = True,
) -> dict[str, Path]:
    """Write everything (layout in the module docstring) atomically; return the final paths.

    Parameters
    ----------
    result : AuditResult
        From :func:`synthct.audit.pipeline.run_audit`.
    mr : MultiEchoMR
        The audited MRI (for the figures).
    out_dir : path
        The output folder; it must not exist unless ``overwrite``.
    overwrite : bool
        Replace an existing folder.
    figures : bool
        Draw the region figures.
    """
    final = Path(out_dir)
    names: dict[str, str] = {}
    with atomic_directory(final, overwrite=overwrite) as tmp:
        (tmp / "signals").mkdir()
        names["flag_score"] = "flag_score.nii.gz"
        write_volume(result.flag_score, tmp / names["flag_score"])
        names["flag_regions"] = "flag_regions.nii.gz"
        write_volume(result.region_labels, tmp / names["flag_regions"])
        for name, volume in result.signals.items():
            names[f"signal_{name}"] = f"signals/{name}.nii.gz"
            write_volume(volume, tmp / names[f"signal_{name}"])
            names[f"signal_{name}_z"] = f"signals/{name}_z.nii.gz"
            write_volume(result.z[name], tmp / names[f"signal_{name}_z"])
        if result.info.get("sct", {}).get("resampled_to_mri_grid"):
            names["sct_on_mri_grid"] = "sct_on_mri_grid.nii.gz"
            write_volume(result.sct, tmp / names["sct_on_mri_grid"])
        if result.reference_sct is not None:
            names["reference_sct"] = "reference_sct.nii.gz"
            write_volume(result.reference_sct, tmp / names["reference_sct"])
        drawn: dict[int, str] = {}
        if figures and result.regions:
            (tmp / "figures").mkdir()
            for region in result.regions[:MAX_FIGURES]:
                rel = f"figures/region-{region.id:03d}.png"
                region_figure(result, mr, region, tmp / rel)
                drawn[region.id] = rel
        report = result.to_dict()
        report["files"] = {**names, **{f"figure_region_{k}": v for k, v in drawn.items()}}
        write_json_atomic(tmp / "audit.json", report)
        write_text_atomic(tmp / "report.html", render_html(result, mr, drawn))
    out = {k: final / v for k, v in names.items()}
    out["audit_json"] = final / "audit.json"
    out["report_html"] = final / "report.html"
    return out
