"""The layers of ARCHITECTURE.md: dependencies point down only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sop_ros"

ROS = ("rclpy", "rcl_interfaces", "launch", "launch_ros", "ament_index_python")
MESSAGES = ("sop_msgs", "std_msgs", "sensor_msgs", "trajectory_msgs", "diagnostic_msgs", "lifecycle_msgs")
FORBIDDEN = {
    "core": (
        *ROS,
        *MESSAGES,
        "zenoh",
        "rosbags",
        "mcap",
        "sop_ros.storage",
        "sop_ros.transport",
        "sop_ros.learner",
        "sop_ros.nodes",
        "sop_ros.sim",
    ),
    "storage": (*ROS, *MESSAGES, "zenoh", "sop_ros.transport", "sop_ros.learner", "sop_ros.nodes"),
    "transport": (*ROS, *MESSAGES, "sop_ros.storage", "sop_ros.learner", "sop_ros.nodes"),
    "learner": (*ROS, *MESSAGES, "sop_ros.nodes"),
    # Simulated fleets in one process: no ROS, no Zenoh (runs where neither is installed).
    "experiment": (*ROS, *MESSAGES, "zenoh", "sop_ros.transport", "sop_ros.nodes", "sop_ros.demo"),
    # What the demo, the study and the benches share: below both applications.
    "simlab": (
        *ROS,
        *MESSAGES,
        "zenoh",
        "sop_ros.transport",
        "sop_ros.nodes",
        "sop_ros.demo",
        "sop_ros.experiment",
    ),
    "sim": (
        *ROS,
        *MESSAGES,
        "zenoh",
        "sop_ros.storage",
        "sop_ros.transport",
        "sop_ros.learner",
        "sop_ros.nodes",
    ),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imported_modules(path):
            for banned in FORBIDDEN[layer]:
                if module == banned or module.startswith(f"{banned}."):
                    found.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    if not (PACKAGE / layer).is_dir():
        pytest.skip(f"sop_ros/{layer} does not exist yet")
    assert violations(layer) == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import rclpy\nfrom zenoh import Session\nfrom sop_ros.core import types\n")
    assert imported_modules(bad) == {"rclpy", "zenoh", "sop_ros.core"}
