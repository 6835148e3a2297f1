"""Frozen configuration dataclasses and their flat, ROS-parameter view.

A config is a ``@dataclass(frozen=True, kw_only=True)`` whose fields are made
with :func:`setting`, which records a description, a unit and an allowed range.
Nested configs flatten to dotted names (``sampler.alpha``), the same names the
ROS parameters and params YAML files use. :func:`check_ranges` enforces the
recorded ranges, so ``__post_init__`` only states what ranges cannot.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from sop_ros.core.errors import ConfigError

__all__ = [
    "FlatSetting",
    "check_ranges",
    "config_from_flat",
    "derived",
    "differing_settings",
    "flatten_config",
    "flatten_mapping",
    "parse_assignments",
    "setting",
]

C = TypeVar("C")

Scalar = bool | int | float | str | tuple[Any, ...]


def setting(
    default: Any,
    description: str,
    *,
    unit: str = "",
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    read_only: bool = False,
) -> Any:
    """Declare a config field with the facts a ROS parameter descriptor needs.

    Args:
        default: Default value; a tuple for list-valued settings.
        description: One line saying what the setting does.
        unit: SI unit or "" for unit-less values.
        low: Smallest allowed value (inclusive), numbers only.
        high: Largest allowed value (inclusive), numbers only.
        choices: Allowed values, strings only.
        read_only: True when changing it at run time makes no sense.
    """
    metadata = {
        "description": description,
        "unit": unit,
        "low": low,
        "high": high,
        "choices": choices,
        "read_only": read_only,
    }
    return dataclasses.field(default=default, metadata=metadata)


def derived(default: Any, description: str) -> Any:
    """Declare a config field that is no setting of its own: its owner copies it from one.

    A value two configs must share (the fleet name of a robot's uploader and of
    its weights fetcher) is declared once, as a :func:`setting` of the config
    that holds both, and copied into each; a derived field is not flattened, so
    it never becomes a second ROS parameter that could disagree with the first.
    """
    return dataclasses.field(default=default, metadata={"derived": description})


@dataclass(frozen=True, kw_only=True)
class FlatSetting:
    """One leaf of a config, as a ROS parameter sees it."""

    name: str
    value: Any
    type_: type
    description: str
    unit: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False
    # Element type of a tuple setting (``tuple[float, ...]`` -> float), else None.
    item_type: type | None = None


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def flatten_config(config: Any, prefix: str = "") -> list[FlatSetting]:
    """Return every leaf setting of ``config`` with its dotted name."""
    hints = _field_types(type(config))
    out: list[FlatSetting] = []
    for f in dataclasses.fields(config):
        if "derived" in f.metadata:
            continue
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.extend(flatten_config(value, prefix=f"{name}."))
            continue
        meta = f.metadata
        if "description" not in meta:
            raise ConfigError(f"{type(config).__name__}.{f.name} is not declared with setting()")
        out.append(
            FlatSetting(
                name=name,
                value=value,
                type_=_leaf_type(hints[f.name]),
                description=meta["description"],
                unit=meta["unit"],
                low=meta["low"],
                high=meta["high"],
                choices=meta["choices"],
                read_only=meta["read_only"],
                item_type=_item_type(hints[f.name]),
            )
        )
    return out


def _item_type(hint: Any) -> type | None:
    args = typing.get_args(hint) if typing.get_origin(hint) is tuple else ()
    return args[0] if args and args[0] in (bool, int, float, str) else None


def _leaf_type(hint: Any) -> type:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple
    if hint in (bool, int, float, str):
        return typing.cast(type, hint)
    raise ConfigError(f"config fields must be bool, int, float, str or tuple, not {hint}")


def flatten_mapping(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Turn nested mappings (as YAML gives them) into dotted names: ``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(flatten_mapping(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing_settings(
    a: Mapping[str, Any], b: Mapping[str, Any], *, ignore: tuple[str, ...] = ()
) -> list[str]:
    """Names whose values differ between two settings mappings (or are in one only), sorted."""
    return sorted(k for k in a.keys() | b.keys() if k not in ignore and a.get(k) != b.get(k))


def config_from_flat(cls: type[C], values: Mapping[str, Any], prefix: str = "") -> C:
    """Build ``cls`` from dotted-name values, using defaults for missing names.

    Raises:
        ConfigError: a value has the wrong type, is out of range, or a name is unknown.
    """
    hints = _field_types(cls)
    known: set[str] = set()
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(typing.cast(Any, cls)):
        name = f"{prefix}{f.name}"
        hint = hints[f.name]
        if "derived" in f.metadata:
            continue
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            sub_values = {k: v for k, v in values.items() if k.startswith(f"{name}.")}
            kwargs[f.name] = config_from_flat(hint, sub_values, prefix=f"{name}.")
            known.update(sub_values)
            continue
        known.add(name)
        if name in values:
            kwargs[f.name] = _coerce(name, values[name], _leaf_type(hint))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(unknown)}")
    config = cls(**kwargs)
    if not prefix:
        check_ranges(config)
    return config


def _coerce(name: str, value: Any, type_: type) -> Any:
    if type_ is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return tuple(value)
    if type_ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type_ is float and isinstance(value, str):
        # YAML 1.1 reads "5e-4" (no dot) as a string; people write learning rates that way.
        try:
            return float(value)
        except ValueError:
            pass
    if type(value) is not type_:
        raise ConfigError(f"{name} must be {type_.__name__}, got {value!r}")
    return value


def check_ranges(config: Any) -> None:
    """Raise ConfigError if any leaf of ``config`` is outside its declared range."""
    for leaf in flatten_config(config):
        value = leaf.value
        unit = f" {leaf.unit}" if leaf.unit else ""
        if leaf.low is not None and value < leaf.low:
            raise ConfigError(f"{leaf.name} must be >= {leaf.low}{unit}, got {value}")
        if leaf.high is not None and value > leaf.high:
            raise ConfigError(f"{leaf.name} must be <= {leaf.high}{unit}, got {value}")
        if leaf.choices and value not in leaf.choices:
            raise ConfigError(f"{leaf.name} must be one of {', '.join(leaf.choices)}, got {value!r}")


def parse_assignments(items: Sequence[str]) -> dict[str, object]:
    """A command line's ``--set`` items, ``["a.b=3", "c=[x, y]"]`` → ``{"a.b": 3, "c": ["x", "y"]}``."""
    values: dict[str, object] = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        values[name] = yaml.safe_load(value)
    return values
