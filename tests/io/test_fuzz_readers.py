"""Fuzzing the readers: byte mutations of valid NIfTI, NRRD, MHA and DICOM files raise only
synthct errors (subclasses of SynthctError), never another exception type.

A bounded, derandomised run (200 inputs per format) runs in CI; benchmarks/fuzz_readers.py runs
the long one and prints the counts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_inputs import FORMATS, mutated_copy, read_outcome, seed_files


@pytest.fixture(scope="module")
def seeds() -> Iterator[dict[str, Path]]:
    with tempfile.TemporaryDirectory() as folder:
        yield seed_files(Path(folder))


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def test_seed_files_read(seeds: dict[str, Path]) -> None:
    # the mutations start from valid files: each one reads as the same CT
    assert {fmt: read_outcome(path) for fmt, path in seeds.items()} == dict.fromkeys(FORMATS, "ok")


#: Header bytes are where parsers break: most edits land in the first 512 bytes.
EDITS = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 511), st.integers(0, 1 << 20)),
        st.one_of(st.integers(0, 255), st.sampled_from([0, 0x7F, 0x80, 0xFF, 0x20, 0x0A])),
    ),
    min_size=1,
    max_size=6,
)
CUT = st.one_of(st.none(), st.integers(0, 1 << 20))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=EDITS, cut=CUT, which=st.integers(0, 2))
def test_mutated_files_give_only_synthct_errors(
    fmt: str,
    seeds: dict[str, Path],
    work: Path,
    edits: list[tuple[int, int]],
    cut: int | None,
    which: int,
) -> None:
    path = mutated_copy(seeds[fmt], work, edits, cut, which)
    assert read_outcome(path) in ("ok", "error")
