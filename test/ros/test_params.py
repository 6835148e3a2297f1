"""A config dataclass declared as ROS parameters: descriptors, overrides, refusals."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import rclpy
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError
from sop_ros.nodes.params import declare_config


@dataclass(frozen=True, kw_only=True)
class Sampler:
    alpha: float = setting(2.0, "boost of online data", low=1.0, high=10.0)
    window: int = setting(64, "window length", unit="samples", low=1)


@dataclass(frozen=True, kw_only=True)
class Demo:
    cameras: tuple[str, ...] = setting(("head",), "camera names")
    topics: tuple[str, ...] = setting((), "extra topics")
    offsets: tuple[float, ...] = setting((), "offsets", unit="m")
    sampler: Sampler = field(default_factory=Sampler)

    def __post_init__(self) -> None:
        check_ranges(self)
        if "bad" in self.cameras:
            raise ConfigError("no camera may be called bad")


def test_declares_every_field_with_a_descriptor(ros_context) -> None:
    node = rclpy.create_node("params_demo", context=ros_context)
    config = declare_config(node, Demo)
    assert config == Demo()
    descriptor = node.describe_parameter("sampler.alpha")
    assert descriptor.type == ParameterType.PARAMETER_DOUBLE
    assert descriptor.description.startswith("boost of online data Read at start-up only")
    assert descriptor.read_only
    assert descriptor.floating_point_range[0].from_value == 1.0
    assert node.describe_parameter("sampler.window").description.startswith("window length [samples]")
    assert node.describe_parameter("cameras").type == ParameterType.PARAMETER_STRING_ARRAY
    # Empty by default, still typed by its element type: a params file may give floats.
    assert node.describe_parameter("offsets").type == ParameterType.PARAMETER_DOUBLE_ARRAY
    node.destroy_node()


def test_overrides_are_read_back_and_checked(ros_context) -> None:
    node = rclpy.create_node(
        "params_override",
        context=ros_context,
        parameter_overrides=[
            Parameter("sampler.window", value=8),
            Parameter("cameras", value=["a", "b"]),
            Parameter("offsets", value=[0.5, -1.0]),
        ],
    )
    config = declare_config(node, Demo)
    assert config.sampler.window == 8 and config.cameras == ("a", "b") and config.offsets == (0.5, -1.0)
    node.destroy_node()

    node = rclpy.create_node(
        "params_bad", context=ros_context, parameter_overrides=[Parameter("sampler.window", value=0)]
    )
    with pytest.raises((ConfigError, rclpy.exceptions.InvalidParameterValueException)):
        declare_config(node, Demo)
    node.destroy_node()


def test_live_parameters_are_validated_and_applied_the_rest_refused(ros_context) -> None:
    node = rclpy.create_node("params_live", context=ros_context)
    seen: list[Demo] = []
    config = declare_config(node, Demo, live=("sampler.alpha", "cameras"), on_change=seen.append)
    assert not node.describe_parameter("sampler.alpha").read_only
    assert node.describe_parameter("sampler.window").read_only

    result = node.set_parameters([Parameter("sampler.alpha", value=3.0)])[0]
    assert result.successful and seen[-1].sampler.alpha == 3.0 and seen[-1].cameras == config.cameras
    # Out of range (the descriptor's range) or refused by the config: nothing applied.
    result = node.set_parameters([Parameter("sampler.alpha", value=50.0)])[0]
    assert not result.successful and "out of range" in result.reason
    result = node.set_parameters([Parameter("cameras", value=["head", "bad"])])[0]
    assert not result.successful and result.reason == "no camera may be called bad"
    assert len(seen) == 1 and node.get_parameter("sampler.alpha").value == 3.0
    assert node.get_parameter("cameras").value == ["head"]
    # Read-only: refused, with the reason, and nothing applied.
    result = node.set_parameters([Parameter("sampler.window", value=8)])[0]
    assert not result.successful and "read-only" in result.reason
    assert len(seen) == 1
    node.destroy_node()


def test_live_names_must_exist_and_be_applied(ros_context) -> None:
    node = rclpy.create_node("params_live_bad", context=ros_context)
    with pytest.raises(ConfigError, match=r"no settings sampler\.beta"):
        declare_config(node, Demo, live=("sampler.beta",), on_change=print)
    node.destroy_node()
    node = rclpy.create_node("params_live_nocb", context=ros_context)
    with pytest.raises(ConfigError, match="need an on_change"):
        declare_config(node, Demo, live=("sampler.alpha",))
    node.destroy_node()
