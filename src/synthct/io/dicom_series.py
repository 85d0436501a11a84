"""DICOM series folders: list the series in a folder, read one as a volume, write a volume.

The work is split by concept: :mod:`synthct.io.dicom_headers` (finding series),
:mod:`synthct.io.dicom_geometry` (slices <-> affine), :mod:`synthct.io.dicom_read` and
:mod:`synthct.io.dicom_write`. This module is the entry point the rest of synthct imports.
"""

from __future__ import annotations

from synthct.io.dicom_headers import SeriesInfo, list_series
from synthct.io.dicom_read import read_dicom_series
from synthct.io.dicom_write import write_dicom_series

__all__ = ["SeriesInfo", "list_series", "read_dicom_series", "write_dicom_series"]
