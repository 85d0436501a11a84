"""The synthesis configuration: YAML round trip, defaults, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthct.synthesis.config import SynthesisConfig, config_to_yaml, load_config
from synthct.synthesis.errors import TrainingConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_yaml_round_trip_keeps_every_setting(tmp_path: Path) -> None:
    config = SynthesisConfig().with_updates(
        {"network": {"base_channels": 4, "levels": 2}, "patches": {"size": (8, 16, 24)}}
    )
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(config), encoding="utf-8")
    assert load_config(path) == config
    assert load_config(path).patches.size == (8, 16, 24)


def test_missing_keys_take_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  iterations: 7\n", encoding="utf-8")
    config = load_config(path)
    assert config.training.iterations == 7
    assert config.network == SynthesisConfig().network


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("training:\n  iteratons: 7\n", "training.iteratons"),
        ("network:\n  dropout: 1.5\n", "network.dropout"),
        ("patches:\n  size: [30, 32, 32]\n", "multiple of 4"),
        ("loss:\n  nll: poisson\n", "loss.nll"),
        (
            "network:\n  architecture: monai_basic_unet\n  dropout_before_head: false\n",
            "dropout_before_head: false needs architecture 'unet'",
        ),
        ("- a list\n", "mapping"),
        ("training: [unclosed\n", "YAML"),
    ],
)
def test_bad_settings_raise_naming_the_key(tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TrainingConfigError) as info:
        load_config(path)
    assert names in str(info.value)
    assert str(path) in str(info.value)


def test_shipped_configs_load() -> None:
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert paths, f"no configuration in {CONFIGS}"
    for path in paths:
        load_config(path)
