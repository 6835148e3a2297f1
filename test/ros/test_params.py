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
    sampler: Sampler = field(default_factory=Sampler)

    def __post_init__(self) -> None:
        check_ranges(self)


def test_declares_every_field_with_a_descriptor(ros_context) -> None:
    node = rclpy.create_node("params_demo", context=ros_context)
    config = declare_config(node, Demo)
    assert config == Demo()
    descriptor = node.describe_parameter("sampler.alpha")
    assert descriptor.type == ParameterType.PARAMETER_DOUBLE
    assert descriptor.description == "boost of online data"
    assert descriptor.floating_point_range[0].from_value == 1.0
    assert node.describe_parameter("sampler.window").description == "window length [samples]"
    assert node.describe_parameter("cameras").type == ParameterType.PARAMETER_STRING_ARRAY
    node.destroy_node()


def test_overrides_are_read_back_and_checked(ros_context) -> None:
    node = rclpy.create_node(
        "params_override",
        context=ros_context,
        parameter_overrides=[Parameter("sampler.window", value=8), Parameter("cameras", value=["a", "b"])],
    )
    config = declare_config(node, Demo)
    assert config.sampler.window == 8 and config.cameras == ("a", "b")
    node.destroy_node()

    node = rclpy.create_node(
        "params_bad", context=ros_context, parameter_overrides=[Parameter("sampler.window", value=0)]
    )
    with pytest.raises((ConfigError, rclpy.exceptions.InvalidParameterValueException)):
        declare_config(node, Demo)
    node.destroy_node()
