"""Every sop_ros node: its executable, its ROS node name and its config class.

Used by ``sop params`` (write a commented params file from the defaults), by
the single-process robot runner, and by the tests that check launch and
params files against the nodes that really exist.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from sop_ros.core.errors import ConfigError

__all__ = ["NODES", "NodeSpec", "node_spec"]


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """Where a node lives and how it is configured."""

    executable: str
    node_name: str
    module: str
    node_class: str
    config_class: str

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
    spec.executable: spec
    for spec in (
        NodeSpec(
            executable="bridge",
            node_name="bridge",
            module="sop_ros.nodes.bridge_node",
            node_class="BridgeNode",
            config_class="BridgeConfig",
        ),
        NodeSpec(
            executable="command_mux",
            node_name="command_mux",
            module="sop_ros.nodes.command_mux_node",
            node_class="CommandMuxNode",
            config_class="CommandMuxConfig",
        ),
        NodeSpec(
            executable="episode_manager",
            node_name="episode_manager",
            module="sop_ros.nodes.episode_manager_node",
            node_class="EpisodeManagerNode",
            config_class="EpisodeManagerConfig",
        ),
        NodeSpec(
            executable="learner",
            node_name="learner",
            module="sop_ros.nodes.learner_node",
            node_class="LearnerNode",
            config_class="CloudConfig",
        ),
        NodeSpec(
            executable="param_update",
            node_name="param_update",
            module="sop_ros.nodes.param_update_node",
            node_class="ParamUpdateNode",
            config_class="ParamUpdateConfig",
        ),
        NodeSpec(
            executable="policy",
            node_name="policy",
            module="sop_ros.nodes.policy_node",
            node_class="PolicyNode",
            config_class="PolicyNodeConfig",
        ),
        NodeSpec(
            executable="recorder",
            node_name="recorder",
            module="sop_ros.nodes.recorder_node",
            node_class="RecorderNode",
            config_class="RecorderConfig",
        ),
        NodeSpec(
            executable="sim_robot",
            node_name="sim_robot",
            module="sop_ros.nodes.sim_robot_node",
            node_class="SimRobotNode",
            config_class="SimRobotConfig",
        ),
        NodeSpec(
            executable="teleop",
            node_name="teleop",
            module="sop_ros.nodes.teleop_node",
            node_class="TeleopNode",
            config_class="TeleopConfig",
        ),
    )
}


def node_spec(name: str) -> NodeSpec:
    """Return the node called ``name`` (executable or node name); lists the valid names otherwise."""
    for spec in NODES.values():
        if name in (spec.executable, spec.node_name):
            return spec
    raise ConfigError(f"unknown node {name!r}; choose one of: {', '.join(sorted(NODES))}")
