"""robot.launch.py under launch_pytest, with the simulated robot: one whole episode goes by.

launch_pytest does not load under pytest 9 (ros2/launch#979), so this file is
not named test_*.py: test_ros2_launch.py runs it under pytest 8 (kept in
.venv/pytest8 by `make setup`) with the colcon workspace sourced.
"""

from __future__ import annotations

import time

import launch
import launch_pytest
import pytest
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


@launch_pytest.fixture
def robot_launch():
    share = get_package_share_directory("sop_ros")
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(f"{share}/launch/robot.launch.py"),
        launch_arguments={"robot_id": "launch_test", "sim": "true"}.items(),
    )
    return launch.LaunchDescription([include, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=robot_launch)
def test_robot_graph_runs_a_whole_episode(launch_context):
    import rclpy
    from sop_msgs.msg import EpisodeEvent

    rclpy.init()
    node = rclpy.create_node("launch_probe")
    events = []
    node.create_subscription(EpisodeEvent, "/launch_test/episode/events", events.append, 10)

    def whole_episode() -> bool:
        # The probe may join mid-episode (the topic is volatile): wait for a START it saw
        # and that episode's END or ABORT.
        started = {e.episode_id for e in events if e.kind == EpisodeEvent.START}
        return any(e.episode_id in started for e in events if e.kind != EpisodeEvent.START)

    deadline = time.monotonic() + 180.0
    try:
        while time.monotonic() < deadline and not whole_episode():
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert whole_episode(), [(e.kind, e.episode_id) for e in events]
