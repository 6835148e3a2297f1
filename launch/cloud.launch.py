"""The cloud learner: Zenoh router, bag ingest, training and weights publishing in one node.

    ros2 launch sop_ros cloud.launch.py listen:=tcp/0.0.0.0:7447 algorithm:=recap

The robots connect to ``listen`` over Zenoh (``robot.launch.py learner:=...``).
"""

from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

SHARE = Path(get_package_share_directory("sop_ros"))


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the learner node."""
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=str(SHARE / "config" / "cloud_params.yaml"),
            description="ROS params file of the learner (model, algorithm, store, sampler)",
        ),
        DeclareLaunchArgument(
            "listen", default_value="tcp/0.0.0.0:7447", description="Zenoh endpoint the robots connect to"
        ),
        DeclareLaunchArgument(
            "zenoh_config",
            default_value=str(SHARE / "config" / "zenoh" / "router.json5"),
            description="Zenoh router config (TLS, credentials, access control go here)",
        ),
        DeclareLaunchArgument(
            "algorithm", default_value="hg_dagger", description="Post-training algorithm: hg_dagger or recap"
        ),
    ]
    learner = Node(
        package="sop_ros",
        executable="learner",
        name="learner",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "listen": LaunchConfiguration("listen"),
                "zenoh_config": LaunchConfiguration("zenoh_config"),
                "learner.algorithm": LaunchConfiguration("algorithm"),
            },
        ],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*arguments, learner])
