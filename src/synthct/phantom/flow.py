"""Signal loss of flowing tissue in a spoiled gradient echo: CSF pulsation and flow dephasing.

Two effects, both acting only on the signal of the tissues in :data:`FLOWING_TISSUES`:

* **pulsation voids**: CSF moves back and forth with every heartbeat; in the cervical and
  thoracic canal the motion during the acquisition leaves patchy low signal, most marked
  ventral to the cord, where the systolic jet is fastest (Lisanti 2007; Enzmann & Pelc 1991).
  Modelled as a patchy, smooth random velocity field in the tissue (weighted towards the
  ventral canal when the tissue is marked ``ventral_emphasis``) whose patches lose up to
  ``pulsation_loss`` of their signal. The size of the loss is an assumption; its pattern
  (patchy, ventral) follows the references.
* **in-plane flow dephasing**: spins moving along the readout gather a phase
  ``gamma * m1 * v`` from the gradient's first moment ``m1``; a Gaussian spread of velocities
  of SD ``v`` in a voxel attenuates the signal by ``exp(-(gamma m1 v)^2 / 2)``. ``m1`` grows as
  TE^2 (a bipolar readout with lobes TE / 2: ``m1 = G TE^2 / 4``), so later echoes lose more.
  Small for CSF at a few cm/s and short TE, complete for arterial blood.

Adding a flowing tissue is one line in :data:`FLOWING_TISSUES` (CSF and blood today).

References
----------
Enzmann & Pelc 1991
    Enzmann DR, Pelc NJ. Normal flow patterns of intracranial and spinal cerebrospinal fluid
    defined with phase-contrast cine MR imaging. Radiology 1991;178:467-474 (spinal CSF peak
    velocities of a few cm/s, highest in the cervical canal, ventral to the cord).
Lisanti 2007
    Lisanti C, Carlin C, Banks KP, Wang D. Normal MRI appearance and motion-related phenomena
    of CSF. AJR 2007;188:716-725 (CSF flow voids and pulsation artifacts in the spinal canal).
Haacke 1999
    Haacke EM et al. Magnetic Resonance Imaging: Physical Principles and Sequence Design.
    Wiley 1999, ch. 23-24 (velocity-induced phase, intravoxel dephasing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from synthct.geometry import Geometry
from synthct.imaging.labels import Tissue
from synthct.phantom.model import PhantomParameterError

#: Proton gyromagnetic ratio, rad/s/T (CODATA).
GAMMA_RAD_PER_S_T = 2.0 * np.pi * 42.577478e6
#: Readout gradient amplitude of a clinical 3D GRE, T/m: assumption (10 mT/m, a typical
#: readout amplitude at the paper's bandwidth and 0.74 mm resolution).
READOUT_GRADIENT_T_PER_M = 10e-3
#: Correlation length of the pulsation patches, mm: assumption (a few mm, the size of the
#: voids seen in the canal, Lisanti 2007).
PATCH_CORRELATION_MM = 3.0
#: Smoothing of the cord fraction that finds the ventral side of the canal, mm.
_CORD_SMOOTHING_MM = 3.0
#: Pulsation weight of CSF that does not lie ventral to the cord (ventral CSF: 1): assumption,
#: dorsal voids are rarer but occur (Lisanti 2007).
_DORSAL_WEIGHT = 0.3


@dataclass(frozen=True)
class FlowProperties:
    """How one flowing tissue moves.

    Attributes
    ----------
    peak_velocity_m_s : float
        Velocity spread reached in the fastest patches, m/s.
    pulsation_loss : float
        Largest fraction of signal lost in a pulsation patch (0..1).
    ventral_emphasis : bool
        Weight the pulsation towards the side of the canal ventral to the cord.
    source : str
        Where the values come from.
    """

    peak_velocity_m_s: float
    pulsation_loss: float
    ventral_emphasis: bool
    source: str

    def __post_init__(self) -> None:
        if not (np.isfinite(self.peak_velocity_m_s) and self.peak_velocity_m_s >= 0):
            raise PhantomParameterError(
                f"peak_velocity_m_s must be >= 0, got {self.peak_velocity_m_s}",
                path="peak_velocity_m_s",
            )
        if not 0.0 <= self.pulsation_loss <= 1.0:
            raise PhantomParameterError(
                f"pulsation_loss must lie in 0..1, got {self.pulsation_loss}",
                path="pulsation_loss",
            )


#: Tissues whose signal is reduced by flow, and how they move. A BLOOD tissue joins with one
#: line, e.g. ``Tissue.BLOOD: FlowProperties(1.0, 0.0, False, "aortic peak ~1 m/s")``.
FLOWING_TISSUES: dict[Tissue, FlowProperties] = {
    Tissue.CSF: FlowProperties(
        peak_velocity_m_s=0.05,
        pulsation_loss=0.6,
        ventral_emphasis=True,
        source="peak velocity ~5 cm/s: Enzmann & Pelc 1991 (cervical canal); patchy ventral "
        "voids: Lisanti 2007; loss of up to 60% in a patch: assumption",
    ),
    # Arterial/venous blood: peak aortic velocity ~1 m/s (Haacke 1999 ch. 24; Mohiaddin 1989),
    # enough to dephase it fully at our TEs; laminar flow, no pulsation patches.
    Tissue.BLOOD: FlowProperties(
        peak_velocity_m_s=1.0,
        pulsation_loss=0.0,
        ventral_emphasis=False,
        source="peak aortic velocity ~1 m/s: Mohiaddin RH et al., Radiology 1989;171:551-556; "
        "intravoxel dephasing: Haacke 1999",
    ),
}


def readout_first_moment(echo_time_ms: float, gradient_t_per_m: float) -> float:
    """First gradient moment at the echo of a bipolar readout with lobes of TE / 2, T s^2/m.

    ``m1 = G (TE/2)^2 = G TE^2 / 4`` (Haacke 1999): the phase of a spin moving at ``v`` along
    the readout is ``gamma m1 v``.
    """
    te_s = float(echo_time_ms) * 1e-3
    return float(gradient_t_per_m) * te_s * te_s / 4.0


def dephasing_attenuation(
    velocity_sd_m_s: NDArray[np.floating], echo_time_ms: float, *, gradient_t_per_m: float
) -> NDArray[np.float32]:
    """Magnitude attenuation ``exp(-(gamma m1 v)^2 / 2)`` of a Gaussian velocity spread."""
    phase = GAMMA_RAD_PER_S_T * readout_first_moment(echo_time_ms, gradient_t_per_m)
    x = np.float32(phase) * np.asarray(velocity_sd_m_s, dtype=np.float32)
    return np.exp(-0.5 * x * x).astype(np.float32, copy=False)


def patch_strength(field: NDArray[np.float32]) -> NDArray[np.float32]:
    """Patchy 0..1 map from a unit-variance Gaussian field: 0 below 0.5 SD, 1 above 1.5 SD.

    About 30 % of the tissue lies in a patch and 7 % at full strength.
    """
    return np.clip(field - np.float32(0.5), 0.0, 1.0)


def ventral_weight(cord_fraction: NDArray[np.floating], geometry: Geometry) -> NDArray[np.float32]:
    """Weight 1 where the cord lies posterior (the ventral canal), down to 0.3 elsewhere.

    The cord fraction is smoothed by a few mm and differentiated along LPS +P: where it rises
    posteriorly the voxel is ventral to the cord. All ones when the grid holds no cord.
    """
    if float(np.max(cord_fraction, initial=0.0)) <= 0.0:
        return np.ones(geometry.shape, dtype=np.float32)
    spacing = np.asarray(geometry.spacing_mm)
    smooth = gaussian_filter(
        np.asarray(cord_fraction, dtype=np.float32), _CORD_SMOOTHING_MM / spacing
    )
    direction = geometry.affine[:3, :3] / spacing  # unit columns: array axes in LPS
    rise = np.zeros(geometry.shape, dtype=np.float32)
    for axis in range(3):
        if direction[1, axis] != 0 and geometry.shape[axis] > 1:
            grad = np.gradient(smooth, axis=axis)
            rise += np.float32(direction[1, axis] / spacing[axis]) * grad
    peak = float(rise.max())
    if peak <= 0:
        return np.full(geometry.shape, _DORSAL_WEIGHT, dtype=np.float32)
    ventral = np.clip(rise / np.float32(0.5 * peak), 0.0, 1.0)
    return (_DORSAL_WEIGHT + (1.0 - _DORSAL_WEIGHT) * ventral).astype(np.float32)


def flow_attenuation(
    geometry: Geometry,
    *,
    patches: NDArray[np.float32],
    cord_fraction: NDArray[np.floating],
    echo_times_ms: Sequence[float],
    flowing: Mapping[Tissue, FlowProperties] = FLOWING_TISSUES,
    gradient_t_per_m: float = READOUT_GRADIENT_T_PER_M,
) -> dict[Tissue, NDArray[np.float32]]:
    """Per flowing tissue, the factor its signal keeps at each echo, ``[echo, i, j, k]``.

    Parameters
    ----------
    geometry : Geometry
        The grid.
    patches : ndarray of float32
        A unit-variance smooth Gaussian field (the pulsation pattern), ``geometry.shape``.
    cord_fraction : ndarray
        Partial-volume fraction of spinal cord (for the ventral weighting).
    echo_times_ms : sequence of float
        Echo times, ms.
    flowing : mapping
        The flowing tissues (default :data:`FLOWING_TISSUES`).
    gradient_t_per_m : float
        Readout gradient amplitude for the first moment.

    Returns
    -------
    dict
        ``Tissue -> float32 array (n_echoes, *geometry.shape)`` in 0..1.
    """
    strength = patch_strength(patches)
    ventral: NDArray[np.float32] | None = None
    out: dict[Tissue, NDArray[np.float32]] = {}
    for tissue, props in flowing.items():
        weight = strength
        if props.ventral_emphasis:
            if ventral is None:
                ventral = ventral_weight(cord_fraction, geometry)
            weight = strength * ventral
        kept = np.float32(1.0) - np.float32(props.pulsation_loss) * weight
        velocity = np.float32(props.peak_velocity_m_s) * weight
        out[tissue] = np.stack(
            [
                kept * dephasing_attenuation(velocity, te, gradient_t_per_m=gradient_t_per_m)
                for te in echo_times_ms
            ]
        )
    return out
