"""Write and check ROS params files from config dataclasses.

A params file holds one section per node (``/**/<node>: ros__parameters:``
so it matches the node in any robot namespace); keys are the config's dotted
field paths. :func:`params_yaml` writes the defaults with each setting's
description and unit as a comment; :func:`check_params_file` loads a file and
builds every node's config from it, so a typo or an out-of-range value fails
with the config's own message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sop_ros.core.config import config_from_flat, flatten_config
from sop_ros.core.errors import ConfigError
from sop_ros.nodes.registry import node_spec

__all__ = ["check_params_file", "node_sections", "params_yaml"]


def params_yaml(node: str) -> str:
    """Return a commented params-file section holding ``node``'s defaults."""
    spec = node_spec(node)
    _, config_cls = spec.load()
    lines = [f"/**/{spec.node_name}:", "  ros__parameters:"]
    for leaf in flatten_config(config_cls()):
        unit = f" [{leaf.unit}]" if leaf.unit else ""
        lines.append(f"    # {leaf.description}{unit}")
        value = list(leaf.value) if isinstance(leaf.value, tuple) else leaf.value
        dumped = yaml.safe_dump({leaf.name: value}, default_flow_style=True, width=1000).strip()
        lines.append(f"    {dumped.strip('{}')}")
    return "\n".join(lines) + "\n"


def node_sections(path: Path) -> dict[str, dict[str, Any]]:
    """Return node name -> parameters of a params file (namespace wildcards stripped)."""
    data = yaml.safe_load(path.read_text()) or {}
    sections = {}
    for key, body in data.items():
        name = key.rsplit("/", 1)[-1]
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ConfigError(f"{path}: section {key!r} has no ros__parameters")
        sections[name] = body["ros__parameters"] or {}
    return sections


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    # ROS accepts nested dicts and dotted keys alike; configs take dotted keys.
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_params_file(path: Path) -> list[str]:
    """Build every node's config from ``path``; return the node names checked.

    Raises:
        ConfigError: a section names an unknown node or holds an invalid setting.
    """
    checked = []
    for name, params in node_sections(path).items():
        _, config_cls = node_spec(name).load()
        try:
            config_from_flat(config_cls, _flat(params))
        except ConfigError as err:
            raise ConfigError(f"{path}: node {name}: {err}") from None
        checked.append(name)
    return checked
