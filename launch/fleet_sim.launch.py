"""A learner and N simulated robots on one machine, every node its own process.

    ros2 launch sop_ros fleet_sim.launch.py robots:=4

The ROS-launch counterpart of ``sop demo`` (which also makes the base policy
and writes the report): the learner listens on loopback, each simulated robot
runs robot.launch.py with ``sim:=true`` in its own namespace and keeps its
spool and weights under ``robot_<i>/`` of the working directory. The robots
connect whenever the learner is up, however long it takes to start.
"""

from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

SHARE = Path(get_package_share_directory("sop_ros"))


# The advantage indicator each algorithm's weights are trained with (the learner registry's
# inference_advantage; this file does not import it, it loads torch: a test compares them).
INFERENCE_ADVANTAGE = {"hg_dagger": "none", "recap": "positive"}


def _robots(context) -> list[IncludeLaunchDescription]:
    count = int(LaunchConfiguration("robots").perform(context))
    endpoint = LaunchConfiguration("endpoint").perform(context)
    advantage = INFERENCE_ADVANTAGE[LaunchConfiguration("algorithm").perform(context)]
    # Each robot keeps its spool and weights in a folder of its own: robot_<i>/ here.
    for i in range(1, count + 1):
        Path(f"robot_{i}").mkdir(exist_ok=True)
    return [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(SHARE / "launch" / "robot.launch.py")),
            launch_arguments={
                "robot_id": f"robot_{i}",
                "sim": "true",
                "data_dir": str(Path(f"robot_{i}").resolve()),
                "learner": endpoint,
                "zenoh_config": str(SHARE / "config" / "zenoh" / "test_client.json5"),
                "inference_advantage": advantage,
            }.items(),
        )
        for i in range(1, count + 1)
    ]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments, the learner and the robots."""
    arguments = [
        DeclareLaunchArgument("robots", default_value="2", description="Number of simulated robots"),
        DeclareLaunchArgument(
            "endpoint",
            default_value="tcp/127.0.0.1:7447",
            description="Loopback endpoint of the learner's router",
        ),
        DeclareLaunchArgument(
            "algorithm", default_value="hg_dagger", description="Post-training algorithm: hg_dagger or recap"
        ),
        DeclareLaunchArgument(
            "initial_weights",
            default_value="",
            description="Base policy weights for learner and robots (optional)",
        ),
    ]
    learner = Node(
        package="sop_ros",
        executable="learner",
        name="learner",
        parameters=[
            str(SHARE / "config" / "sim_learner_params.yaml"),
            {
                "listen": LaunchConfiguration("endpoint"),
                "zenoh_config": str(SHARE / "config" / "zenoh" / "test_router.json5"),
                "learner.algorithm": LaunchConfiguration("algorithm"),
                "initial_weights": LaunchConfiguration("initial_weights"),
            },
        ],
        output="screen",
    )
    return LaunchDescription([*arguments, learner, OpaqueFunction(function=_robots)])
