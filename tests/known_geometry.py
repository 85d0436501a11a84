"""Affines with known orientation, shared by tests of every format and module."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def lps_affine() -> np.ndarray:
    """Identity directions (axes toward L, P, S), anisotropic spacing, non-zero origin."""
    a = np.diag([0.74, 0.8, 0.9, 1.0])
    a[:3, 3] = (-90.5, -120.25, 33.0)
    return a


def ras_affine() -> np.ndarray:
    """A grid stored RAS-wise (axes toward R, A, S), as NIfTI files from nibabel often are."""
    a = np.diag([-1.5, -1.25, 2.0, 1.0])
    a[:3, 3] = (80.0, 95.5, -40.0)
    return a


def oblique_affine() -> np.ndarray:
    """Axes rotated 20 degrees about S and 15 degrees about L: no axis aligned with LPS."""
    rotation = Rotation.from_euler("zx", [20, 15], degrees=True).as_matrix()
    a = np.eye(4)
    a[:3, :3] = rotation @ np.diag([0.9, 1.1, 1.7])
    a[:3, 3] = (12.5, -30.0, 100.0)
    return a


AFFINES = {"lps": lps_affine(), "ras": ras_affine(), "oblique": oblique_affine()}
