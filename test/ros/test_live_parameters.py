"""Every node parameter is either applied when set at run time, or read-only and refused.

Each node is built for real (the bridge and param_update with no Zenoh router
in reach, the learner with the tiny model on the CPU) and its parameters are
set through its parameter services, as ``ros2 param set`` does. A live
parameter must change what the node does; every live parameter of every node
has such a check here or in ``test_safety.py`` (the policy's, on a running
policy process).
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from ros_helpers import free_port, spinning, wait_for
from sensor_msgs.msg import JointState, Joy
from sop_msgs.msg import ActionChunk, Intervention

from sop_ros.core import topics
from sop_ros.core.config import flatten_config
from sop_ros.nodes.common import COMMAND_QOS, SENSOR_QOS
from sop_ros.nodes.params_file import live_parameters
from sop_ros.nodes.registry import NODES

S = 1_000_000_000
# Live parameters whose effect is checked, and where.
CHECKED = {
    "command_mux": {
        "control.max_chunk_age_s",
        "control.max_command_age_s",
        "safety.lower_limits",
        "safety.upper_limits",
        "safety.max_steps",
        "safety.on_violation",
    },
    "teleop": {"source"},
    # test_safety.py::test_short_raw_images_and_the_policy_live_parameters
    "policy": {"replan_period_s", "max_input_age_s", "max_clock_skew_s"},
}


def build(name: str, context, tmp_path: Path) -> rclpy.node.Node:
    """The real node, with only what keeps it inside ``tmp_path`` (and the learner small) set.

    The bridge and param_update run with no Zenoh router in reach (they connect in the
    background); the learner runs the tiny model on the CPU, listening on a free local port.
    """
    node_class, _ = NODES[name].load()
    overrides = {
        "recorder": {"spool_dir": str(tmp_path / "spool")},
        "policy": {"autostart": False},
        "bridge": {"spool_dir": str(tmp_path / "spool")},
        "param_update": {"staging_dir": str(tmp_path / "weights")},
        "learner": {
            "listen": f"tcp/127.0.0.1:{free_port()}",
            "policy.model": "tiny",
            "policy.device": "cpu",
            "learner.store_dir": str(tmp_path / "store"),
            "learner.checkpoint_dir": str(tmp_path / "checkpoints"),
            "learner.log_dir": "",
        },
    }.get(name, {})
    return node_class(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
    )


def call(future, timeout_s: float = 20.0):
    assert wait_for(future.done, timeout_s)
    return future.result()


def test_every_live_parameter_is_checked() -> None:
    for name in NODES:
        assert set(live_parameters(name)) == CHECKED.get(name, set()), name


def test_every_parameter_is_live_or_refused_with_a_reason(ros_context, tmp_path: Path) -> None:
    nodes = [build(name, ros_context, tmp_path) for name in sorted(NODES)]
    probe = rclpy.create_node("param_probe", context=ros_context)
    with spinning(ros_context, probe, *nodes):
        for name, node in zip(sorted(NODES), nodes, strict=True):
            _, config_class = NODES[name].load()
            names = [leaf.name for leaf in flatten_config(config_class())]
            client = AsyncParameterClient(probe, node.get_fully_qualified_name())
            assert client.wait_for_services(timeout_sec=20.0), name
            descriptors = call(client.describe_parameters(names)).descriptors
            live = set(live_parameters(name))
            assert [d.name for d in descriptors] == names, name
            for descriptor in descriptors:
                assert descriptor.read_only == (descriptor.name not in live), (name, descriptor.name)
                if descriptor.read_only:
                    assert "Read at start-up only" in descriptor.description
                    # Even its own value again: a read-only parameter does not take sets.
                    result = call(client.set_parameters([current(client, descriptor)])).results[0]
                    assert not result.successful and "read-only" in result.reason, (name, descriptor.name)


def current(client: AsyncParameterClient, descriptor) -> Parameter:
    """The parameter's value now (an empty list of its type where it was declared without one)."""
    values = call(client.get_parameters([descriptor.name])).values
    if values:
        return Parameter.from_parameter_msg(ParameterMsg(name=descriptor.name, value=values[0]))
    return Parameter(descriptor.name, Parameter.Type(descriptor.type), [])


class Driver:
    """Publishes a human command (or a chunk) on a timer; records what the mux sends."""

    def __init__(self, context) -> None:
        self.node = rclpy.create_node("driver", context=context)
        self.lock = threading.Lock()
        self.commands: list[JointState] = []
        self.node.create_subscription(JointState, topics.COMMAND, self._keep, COMMAND_QOS)
        self.human_out = self.node.create_publisher(Intervention, topics.INTERVENTION, COMMAND_QOS)
        self.chunk_out = self.node.create_publisher(ActionChunk, topics.ACTION_CHUNK, COMMAND_QOS)
        # The human command published every 50 ms, and how old its stamp is (s); None: nothing.
        self.human: list[float] | None = None
        self.human_age_s = 0.0
        self.node.create_timer(0.05, self._publish)

    def _keep(self, msg: JointState) -> None:
        with self.lock:
            self.commands.append(msg)

    def _stamp(self, age_s: float):
        return rclpy.time.Time(
            nanoseconds=self.node.get_clock().now().nanoseconds - round(age_s * S)
        ).to_msg()

    def _publish(self) -> None:
        if self.human is not None:
            msg = Intervention(active=True, source="test", action=self.human)
            msg.header.stamp = self._stamp(self.human_age_s)
            self.human_out.publish(msg)

    def publish_chunk(self, age_s: float) -> None:
        msg = ActionChunk(
            action_names=["ee_x", "ee_y", "gripper"],
            horizon=100,
            action_dim=3,
            actions=[0.25, 0.25, 0.02] * 100,
            control_period=0.1,
        )
        msg.header.stamp = self._stamp(age_s)
        self.chunk_out.publish(msg)

    def newest(self, after_s: float = 0.3) -> list[float]:
        """The newest command sent after waiting ``after_s`` for changes to take effect."""
        time.sleep(after_s)
        with self.lock:
            return [round(v, 6) for v in self.commands[-1].position]

    def sends(self, within_s: float = 1.0) -> bool:
        with self.lock:
            start = len(self.commands)
        time.sleep(within_s)
        with self.lock:
            return len(self.commands) > start

    def set(self, client: AsyncParameterClient, name: str, value, type_=None) -> None:
        parameter = Parameter(name, type_, value) if type_ is not None else Parameter(name, value=value)
        result = call(client.set_parameters([parameter])).results[0]
        assert result.successful, result.reason


def test_command_mux_live_parameters_change_what_it_sends(ros_context, tmp_path: Path) -> None:
    mux = build("command_mux", ros_context, tmp_path)
    driver = Driver(ros_context)
    empty = Parameter.Type.DOUBLE_ARRAY
    with spinning(ros_context, mux, driver.node):
        client = AsyncParameterClient(driver.node, mux.get_fully_qualified_name())
        assert client.wait_for_services(timeout_sec=20.0)
        driver.human = [0.3, 0.3, 0.05]
        assert wait_for(lambda: driver.commands) and driver.newest() == [0.3, 0.3, 0.05]

        driver.set(client, "safety.upper_limits", [0.2, 0.2, 0.04])
        assert driver.newest() == [0.2, 0.2, 0.04]
        driver.set(client, "safety.on_violation", "hold")
        time.sleep(0.2)
        assert not driver.sends()
        driver.set(client, "safety.on_violation", "clip")
        driver.set(client, "safety.upper_limits", [], empty)
        assert driver.newest() == [0.3, 0.3, 0.05]
        driver.set(client, "safety.lower_limits", [0.4, 0.4, 0.06])
        assert driver.newest() == [0.4, 0.4, 0.06]
        driver.set(client, "safety.lower_limits", [], empty)
        # Limits that contradict each other are refused whole.
        refused = call(client.set_parameters([Parameter("safety.lower_limits", value=[1.0])])).results[0]
        assert not refused.successful and "lower_limits has 1 entries for 3" in refused.reason

        driver.set(client, "safety.max_steps", [0.01])
        driver.human = [0.5, 0.5, 0.05]
        time.sleep(0.5)
        with driver.lock:
            path = [m.position[0] for m in driver.commands[-8:]]
        assert 0.3 < path[-1] < 0.5 and all(0 < b - a <= 0.01 + 1e-9 for a, b in itertools.pairwise(path))
        driver.set(client, "safety.max_steps", [], empty)

        # Human commands 0.3 s old: obeyed at a 0.5 s limit, stale at 0.1 s.
        driver.human_age_s = 0.3
        assert driver.sends()
        driver.set(client, "control.max_command_age_s", 0.1)
        time.sleep(0.2)
        assert not driver.sends()
        driver.human = None

        # A chunk computed 0.5 s ago: executed at a 1 s limit, too old at 0.2 s.
        time.sleep(0.5)
        driver.publish_chunk(age_s=0.4)
        assert driver.newest(0.2) == [0.25, 0.25, 0.02] and driver.sends(0.3)
        driver.set(client, "control.max_chunk_age_s", 0.2)
        time.sleep(0.1)
        assert not driver.sends()


def test_teleop_source_is_applied_at_run_time(ros_context, tmp_path: Path) -> None:
    teleop = build("teleop", ros_context, tmp_path)
    joystick = rclpy.create_node("joystick", context=ros_context)
    sources: list[str] = []
    joystick.create_subscription(
        Intervention, topics.INTERVENTION, lambda m: sources.append(m.source), COMMAND_QOS
    )
    joy = joystick.create_publisher(Joy, topics.JOY, SENSOR_QOS)
    joints = joystick.create_publisher(JointState, topics.JOINT_STATES, SENSOR_QOS)
    held = [0] * 11
    held[4] = 1
    with spinning(ros_context, teleop, joystick):
        client = AsyncParameterClient(joystick, teleop.get_fully_qualified_name())
        assert client.wait_for_services(timeout_sec=20.0)
        result = call(client.set_parameters([Parameter("source", value="pad")])).results[0]
        assert result.successful

        def press() -> bool:
            joints.publish(JointState(name=["ee_x", "ee_y", "gripper"], position=[0.2, 0.2, 0.04]))
            joy.publish(Joy(axes=[0.0] * 8, buttons=held))
            time.sleep(0.03)
            return bool(sources)

        assert wait_for(press)
        assert set(sources) == {"pad"}
