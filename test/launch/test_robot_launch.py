"""robot.launch.py for real, with the simulated robot (needs launch_pytest: a ROS 2 install).

Skipped where the ROS launch packages are missing (they are not on PyPI);
test/unit/test_launch_files.py checks the launch files statically everywhere.
"""

from __future__ import annotations

import time

import pytest

launch_pytest = pytest.importorskip("launch_pytest")
launch = pytest.importorskip("launch")
launch_ros = pytest.importorskip("launch_ros")

from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402


@launch_pytest.fixture
def robot_launch():
    share = get_package_share_directory("sop_ros")
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(f"{share}/launch/robot.launch.py"),
        launch_arguments={"robot_id": "launch_test", "sim": "true"}.items(),
    )
    return launch.LaunchDescription([include, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=robot_launch)
def test_robot_graph_starts_and_records(launch_context):
    import rclpy
    from sop_msgs.msg import EpisodeEvent

    rclpy.init()
    node = rclpy.create_node("launch_probe")
    events = []
    node.create_subscription(EpisodeEvent, "/launch_test/episode/events", events.append, 10)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and len(events) < 2:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    assert [e.kind for e in events[:2]] == [EpisodeEvent.START, EpisodeEvent.END]
