"""A robot has one fleet setting: the bridge's uploader and param_update's fetcher cannot disagree."""

from __future__ import annotations

import pytest

from sop_ros.core.config import config_from_flat, flatten_config
from sop_ros.core.errors import ConfigError
from sop_ros.nodes.bridge_node import BridgeConfig
from sop_ros.nodes.param_update_node import ParamUpdateConfig


@pytest.mark.parametrize("config_cls", [BridgeConfig, ParamUpdateConfig])
def test_the_only_fleet_parameter_is_the_shared_zenoh_one(config_cls: type) -> None:
    assert [s.name for s in flatten_config(config_cls()) if "fleet" in s.name] == ["zenoh.fleet"]
    # The parameter that used to be a second one is refused, naming it.
    stale = "upload.fleet" if config_cls is BridgeConfig else "fetch.fleet"
    with pytest.raises(ConfigError, match=stale):
        config_from_flat(config_cls, {stale: "other"})


def test_uploader_and_fetcher_follow_the_one_setting() -> None:
    bridge = config_from_flat(BridgeConfig, {"zenoh.fleet": "plant_b"})
    update = config_from_flat(ParamUpdateConfig, {"zenoh.fleet": "plant_b"})
    assert bridge.upload.fleet == update.fetch.fleet == "plant_b"
