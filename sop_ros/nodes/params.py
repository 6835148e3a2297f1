"""Declare a frozen config dataclass as ROS parameters, and read it back.

Parameter names are the config's dotted field paths (``sampler.alpha``), so a
params YAML file mirrors the dataclass. Each parameter gets a descriptor with
its description, unit, range and read-only flag, which ``ros2 param describe``
shows. Values are checked by the config itself (``config_from_flat``), so a
node refuses a bad value with the config's own message.

Parameters mean what they say: a parameter is *live* only where its node
reads it anew while running and lists it in ``live``; a set-parameters
callback then validates the new value against the whole config and hands the
node the new config. Every other parameter is declared read-only, so
``ros2 param set`` is refused rather than accepted and ignored; such a
setting is given at start-up (``-p``, a params file, ``sop robot --set``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from sop_ros.core.config import FlatSetting, config_from_flat, flatten_config
from sop_ros.core.errors import ConfigError

__all__ = ["declare_config", "descriptor_for"]

C = TypeVar("C")

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


_ARRAY_TYPES = {
    bool: ParameterType.PARAMETER_BOOL_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY,
}


def _tuple_type(value: tuple, item_type: type | None = None) -> int:
    # The declared element type wins: an empty tuple of floats is still a double array.
    if item_type is not None:
        return _ARRAY_TYPES[item_type]
    kinds = {type(item) for item in value}
    if kinds <= {str}:
        return ParameterType.PARAMETER_STRING_ARRAY
    if kinds <= {float, int} and float in kinds:
        return ParameterType.PARAMETER_DOUBLE_ARRAY
    if kinds <= {int}:
        return ParameterType.PARAMETER_INTEGER_ARRAY
    if kinds <= {bool}:
        return ParameterType.PARAMETER_BOOL_ARRAY
    raise TypeError(f"cannot make a ROS parameter array of {kinds}")


# Appended to the description of a read-only parameter, so ``ros2 param describe`` says why.
READ_ONLY_NOTE = " Read at start-up only: set it with -p or a params file and restart the node."


def descriptor_for(leaf: FlatSetting, *, live: bool = True) -> ParameterDescriptor:
    """Return the ROS parameter descriptor of one config leaf (read-only unless ``live``)."""
    unit = f" [{leaf.unit}]" if leaf.unit else ""
    choices = f" One of: {', '.join(leaf.choices)}." if leaf.choices else ""
    read_only = leaf.read_only or not live
    descriptor = ParameterDescriptor(
        name=leaf.name,
        type=_tuple_type(leaf.value, leaf.item_type) if leaf.type_ is tuple else _TYPES[leaf.type_],
        description=f"{leaf.description}{unit}{choices}{READ_ONLY_NOTE if read_only else ''}",
        read_only=read_only,
    )
    if leaf.type_ is float and (leaf.low is not None or leaf.high is not None):
        descriptor.floating_point_range = [
            FloatingPointRange(
                from_value=float(leaf.low if leaf.low is not None else -1e308),
                to_value=float(leaf.high if leaf.high is not None else 1e308),
            )
        ]
    elif leaf.type_ is int and (leaf.low is not None or leaf.high is not None):
        descriptor.integer_range = [
            IntegerRange(
                from_value=int(leaf.low if leaf.low is not None else -(2**63)),
                to_value=int(leaf.high if leaf.high is not None else 2**63 - 1),
                step=1,
            )
        ]
    return descriptor


def declare_config(
    node: Node,
    config_cls: type[C],
    defaults: C | None = None,
    *,
    live: Collection[str] = (),
    on_change: Callable[[C], None] | None = None,
) -> C:
    """Declare every field of ``config_cls`` on ``node`` and return the config it now holds.

    Args:
        node: The node that owns the parameters.
        config_cls: A frozen config dataclass built with ``setting(...)`` fields.
        defaults: Values to declare instead of the dataclass defaults.
        live: Names the node applies while running; all others are declared read-only.
        on_change: Called with the new config when a live parameter is set at run time (on
            the thread serving the parameter services); raising ConfigError refuses the set.
            Required when ``live`` is not empty.

    Raises:
        ConfigError: a value given by a params file or the command line is invalid, or
            ``live`` names a setting the config does not have.
    """
    template = defaults if defaults is not None else config_cls()
    leaves = flatten_config(template)
    unknown = sorted(set(live) - {leaf.name for leaf in leaves})
    if unknown:
        raise ConfigError(f"{config_cls.__name__} has no settings {', '.join(unknown)} to apply live")
    values: dict[str, Any] = {}
    for leaf in leaves:
        descriptor = descriptor_for(leaf, live=leaf.name in live)
        # An empty list carries no element type, so declare the type instead.
        initial = (
            Parameter.Type(descriptor.type) if leaf.value == () else _ros_value(leaf.value, leaf.item_type)
        )
        declared = node.declare_parameter(leaf.name, initial, descriptor)
        values[leaf.name] = _python_value(declared.value, leaf)
    config = config_from_flat(config_cls, values)
    if live:
        if on_change is None:
            raise ConfigError("live parameters need an on_change callback that applies them")
        by_name = {leaf.name: leaf for leaf in leaves}

        def apply(parameters: list[Parameter]) -> SetParametersResult:
            changed = {
                p.name: _python_value(p.value, by_name[p.name]) for p in parameters if p.name in by_name
            }
            try:
                # The node may refuse too (limits that do not fit its action names): then nothing changes.
                on_change(config_from_flat(config_cls, {**values, **changed}))
            except ConfigError as err:
                return SetParametersResult(successful=False, reason=str(err))
            values.update(changed)
            return SetParametersResult(successful=True)

        node.add_on_set_parameters_callback(apply)
    return config


def _ros_value(value: Any, item_type: type | None = None) -> Any:
    if isinstance(value, tuple):
        return [item_type(v) for v in value] if item_type is not None else list(value)
    return value


def _python_value(value: Any, leaf: FlatSetting) -> Any:
    if value is None:
        return leaf.value
    if leaf.type_ is tuple:
        return tuple(value)
    if leaf.type_ is float and isinstance(value, int):
        return float(value)
    return value
