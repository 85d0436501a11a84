"""The prepared-case store that torchrun ranks share: exact arrays, memory-mapped, atomic, keyed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from synthct.io.atomic import PARTIAL_PREFIX
from synthct.synthesis.config import SynthesisConfig
from synthct.synthesis.manifest import Case, CaseRecord, load_case, read_manifest
from synthct.synthesis.patches import PatchSampler, PreparedCase, prepare_case
from synthct.synthesis.prepared_store import MRHeader, read_case, store_key, write_case


def _prepared(
    manifest: Path, config: SynthesisConfig, index: int = 1
) -> tuple[CaseRecord, Case, PreparedCase]:
    record = read_manifest(manifest)[index]
    case = load_case(record)
    return record, case, prepare_case(case, config.normalisation, config.patches)


def test_a_stored_case_reads_back_bit_for_bit_memory_mapped_and_samples_the_same_patches(
    cohort_manifest: Path, make_config: Callable[..., SynthesisConfig], tmp_path: Path
) -> None:
    config = make_config()
    record, case, prepared = _prepared(cohort_manifest, config)  # case002 holds a lesion
    assert prepared.lesions is not None and prepared.lesions.any()
    key = store_key(record, config)
    header = MRHeader(case.mr.n_echoes, case.mr.protocol, case.mr.spacing_mm)
    write_case(tmp_path, prepared, header, (0.9, 0.9, 1.0), key)
    stored = read_case(tmp_path, record.case_id, key)
    assert stored is not None
    for name in ("inputs", "target", "body", "lesions", "cumulative_weights"):
        got, expected = getattr(stored.prepared, name), getattr(prepared, name)
        assert isinstance(got, np.memmap) and not got.flags.writeable, name
        assert got.dtype == expected.dtype and np.array_equal(got, expected), name
    assert stored.prepared.scaling == prepared.scaling
    assert stored.header == header and stored.native_spacing_mm == (0.9, 0.9, 1.0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    # patches drawn from the read-only mapping equal those drawn from memory, same seed
    a = PatchSampler([prepared], config.patches, config.normalisation).sample(
        np.random.default_rng(11), 4
    )
    b = PatchSampler([stored.prepared], config.patches, config.normalisation).sample(
        np.random.default_rng(11), 4
    )
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_key_changes_with_the_files_and_the_settings_and_a_stale_case_is_not_read(
    cohort_manifest: Path, make_config: Callable[..., SynthesisConfig], tmp_path: Path
) -> None:
    config = make_config()
    record, case, prepared = _prepared(cohort_manifest, config, index=0)
    key = store_key(record, config)
    assert store_key(record, config) == key
    other = config.with_updates({"patches": {"bone_weight": config.patches.bone_weight + 1.0}})
    assert store_key(record, other) != key
    header = MRHeader(case.mr.n_echoes, case.mr.protocol, case.mr.spacing_mm)
    write_case(tmp_path, prepared, header, case.mr.spacing_mm, key)
    assert read_case(tmp_path, record.case_id, store_key(record, other)) is None
    assert read_case(tmp_path, "no-such-case", key) is None
    stat = record.ct.stat()  # the CT file rewritten: a new modification time
    os.utime(record.ct, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert store_key(record, config) != key
    finally:
        os.utime(record.ct, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # a case folder with an array missing (not written by write_case) is not taken as complete
    (tmp_path / record.case_id / "target.npy").unlink()
    assert read_case(tmp_path, record.case_id, key) is None


def test_a_failed_write_leaves_the_old_case_and_no_partial_folder(
    cohort_manifest: Path,
    make_config: Callable[..., SynthesisConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config()
    record, case, prepared = _prepared(cohort_manifest, config, index=0)
    key = store_key(record, config)
    header = MRHeader(case.mr.n_echoes, case.mr.protocol, case.mr.spacing_mm)
    write_case(tmp_path, prepared, header, case.mr.spacing_mm, key)

    real_save = np.save
    calls: list[Path] = []

    def save_then_fail(path: Path, array: np.ndarray) -> None:  # the disk fills on array 3
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_save(path, array)

    monkeypatch.setattr(np, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_case(tmp_path, prepared, header, case.mr.spacing_mm, "another key")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    stored = read_case(tmp_path, record.case_id, key)  # the old, complete case is still there
    assert stored is not None and np.array_equal(stored.prepared.target, prepared.target)


def test_the_key_of_a_dicom_folder_follows_its_files(
    make_config: Callable[..., SynthesisConfig], tmp_path: Path
) -> None:
    series = tmp_path / "mr_series"
    series.mkdir()
    for n in range(3):
        (series / f"slice{n}.dcm").write_bytes(b"\0" * 64)
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(b"\0" * 64)
    record = CaseRecord("c1", ct, (series,))
    config = make_config()
    key = store_key(record, config)
    inner = series / "slice1.dcm"
    stat = inner.stat()  # one slice rewritten: the folder's own times do not change
    os.utime(inner, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert store_key(record, config) != key
