from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from sop_ros.core.config import check_ranges, config_from_flat, flatten_config, setting
from sop_ros.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Inner:
    alpha: float = setting(2.0, "online boost", low=1.0)
    window: int = setting(64, "window length", unit="samples", low=1, high=10_000)


@dataclass(frozen=True, kw_only=True)
class Outer:
    name: str = setting("tiny", "model size", choices=("tiny", "full"))
    cameras: tuple[str, ...] = setting(("head",), "camera names")
    sampler: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        check_ranges(self)


def test_flatten_gives_dotted_names_and_metadata() -> None:
    leaves = {leaf.name: leaf for leaf in flatten_config(Outer())}
    assert sorted(leaves) == ["cameras", "name", "sampler.alpha", "sampler.window"]
    assert leaves["sampler.window"].unit == "samples" and leaves["sampler.window"].type_ is int
    assert leaves["cameras"].type_ is tuple


def test_from_flat_coerces_and_validates() -> None:
    config = config_from_flat(Outer, {"sampler.alpha": 3, "cameras": ["a", "b"]})
    assert config.sampler.alpha == 3.0 and config.cameras == ("a", "b")
    with pytest.raises(ConfigError, match=r"sampler.alpha must be >= 1.0"):
        config_from_flat(Outer, {"sampler.alpha": 0.5})
    with pytest.raises(ConfigError, match="one of tiny, full"):
        config_from_flat(Outer, {"name": "huge"})
    with pytest.raises(ConfigError, match=r"unknown settings: sampler\.beta"):
        config_from_flat(Outer, {"sampler.beta": 1.0})
    with pytest.raises(ConfigError, match="must be int"):
        config_from_flat(Outer, {"sampler.window": "64"})
    # YAML reads 5e-4 without a dot as a string; a float setting still takes it.
    assert config_from_flat(Outer, {"sampler.alpha": yaml.safe_load("2e0")}).sampler.alpha == 2.0
    with pytest.raises(ConfigError, match=r"sampler\.alpha must be float, got 'high'"):
        config_from_flat(Outer, {"sampler.alpha": "high"})


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="window must be <= 10000"):
        Outer(sampler=Inner(window=20_000))
