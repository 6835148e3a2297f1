"""Every sop_ros node: its executable, its ROS node name and its config class.

Used by setup.py (the console scripts), by the launch files, by ``sop params``
(write a commented params file from the defaults), by the single-process
robot runner, and by the tests that check launch and params files against the
nodes that really exist.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from sop_ros.core.errors import ConfigError

__all__ = [
    "CLOUD_NODES",
    "LINK_NODES",
    "NODES",
    "ROBOT_NODES",
    "SIM_NODES",
    "NodeSpec",
    "console_scripts",
    "node_spec",
]


# The node groups, each in start order. Every node is in exactly one; the launch
# files, ``sop robot`` and the console scripts of setup.py are all derived from them.
# Nodes of every robot.
ROBOT_NODES = ("episode_manager", "recorder", "policy", "teleop", "command_mux")
# The robot's link to the learner over Zenoh (bags up, weights down).
LINK_NODES = ("bridge", "param_update")
# The simulated robot and its scripted operator, in place of the hardware driver and the joystick.
SIM_NODES = ("sim_robot",)
# The learner, off the robot.
CLOUD_NODES = ("learner",)

# Executable -> (node class, config class) in module sop_ros.nodes.<executable>_node.
_CLASSES = {
    "bridge": ("BridgeNode", "BridgeConfig"),
    "command_mux": ("CommandMuxNode", "CommandMuxConfig"),
    "episode_manager": ("EpisodeManagerNode", "EpisodeManagerConfig"),
    "learner": ("LearnerNode", "CloudConfig"),
    "param_update": ("ParamUpdateNode", "ParamUpdateConfig"),
    "policy": ("PolicyNode", "PolicyNodeConfig"),
    "recorder": ("RecorderNode", "RecorderConfig"),
    "sim_robot": ("SimRobotNode", "SimRobotConfig"),
    "teleop": ("TeleopNode", "TeleopConfig"),
}


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """Where a node lives and how it is configured."""

    executable: str
    node_class: str
    config_class: str

    @property
    def node_name(self) -> str:
        """The ROS node name (the executable's name)."""
        return self.executable

    @property
    def module(self) -> str:
        """The module that holds the node and its ``main``."""
        return f"sop_ros.nodes.{self.executable}_node"

    def command(self, params: dict[str, str] | None = None, *, namespace: str = "") -> list[str]:
        """The command line that runs this node with this Python, parameters given as ROS strings."""
        command = [sys.executable, "-m", self.module, "--ros-args"]
        for name, value in (params or {}).items():
            command += ["-p", f"{name}:={value}"]
        if namespace:
            command += ["-r", f"__ns:={namespace}"]
        return command

    def load(self) -> tuple[type, type]:
        """Import and return (node class, config class)."""
        module = importlib.import_module(self.module)
        return getattr(module, self.node_class), getattr(module, self.config_class)


NODES: dict[str, NodeSpec] = {
    name: NodeSpec(executable=name, node_class=node_class, config_class=config_class)
    for name, (node_class, config_class) in sorted(_CLASSES.items())
}


def console_scripts() -> list[str]:
    """``<executable> = <module>:main`` of every node, so that ``ros2 run sop_ros <node>`` finds it.

    setup.py imports this module alone: it must not import rclpy or anything outside the package.
    """
    return [f"{spec.executable} = {spec.module}:main" for spec in NODES.values()]


def node_spec(name: str) -> NodeSpec:
    """Return the node called ``name`` (executable or node name); lists the valid names otherwise."""
    for spec in NODES.values():
        if name in (spec.executable, spec.node_name):
            return spec
    raise ConfigError(f"unknown node {name!r}; choose one of: {', '.join(sorted(NODES))}")
