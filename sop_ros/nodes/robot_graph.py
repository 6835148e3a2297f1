"""One robot's whole node graph in one process (``sop robot``).

The same nodes that ``ros2 launch sop_ros robot.launch.py`` starts as
separate processes, here built in one process under the robot's namespace:
for the demo, for tests and for small machines. Every node spins on a
single-threaded executor and a thread of its own (:class:`NodeSpinners`), so
the control nodes' short callbacks (driver, teleop, command mux, episode
manager) never wait in line behind bag writing or weights staging, as they
would not as separate processes either. With ``sim``
the simulated robot (and its scripted operator) replaces the hardware driver
and the joystick, and every node gets the settings that fit the simulator.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from sop_ros.core.config import flatten_config
from sop_ros.core.interrupts import ignoring_interrupts
from sop_ros.core.policy.config import PolicyConfig
from sop_ros.nodes.registry import NODES, ROBOT_NODES, SIM_NODES
from sop_ros.nodes.spinning import NodeSpinners
from sop_ros.sim import ACTION_NAMES, TASK_NAMES, get_task
from sop_ros.sim.policy import sim_policy_config

__all__ = ["RobotGraph", "RobotGraphConfig", "sim_parameters"]


@dataclass(frozen=True, kw_only=True)
class RobotGraphConfig:
    """What to run for one robot."""

    robot_id: str
    sim: bool = True
    # Per node executable: parameter name -> value, applied over the defaults.
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    params_file: str = ""


def sim_parameters(
    robot_id: str, *, spool_dir: str, control_period_s: float = 0.1
) -> dict[str, dict[str, Any]]:
    """Settings that make the robot nodes fit the simulator (tasks, action names, rates)."""
    tasks = [get_task(name) for name in TASK_NAMES]
    names = list(ACTION_NAMES)
    # The policy's settings where the simulator's differ from the defaults, as ROS parameters.
    defaults = {s.name: s.value for s in flatten_config(PolicyConfig())}
    policy = {
        f"policy.{s.name}": list(s.value) if isinstance(s.value, tuple) else s.value
        for s in flatten_config(sim_policy_config(control_period_s))
        if s.value != defaults[s.name]
    }
    return {
        "episode_manager": {
            "auto_start": True,
            "pause_s": 0.5,
            "episodes.robot_id": robot_id,
            "episodes.tasks": list(TASK_NAMES),
            "episodes.instructions": [task.instruction for task in tasks],
            "episodes.time_budgets_s": [float(task.budget_s) for task in tasks],
        },
        "recorder": {"spool_dir": spool_dir, "cameras": ["head"]},
        "policy": {"replan_period_s": 0.3, **policy},
        "command_mux": {"control_rate_hz": 1.0 / control_period_s, "action_names": names},
        "sim_robot": {"sim.control_period_s": control_period_s},
        "bridge": {"spool_dir": spool_dir, "upload.robot_id": robot_id, "spool.poll_period_s": 0.5},
        "param_update": {"staging_dir": f"{spool_dir}/weights", "fetch.manifest_poll_s": 2.0},
    }


def _merge(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for node, values in layer.items():
            merged.setdefault(node, {}).update(values)
    return merged


class RobotGraph:
    """Build, spin and tear down one robot's nodes.

    Args:
        config: Which robot and which settings.
        context: rclpy context to use (initialised by the caller).
        extra_nodes: Executables to add to the standard set (e.g. ``registry.LINK_NODES``).
    """

    def __init__(
        self, config: RobotGraphConfig, *, context: Context, extra_nodes: Iterable[str] = ()
    ) -> None:
        self.config = config
        self.context = context
        # The simulated driver comes last.
        names = [*ROBOT_NODES, *extra_nodes, *(SIM_NODES if config.sim else ())]
        defaults = sim_parameters(config.robot_id, spool_dir=f"spool/{config.robot_id}") if config.sim else {}
        settings = _merge(defaults, config.parameters)
        cli_args = ["--ros-args", "--params-file", config.params_file] if config.params_file else None
        self.nodes: dict[str, Node] = {}
        for name in names:
            node_class, _ = NODES[name].load()
            overrides = [Parameter(k, value=v) for k, v in settings.get(name, {}).items()]
            self.nodes[name] = node_class(
                context=context,
                namespace=config.robot_id,
                parameter_overrides=overrides,
                cli_args=cli_args,
            )
        self.spinners = NodeSpinners(context)
        for node in self.nodes.values():
            self.spinners.add(node)

    def add_node(self, node: Node) -> None:
        """Spin one more node with the graph (a probe, a custom driver) on an executor of its own."""
        self.spinners.add(node)

    def spin_in_thread(self) -> None:
        """Spin every node on a background thread (returns at once)."""
        self.spinners.start()

    def spin(self) -> None:
        """Spin every node until shutdown (one of them on this thread)."""
        self.spinners.spin()

    def shutdown(self) -> None:
        """Stop spinning and destroy every node (a recording bag is closed as aborted)."""
        self.spinners.shutdown()
        for node in reversed(list(self.nodes.values())):
            node.destroy_node()


def _say(robot_id: str, message: str) -> None:
    print(f"[{robot_id}] {message}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_robot(config: RobotGraphConfig, extra_nodes: Iterable[str] = ()) -> int:
    """Run one robot's graph in this process until Ctrl-C; returns an exit code."""
    context = Context()
    rclpy.init(context=context)
    graph = None
    try:
        graph = RobotGraph(config, context=context, extra_nodes=extra_nodes)
        # Ctrl-C and SIGTERM (what launch and supervisors send) end the graph cleanly, even when
        # the process was started with SIGINT ignored (e.g. in the background from a shell).
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _interrupt)
        graph.spin()
    except KeyboardInterrupt:
        pass
    finally:
        # Closing the running episode's bag and stopping the uploads must not be cut short.
        with ignoring_interrupts(lambda: _say(config.robot_id, "still shutting down: closing the bag")):
            if graph is not None:
                graph.shutdown()
            rclpy.try_shutdown(context=context)
    return 0
