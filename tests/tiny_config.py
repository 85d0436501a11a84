"""The tiny phantom training configuration with its schedule shortened, for command tests."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny_config(
    folder: Path, *, iterations: int, validation_interval: int, checkpoint_interval: int
) -> Path:
    """Write ``configs/phantom_tiny.yaml`` with this schedule to ``folder/tiny.yaml``."""
    text = (CONFIGS / "phantom_tiny.yaml").read_text()
    for key, old, new in (
        ("iterations", 80, iterations),
        ("validation_interval", 20, validation_interval),
        ("checkpoint_interval", 40, checkpoint_interval),
    ):
        assert f"{key}: {old}" in text, f"phantom_tiny.yaml no longer has '{key}: {old}'"
        text = text.replace(f"{key}: {old}", f"{key}: {new}")
    path = folder / "tiny.yaml"
    path.write_text(text)
    return path
